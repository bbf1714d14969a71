"""launch.py's refusals, and the UI process staying free of torch & co."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_launch(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_share_without_auth_is_refused(tmp_path):
    r = run_launch("--share", "--no-serve", env={"DATA_DIR": str(tmp_path), "AUTH": ""})
    assert r.returncode == 2 and "refusing to --share without a password" in r.stderr


def test_public_host_without_auth_is_refused(tmp_path):
    r = run_launch("--host", "0.0.0.0", "--no-serve", env={"DATA_DIR": str(tmp_path), "AUTH": ""})
    assert r.returncode == 2 and "without a password" in r.stderr


def test_invalid_setting_stops_with_one_line(tmp_path):
    r = run_launch("--no-serve", env={"DATA_DIR": str(tmp_path), "PORT": "seventy"})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "PORT='seventy'" in r.stderr


def test_building_the_app_imports_no_heavy_library(tmp_path):
    code = """
import sys
from engines.settings import load_settings
from engines.serving import ServerManager
from storage import connect
from studio.app import build_app
from studio.services import Services
s = load_settings(data_dir=sys.argv[1])
connect(s.db_url)
from engines.serving import MlflowUI
from engines.training import JobManager
servers = ServerManager(s)
build_app(Services(settings=s, servers=servers, jobs=JobManager(s, servers), mlflow_ui=MlflowUI(s), no_serve=True))
from engines.inference.chat import _client, Endpoint
_client(Endpoint(base_url="http://127.0.0.1:9/v1", model="m"), 5.0)   # the chat path too
heavy = sorted(m for m in ("torch", "transformers", "vllm", "unsloth", "peft", "trl", "bitsandbytes", "mlflow") if m in sys.modules)
print("HEAVY", heavy)
"""
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "HEAVY []" in r.stdout
