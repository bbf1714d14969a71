# Chat Studio on a CUDA host: the UI in a light environment, vLLM + Unsloth + training in one GPU environment.
#   docker build -t chat-studio .
#   docker run --gpus all -p 7860:7860 -e AUTH=me:long-password -v studio-data:/data chat-studio
# The container listens on 0.0.0.0 (to be reachable through -p), so the app requires AUTH.
# Both environments install resolved locks with --no-deps (nothing "latest"; tests/unit/test_locks.py checks them):
#   /opt/app  requirements/app.lock.txt  the UI process (no torch): requirements/app.txt closed over cpu.lock.txt
#   /opt/gpu  requirements/gpu.lock.txt  model servers, training workers, exports (SERVER_PYTHON); see docs/gpu-host.md
# The base matches the GPU lock: Ubuntu 22.04 (glibc 2.35, the lock's manylinux_2_35 target) and CUDA 13.0
# (torch 2.14.0's wheels bring their own CUDA 13.0 libraries; the host driver must support CUDA 13.0).
FROM nvidia/cuda:13.0.0-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
# build-essential + python3.11-dev: Triton and FlashInfer compile small kernels/launchers at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common curl git ca-certificates \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements/ requirements/
# UI environment: no torch.
RUN python3.11 -m venv /opt/app \
 && /opt/app/bin/pip install --no-deps -r requirements/app.lock.txt
# GPU environment for model servers, training workers and model exports (wheels only, as it was resolved).
RUN python3.11 -m venv /opt/gpu \
 && /opt/gpu/bin/pip install --no-deps --only-binary=:all: -r requirements/gpu.lock.txt

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin studio \
 && mkdir -p /data \
 && chown studio:studio /data
COPY --chown=studio:studio . .
USER studio
ENV SERVER_PYTHON=/opt/gpu/bin/python \
    HOST=0.0.0.0 \
    PORT=7860 \
    DATA_DIR=/data \
    HF_HOME=/data/hf-home \
    TRITON_CACHE_DIR=/data/triton-cache
VOLUME /data
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
  CMD curl -fsS http://127.0.0.1:7860/healthz >/dev/null || exit 1
CMD ["/opt/app/bin/python", "launch.py"]
