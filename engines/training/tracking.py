"""MLflow logging for one worker run. A tracking failure is reported as an event; it never stops training."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engines.events import EventWriter

EXPERIMENT = "chat-studio-finetune"


class Tracker:
    def __init__(self, events: EventWriter, tracking_uri: str, artifact_root: Path) -> None:
        self.events = events
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.run_id: str | None = None
        self._mlflow: Any = None

    def _warn(self, what: str, exc: Exception) -> None:
        self.events.emit("log", level="warning", message=f"MLflow {what} failed: {exc.__class__.__name__}: {str(exc)[:300]}")

    def start(self, run_name: str, resume_run_id: str | None, params: dict[str, str], tags: dict[str, str]) -> str | None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            import mlflow

            self._mlflow = mlflow
            mlflow.set_tracking_uri(self.tracking_uri)
            exp = mlflow.get_experiment_by_name(EXPERIMENT)
            if exp is None:
                self.artifact_root.mkdir(parents=True, exist_ok=True)
                exp_id = mlflow.create_experiment(EXPERIMENT, artifact_location=self.artifact_root.as_uri())
            else:
                exp_id = exp.experiment_id
            run = mlflow.start_run(run_id=resume_run_id, experiment_id=None if resume_run_id else exp_id, run_name=run_name)
            self.run_id = run.info.run_id
            if not resume_run_id:
                mlflow.log_params(params)
            mlflow.set_tags(tags)
        except Exception as exc:  # noqa: BLE001  # tracking is optional; training is not
            self._warn("start", exc)
            self._mlflow = None
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self._mlflow is None:
            return
        try:
            self._mlflow.log_metrics(metrics, step=step, synchronous=False)
        except Exception as exc:  # noqa: BLE001
            self._warn("metrics", exc)

    def log_artifacts(self, local: Path, path: str | None = None) -> None:
        if self._mlflow is None:
            return
        try:
            if local.is_dir():
                self._mlflow.log_artifacts(str(local), artifact_path=path)
            else:
                self._mlflow.log_artifact(str(local), artifact_path=path)
        except Exception as exc:  # noqa: BLE001
            self._warn("artifacts", exc)

    def end(self, status: str) -> None:
        if self._mlflow is None:
            return
        try:
            self._mlflow.flush_async_logging()
            self._mlflow.end_run(status=status)
        except Exception as exc:  # noqa: BLE001
            self._warn("end", exc)
