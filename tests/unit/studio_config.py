"""The real studio page's Gradio config, built in a fresh interpreter (the UI's imports stay out of the test process)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_BUILD = """
import json, sys
from engines.settings import load_settings
from engines.serving import MlflowUI, ServerManager
from engines.training import JobManager
from storage import connect
from studio.app import build_app
from studio.services import Services
s = load_settings(data_dir=sys.argv[1])
connect(s.db_url)
servers = ServerManager(s)
demo = build_app(Services(settings=s, servers=servers, jobs=JobManager(s, servers), mlflow_ui=MlflowUI(s), no_serve=True))
print(json.dumps(demo.get_config_file(), default=str))
"""


@functools.cache
def _built() -> str:
    with tempfile.TemporaryDirectory(prefix="studio-config-") as data_dir:
        r = subprocess.run([sys.executable, "-c", _BUILD, data_dir], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


def studio_config() -> dict:
    """`build_app(...).get_config_file()` of a fresh studio without a model server; built once per test session."""
    return json.loads(_built())  # a fresh copy each call: a test may change what it reads
