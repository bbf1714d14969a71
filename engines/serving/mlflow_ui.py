"""The MLflow UI, started on demand on 127.0.0.1 with lean settings (1 worker, no job runner)."""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import structlog

from engines.processes import spawn_detached, stop_tree, tail
from engines.serving.manager import free_port
from engines.settings import Settings, environment_for_children

log = structlog.get_logger(__name__)


class MlflowUI:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = settings.mlflow_ui_port or 0
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        s = self.settings
        return [
            s.server_python, "-m", "mlflow", "server", "--backend-store-uri", s.mlflow_uri,
            "--default-artifact-root", s.mlflow_artifacts_path.as_uri(), "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", "1",
        ]

    def healthy(self) -> bool:
        if not self.port:
            return False
        try:
            return httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def ensure(self, timeout: float = 60.0) -> str:
        """Start the UI if it is not running; return its URL (raises RuntimeError with the log tail on failure)."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None and self.healthy():
                return self.url
            self.port = self.settings.mlflow_ui_port or free_port()
            log_path = self.settings.logs_path / "mlflow-ui.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self.settings.mlflow_artifacts_path.mkdir(parents=True, exist_ok=True)
            env = environment_for_children(self.settings) | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
            self.proc = spawn_detached(self.command(), log_path=log_path, env=env, cwd=self.settings.data_dir.resolve())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self.healthy():
                    log.info("mlflow_ui.ready", port=self.port)
                    return self.url
                time.sleep(0.5)
            self.stop()
            raise RuntimeError(f"The MLflow UI did not start. Log tail:\n{tail(log_path, 20)}")

    def run_url(self, run_id: str) -> str:
        """Deep link to one run (asks the server for the run's experiment)."""
        base = self.ensure()
        try:
            data = httpx.get(f"{base}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=5.0).json()
            exp = data["run"]["info"]["experiment_id"]
            return f"{base}/#/experiments/{exp}/runs/{run_id}"
        except (httpx.HTTPError, KeyError, ValueError):
            return base

    def stop(self) -> None:
        """Stop the UI and every process it started (gunicorn workers included)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_tree(proc.pid, grace=10.0, proc=proc)
