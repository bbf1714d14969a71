"""REST routes: fine-tunes — validate a spec, submit it, list and read runs, follow their events (Server-Sent Events
or JSON by offset), read the log's tail, cancel and resume (the run's owner or an admin).

A spec's dataset is named the way the lists name it: a dataset's id or name (its latest saved version), a saved
version's id (`dataset_version_id`), or a bundled sample's path from GET /finetunes/datasets; never a server path
that lies outside the studio's folders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from api.auth import acting_user
from api.rest import deps
from api.rest.errors import NotFound
from api.rest.pages import CursorParam, Page, Timestamp, WideLimit, decode_position, keyset_page
from engines.accounts import Actor
from engines.datasets.files import REPO, trainable_datasets
from engines.training.spec import TrainSpec
from storage import datasets as dstore
from storage import runs
from storage.models import TrainingRun

router = APIRouter(prefix="/finetunes", tags=["finetunes"])

Status = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]
HIDDEN_EVENT_FIELDS = ("adapter", "traceback", "pid")  # server paths and internals stay on the server
POLL_S = 0.5
KEEPALIVE_S = 15.0


# ---- bodies ---------------------------------------------------------------------------------------------------------
def _spec_fields() -> dict[str, Any]:
    """TrainSpec's fields with their types and defaults but not their bounds: bounds are checked by validate_spec,
    whose messages come back per field (422 invalid_spec)."""
    fields: dict[str, Any] = {}
    for name, f in TrainSpec.model_fields.items():
        if name == "dataset":
            continue
        described = {"description": FIELD_HELP[name]} if name in FIELD_HELP else {}
        default = (Field(default_factory=f.default_factory, **described) if f.default_factory
                   else Field(... if f.is_required() else f.default, **described))
        fields[name] = (f.annotation, default)
    return fields


FIELD_HELP = {  # what a client needs to know about the preference objectives (bounds are checked by validate_spec)
    "objective": "sft trains on chat rows; dpo and orpo on a preference dataset (prompt, chosen, rejected)",
    "beta": "DPO's β, above 0 and at most 10: how far the policy may move from the reference",
    "dpo_loss": "DPO's loss: sigmoid, ipo, hinge or robust",
    "label_smoothing": "robust DPO only: the share of flipped labels assumed, 0 to below 0.5",
    "orpo_lambda": "ORPO's λ, above 0 and at most 10: the odds-ratio term's weight beside the NLL",
    "sft_adapter": "dpo / orpo only: the output name of a completed fine-tune of the same base model to continue from "
                   "(DPO's reference is then that model)",
}


SpecIn = create_model(
    "FinetuneSpec", __config__=ConfigDict(extra="forbid"), __doc__="A fine-tune: TrainSpec's fields, with the dataset "
    "named by a dataset id or name (its latest version), a version id, or a sample's path.",
    dataset=(str | int | None, Field(default=None, description="a dataset's id or name from GET /datasets (its latest "
                                                               "saved version), or a sample's path from GET /finetunes/datasets")),
    dataset_version_id=(int | None, Field(default=None, description="a saved version's id (GET /datasets/{id}/versions)")),
    **_spec_fields(),
)


class FinetuneSpecCheck(BaseModel):
    valid: bool = True
    spec: dict[str, Any] = Field(description="the spec as it would run (its dataset as you named it)")
    dataset_version_id: int | None


class RunOut(BaseModel):
    id: int
    name: str = Field(description="the run's name, also its adapter's served model name")
    owner: str | None
    status: Status
    base_model: str
    dataset: str = Field(description="the dataset and version, or the sample it trained on")
    dataset_version_id: int | None
    method: str
    step: int
    total_steps: int | None
    metrics: dict[str, Any]
    error: str | None
    adapter: str | None = Field(description="the served adapter's model name once completed")
    mlflow_run_id: str | None
    compute: str = Field(description="where it runs: local (a worker process beside the studio) or ray (a Ray cluster's job)")
    remote_job_id: str | None = Field(description="the Ray job's submission id, for a run on a Ray cluster")
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


class RunDetail(RunOut):
    spec: dict[str, Any]


class RunEvents(BaseModel):
    events: list[dict[str, Any]]
    next_since: int = Field(description="pass as ?since= to get only what comes after")
    status: Status
    finished: bool = Field(description="the run has ended: no more events will come")


class RunLog(BaseModel):
    text: str


class RunCancel(BaseModel):
    status: str = Field(description="cancelled (was queued), cancelling (signalled), or the run's status if it had ended")


class TrainableDataset(BaseModel):
    label: str
    dataset: str = Field(description="put this in a spec's `dataset`")
    dataset_version_id: int | None = Field(description="and this in `dataset_version_id` (saved versions)")
    rows: int
    kind: Literal["chat", "preference"] = Field(description="chat rows train with objective sft; preference pairs "
                                                            "(prompt, chosen, rejected) with dpo or orpo")


# ---- shaping --------------------------------------------------------------------------------------------------------
def dataset_label(run: TrainingRun) -> str:
    """What a run trained on, without the server's paths: `name vN` for a saved version, else the sample's repo path
    or the file's name."""
    if run.dataset_version_id:
        v = dstore.get_version(run.dataset_version_id)
        if v is not None:
            return f"{v.dataset.name} v{v.version}"
    path = Path(run.dataset)
    if path.is_absolute() and path.resolve().is_relative_to(REPO):
        return str(path.resolve().relative_to(REPO))
    return str(path) if not path.is_absolute() else path.name


