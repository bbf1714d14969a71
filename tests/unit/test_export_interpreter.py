"""Export jobs run in SERVER_PYTHON's environment, not the UI's: merge and GGUF need torch, which the UI's
environment does not have in the Docker layout (/opt/app vs /opt/gpu)."""

from __future__ import annotations

import sys
import time

from engines.accounts import Actor
from engines.models.exports import ExportManager
from engines.settings import load_settings

ADMIN = Actor(id=1, name="admin", role="admin")


def test_export_jobs_start_with_the_configured_interpreter(tmp_path, db) -> None:
    # A real interpreter behind a recording launcher: it notes how it was called, then runs the job itself.
    calls = tmp_path / "calls.txt"
    launcher = tmp_path / "server-python"
    launcher.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    settings = load_settings(data_dir=tmp_path / "data", server_python=str(launcher),
                             hf_endpoint="http://127.0.0.1:9")  # nothing listens there: the download fails at once
    exports = ExportManager(settings)
    job_id = exports.submit_download("org/model", actor=ADMIN)
    job = exports.wait(job_id, timeout=120)
    deadline = time.monotonic() + 10
    while not calls.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert calls.exists(), "the export job was not started with SERVER_PYTHON"
    assert calls.read_text().split()[:2] == ["-m", "engines.models.export"]
    assert job is not None and job.status == "error"  # the job really ran (and found no hub at that address)
