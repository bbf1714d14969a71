"""MLflow logging for one worker run. A tracking failure is reported as an event; it never stops a local run.

A remote run (a Ray job: no shared file system) is `required`: without MLflow its adapter could not come back, so a
failure to start the run or to store the adapter fails it. Its checkpoints go to the run's artifacts too
(`checkpoints/checkpoint-N`, the last KEEP_CHECKPOINTS kept) and a resumed remote run fetches the last one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engines.events import EventWriter

EXPERIMENT = "chat-studio-finetune"
# Remote runs need an artifact location every node and the studio reach through the server; an experiment that an
# embedded studio created with a local file:// location is not one, so they use this one instead.
SHARED_EXPERIMENT = "chat-studio-finetune-cluster"
KEEP_CHECKPOINTS = 2  # like the trainer's save_total_limit


class TrackingRequired(RuntimeError):
    """A remote run cannot go on without MLflow (its adapter and checkpoints travel through the artifact store)."""


class Tracker:
    def __init__(self, events: EventWriter, tracking_uri: str, artifact_root: Path | None, *, required: bool = False) -> None:
        self.events = events
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root  # None: the server's own (proxied) artifact store
        self.required = required
        self.run_id: str | None = None
        self._mlflow: Any = None
        self._stored: list[str] = []  # checkpoint artifact folders stored by this process, oldest first

    def _warn(self, what: str, exc: Exception) -> None:
        self.events.emit("log", level="warning", message=f"MLflow {what} failed: {exc.__class__.__name__}: {str(exc)[:300]}")

    def _experiment(self, mlflow: Any) -> str:
        if self.artifact_root is None:  # a remote run: the server's artifact store, never a local file:// folder
            for name in (EXPERIMENT, SHARED_EXPERIMENT):
                exp = mlflow.get_experiment_by_name(name)
                if exp is not None and not str(exp.artifact_location).startswith("file:"):
                    return exp.experiment_id
            return mlflow.create_experiment(SHARED_EXPERIMENT if mlflow.get_experiment_by_name(EXPERIMENT) else EXPERIMENT)
        exp = mlflow.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return exp.experiment_id
        self.artifact_root.mkdir(parents=True, exist_ok=True)
        return mlflow.create_experiment(EXPERIMENT, artifact_location=self.artifact_root.as_uri())

    def start(self, run_name: str, resume_run_id: str | None, params: dict[str, str], tags: dict[str, str]) -> str | None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            import mlflow

            self._mlflow = mlflow
            mlflow.set_tracking_uri(self.tracking_uri)
            exp_id = self._experiment(mlflow)
            run = mlflow.start_run(run_id=resume_run_id, experiment_id=None if resume_run_id else exp_id, run_name=run_name)
            self.run_id = run.info.run_id
            if not resume_run_id:
                mlflow.log_params(params)
            mlflow.set_tags(tags)
        except Exception as exc:  # noqa: BLE001  # tracking is optional; training is not
            if self.required:
                raise TrackingRequired(f"the MLflow server at {self.tracking_uri} is needed by a remote run: "
                                       f"{exc.__class__.__name__}: {str(exc)[:300]}") from exc
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

    def log_artifacts(self, local: Path, path: str | None = None, *, required: bool = False) -> None:
        if self._mlflow is None:
            return
        try:
            if local.is_dir():
                self._mlflow.log_artifacts(str(local), artifact_path=path)
            else:
                self._mlflow.log_artifact(str(local), artifact_path=path)
        except Exception as exc:  # noqa: BLE001
            if required:
                raise TrackingRequired(f"storing {path or local.name} in the MLflow artifact store failed: "
                                       f"{exc.__class__.__name__}: {str(exc)[:300]}") from exc
            self._warn("artifacts", exc)

    def store_checkpoint(self, folder: Path) -> bool:
        """Copy a checkpoint folder to the run's artifacts (`checkpoints/<name>`) and drop the ones before the last
        KEEP_CHECKPOINTS; False (with a warning event) when it could not be stored."""
        if self._mlflow is None or not folder.is_dir():
            return False
        try:
            self._mlflow.log_artifacts(str(folder), artifact_path=f"checkpoints/{folder.name}")
        except Exception as exc:  # noqa: BLE001  # the run goes on; an earlier checkpoint is still there
            self._warn(f"storing {folder.name}", exc)
            return False
        self._stored.append(f"checkpoints/{folder.name}")
        while len(self._stored) > KEEP_CHECKPOINTS:
            old = self._stored.pop(0)
            try:
                from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

                get_artifact_repository(self._mlflow.get_run(self.run_id).info.artifact_uri).delete_artifacts(old)
            except Exception as exc:  # noqa: BLE001  # an old checkpoint left behind costs space, nothing else
                self._warn(f"removing {old}", exc)
        return True

    def fetch_last_checkpoint(self, run_id: str, checkpoints: Path) -> Path | None:
        """Download the run's last stored checkpoint into `checkpoints/` (a resumed remote run on any node)."""
        if self._mlflow is None:
            return None
        from mlflow import MlflowClient
        from mlflow.artifacts import download_artifacts

        stored = [f.path for f in MlflowClient(self.tracking_uri).list_artifacts(run_id, "checkpoints") if f.is_dir]
        numbered = [p for p in stored if p.rsplit("-", 1)[-1].isdigit()]
        if not numbered:
            self.events.emit("log", level="warning", message="no checkpoint in the MLflow artifact store: starting from step 0")
            return None
        last = max(numbered, key=lambda p: int(p.rsplit("-", 1)[-1]))
        checkpoints.mkdir(parents=True, exist_ok=True)  # MLflow puts the folder itself (checkpoint-N) in dst_path
        got = download_artifacts(run_id=run_id, artifact_path=last, dst_path=str(checkpoints), tracking_uri=self.tracking_uri)
        self.events.emit("log", level="info", message=f"{last} fetched from the MLflow artifact store")
        return Path(got)

    def end(self, status: str) -> None:
        if self._mlflow is None:
            return
        try:
            self._mlflow.flush_async_logging()
            self._mlflow.end_run(status=status)
        except Exception as exc:  # noqa: BLE001
            self._warn("end", exc)