def run_out(run: TrainingRun, cls: type[RunOut] = RunOut, **extra: Any) -> Any:
    return cls(id=run.id, name=run.name, owner=getattr(run, "owner_name", None), status=run.status,
               base_model=run.base_model, dataset=dataset_label(run), dataset_version_id=run.dataset_version_id,
               method=run.method, step=run.step or 0, total_steps=run.total_steps, metrics=runs.run_metrics(run),
               error=run.error, adapter=run.name if (run.status == "completed" and run.adapter_path) else None,
               mlflow_run_id=run.mlflow_run_id, compute=run.compute or "local", remote_job_id=run.remote_job_id,
               created_at=run.created_at, started_at=run.started_at,
               finished_at=run.finished_at, **extra)


def public_event(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k not in HIDDEN_EVENT_FIELDS}


def _run(run_id: int) -> TrainingRun:
    run = runs.get_run(run_id)
    if run is None:
        raise NotFound(f"There is no fine-tune run {run_id}.")
    return run


def _jobs(services: Any) -> Any:
    if services.jobs is None:
        raise ValueError("This studio runs no training jobs.")
    return services.jobs


def _validated(services: Any, body: BaseModel) -> tuple[TrainSpec, int | None]:
    return _jobs(services).validate_request(body.model_dump())


# ---- routes ---------------------------------------------------------------------------------------------------------
@router.get("/datasets", response_model=list[TrainableDataset], summary="What a spec's dataset may name")
def datasets() -> list[TrainableDataset]:
    return [TrainableDataset(**d) for d in trainable_datasets()]


@router.post("/validate", response_model=FinetuneSpecCheck, summary="Check a spec without starting it")
def validate(body: SpecIn, services=Depends(deps.services)) -> FinetuneSpecCheck:  # type: ignore[valid-type]
    spec, version_id = _validated(services, body)  # SpecError: 422 with `fields` (errors.py)
    return FinetuneSpecCheck(spec={**spec.model_dump(), "dataset": body.dataset}, dataset_version_id=version_id)


