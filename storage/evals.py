"""Batch evaluations: runs and their per-example results, saved as each answer arrives."""

from __future__ import annotations

import json
from typing import Any

from storage.models import EvalResult, EvalRun, User, utcnow

ACTIVE = ("queued", "running")
RESUMABLE = ("interrupted", "failed", "cancelled")


def _with_owner():
    """Evaluations with `owner_name` (the owner's user name, None if unowned) for display."""
    return EvalRun.select(EvalRun, User.select(User.name).where(User.id == EvalRun.owner_id).alias("owner_name"))


def create_eval(*, name: str, models: list[str], judge: str | None, source: str, params: dict[str, Any],
                examples: list[dict[str, Any]], dataset_version_id: int | None = None,
                training_run_id: int | None = None, owner_id: int | None = None) -> EvalRun:
    return EvalRun.create(name=name, models=json.dumps(models), judge=judge or None, source=source,
                          params=json.dumps(params), examples=json.dumps(examples, ensure_ascii=False),
                          dataset_version_id=dataset_version_id, training_run_id=training_run_id, status="queued",
                          owner_id=owner_id)


def get_eval(eval_id: int) -> EvalRun | None:
    """The evaluation (with `owner_name`), or None."""
    return _with_owner().where(EvalRun.id == eval_id).first()


def list_evals(limit: int = 200, *, before: int | None = None) -> list[EvalRun]:
    """Newest first, each with `owner_name`; `before`: only evaluations with a smaller id (the next page)."""
    q = _with_owner().order_by(EvalRun.id.desc()).limit(limit)
    return list(q.where(EvalRun.id < before) if before is not None else q)


def update_eval(eval_id: int, **fields: Any) -> None:
    if isinstance(fields.get("summary"), dict):
        fields["summary"] = json.dumps(fields["summary"], ensure_ascii=False)
    EvalRun.update(**fields).where(EvalRun.id == eval_id).execute()


def finish_eval(eval_id: int, status: str, **fields: Any) -> None:
    update_eval(eval_id, status=status, phase=None, finished_at=utcnow(), **fields)


def save_result(eval_id: int, example: int, model: str, **fields: Any) -> None:
    """Insert or replace one example × model answer (a retry overwrites the failed attempt)."""
    if isinstance(fields.get("judge_detail"), dict | list):
        fields["judge_detail"] = json.dumps(fields["judge_detail"], ensure_ascii=False)
    row = EvalResult.get_or_none(EvalResult.eval_run == eval_id, EvalResult.example == example, EvalResult.model == model)
    if row is None:
        EvalResult.create(eval_run=eval_id, example=example, model=model, **fields)
    else:
        EvalResult.update(**fields).where(EvalResult.id == row.id).execute()


def results(eval_id: int) -> list[EvalResult]:
    return list(EvalResult.select().where(EvalResult.eval_run == eval_id).order_by(EvalResult.example, EvalResult.id))


def count_results(eval_id: int, *, answered_only: bool = False) -> int:
    q = EvalResult.select().where(EvalResult.eval_run == eval_id)
    if answered_only:
        q = q.where(EvalResult.output.is_null(False))
    return q.count()


def loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default
