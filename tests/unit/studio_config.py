"""The real studio page's Gradio config, built in a fresh interpreter (the UI's imports stay out of the test process)."""

from __future__ import annotations

import json
import subprocess
import sys
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


def studio_config(data_dir: Path) -> dict:
    """`build_app(...).get_config_file()` of a studio on `data_dir` without a model server."""
    r = subprocess.run([sys.executable, "-c", _BUILD, str(data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])