@router.post("", response_model=RunDetail, status_code=201, summary="Queue a fine-tune of yours")
def submit(body: SpecIn, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> RunDetail:  # type: ignore[valid-type]
    jobs = _jobs(services)
    spec, version_id = _validated(services, body)
    run_id = jobs.submit(spec, actor=actor, dataset_version_id=version_id)
    return detail(run_id)


@router.get("", response_model=Page[RunOut], summary="The team's runs, newest first")
def list_runs(limit: WideLimit = 50, cursor: CursorParam = None,
              status: list[Status] | None = Query(None, description="only runs in these states")) -> Page[RunOut]:
    rows = runs.list_runs(limit + 1, tuple(status) if status else None, before=decode_position(cursor))
    items, nxt = keyset_page(rows, limit)
    return Page[RunOut](items=[run_out(r) for r in items], next_cursor=nxt)


@router.get("/{run_id}", response_model=RunDetail, summary="One run: status, step/total, metrics, spec")
def get_run(run_id: int) -> RunDetail:
    return detail(run_id)


def detail(run_id: int) -> RunDetail:
    run = _run(run_id)
    spec = json.loads(run.spec or "{}")
    spec["dataset"] = dataset_label(run)
    return run_out(run, RunDetail, spec=spec)


@router.get("/{run_id}/events", response_model=RunEvents, summary="Events after an offset, as JSON")
def events(run_id: int, since: int = Query(0, ge=0, description="next_since of the previous call"),
           services=Depends(deps.services)) -> RunEvents:
    _run(run_id)
    found, offset = _jobs(services).events(run_id, since)
    run = _run(run_id)
    return RunEvents(events=[public_event(e) for e in found], next_since=offset, status=run.status,
                     finished=run.status not in runs.ACTIVE)


def _sse(data: Any, event: str | None = None, event_id: int | None = None) -> str:
    head = (f"id: {event_id}\n" if event_id is not None else "") + (f"event: {event}\n" if event else "")
    return head + f"data: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


@router.get("/{run_id}/events/stream", summary="Follow a run's events as Server-Sent Events until it ends",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: <type>` per training event (start, progress, metric, log, "
                                            "checkpoint, done, cancelled, error); `id:` is the offset to resume from "
                                            "(Last-Event-ID); a final `event: end` carries the run's status"}})
async def stream_events(run_id: int, request: Request, since: int = Query(0, ge=0),
                        services=Depends(deps.services)) -> StreamingResponse:
    jobs = _jobs(services)
    await anyio.to_thread.run_sync(_run, run_id)
    last = request.headers.get("last-event-id", "")
    start = int(last) if last.isdigit() else since

    async def stream() -> AsyncIterator[str]:
        offset, quiet = start, 0.0
        while True:
            try:
                run = await anyio.to_thread.run_sync(_run, run_id)
                found, new_offset = await anyio.to_thread.run_sync(jobs.events, run_id, offset)
            except (PermissionError, LookupError) as exc:  # the run's folder is refused, or the run was deleted
                yield _sse({"message": str(exc)}, "end")
                return
            for i, ev in enumerate(found):
                yield _sse(public_event(ev), str(ev.get("type") or "message"), new_offset if i == len(found) - 1 else None)
            offset = new_offset
            if found:
                quiet = 0.0
            elif run.status not in runs.ACTIVE:
                yield _sse({"status": run.status, "error": run.error, "step": run.step, "total_steps": run.total_steps}, "end")
                return
            if await request.is_disconnected():
                return
            await anyio.sleep(POLL_S)
            quiet += POLL_S
            if quiet >= KEEPALIVE_S:
                quiet = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{run_id}/log", response_model=RunLog, summary="The last lines of the run's log")
def log_tail(run_id: int, lines: int = Query(60, ge=1, le=2000), services=Depends(deps.services)) -> RunLog:
    _run(run_id)
    return RunLog(text=_jobs(services).log_tail(run_id, lines))


@router.post("/{run_id}/cancel", response_model=RunCancel, summary="Cancel a queued or running run (owner or admin)")
def cancel(run_id: int, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> RunCancel:
    _run(run_id)
    return RunCancel(status=_jobs(services).cancel(run_id, actor=actor))


@router.post("/{run_id}/resume", response_model=RunDetail,
             summary="Queue an interrupted, failed or cancelled run again from its last checkpoint (owner or admin)")
def resume(run_id: int, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> RunDetail:
    _run(run_id)
    _jobs(services).resume(run_id, actor=actor)
    return detail(run_id)
