"""Training runs: create, update, list; the rows the JobManager keeps in step with its workers."""

from __future__ import annotations

import json
from typing import Any

from storage.models import TrainingRun, User, utcnow

ACTIVE = ("queued", "running")
RESUMABLE = ("interrupted", "failed", "cancelled")


def _with_owner():
    """Runs with `owner_name` (the owner's user name, None if unowned) for display."""
    return TrainingRun.select(TrainingRun, User.select(User.name).where(User.id == TrainingRun.owner_id).alias("owner_name"))


def create_run(*, name: str, base_model: str, dataset: str, method: str, spec: dict[str, Any], run_dir: str,
               dataset_version_id: int | None = None, owner_id: int | None = None) -> TrainingRun:
    return TrainingRun.create(
        name=name, base_model=base_model, dataset=dataset, method=method, spec=json.dumps(spec),
        run_dir=run_dir, status="queued", dataset_version_id=dataset_version_id, owner_id=owner_id,
    )


def get_run(run_id: int) -> TrainingRun | None:
    """The run (with `owner_name`), or None."""
    return _with_owner().where(TrainingRun.id == run_id).first()


def run_by_name(name: str) -> TrainingRun | None:
    return TrainingRun.get_or_none(TrainingRun.name == name)


def update_run(run_id: int, **fields: Any) -> None:
    if "metrics" in fields and not isinstance(fields["metrics"], str | None):
        fields["metrics"] = json.dumps(fields["metrics"])
    TrainingRun.update(**fields).where(TrainingRun.id == run_id).execute()


def list_runs(limit: int = 200, statuses: tuple[str, ...] | None = None, *, before: int | None = None) -> list[TrainingRun]:
    """Newest first, each with `owner_name`; `before`: only runs with a smaller id (the next page)."""
    q = _with_owner().order_by(TrainingRun.id.desc()).limit(limit)
    if before is not None:
        q = q.where(TrainingRun.id < before)
    if statuses:
        q = q.where(TrainingRun.status.in_(statuses))
    return list(q)


def next_queued() -> TrainingRun | None:
    return TrainingRun.select().where(TrainingRun.status == "queued").order_by(TrainingRun.id).first()


def finish_run(run_id: int, status: str, **fields: Any) -> None:
    update_run(run_id, status=status, finished_at=utcnow(), pid=None, **fields)


def run_metrics(run: TrainingRun) -> dict[str, Any]:
    try:
        return json.loads(run.metrics or "{}")
    except ValueError:
        return {}
