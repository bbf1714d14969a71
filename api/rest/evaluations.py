"""REST routes: batch evaluations — submit (models × a prompt set: given prompts, a saved dataset version or a
fine-tune's eval split), list, read progress, summary and per-example results, cancel and resume (owner or admin),
and the results as CSV by URL."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.auth import acting_user
from api.rest import deps
from api.rest.errors import NotFound
from api.rest.pages import CursorParam, Page, Timestamp, WideLimit, decode_position, keyset_page, offset_page
from engines.accounts import Actor
from engines.evaluation import report
from storage import evals
from storage.models import EvalRun

router = APIRouter(prefix="/evaluations", tags=["evaluations"])

Status = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]


# ---- bodies ---------------------------------------------------------------------------------------------------------
class EvaluationPrompt(BaseModel):
    prompt: str | None = Field(default=None, description="one user turn")
    messages: list[dict[str, str]] | None = Field(default=None, description="or a conversation; its last assistant "
                                                                           "turn becomes the reference")
    reference: str | None = Field(default=None, description="the expected answer (ROUGE-L, BLEU, exact match)")
    category: str | None = None


class EvaluationIn(BaseModel):
    name: str = Field(default="", max_length=200)
    models: list[str] = Field(min_length=1, max_length=16, description="served model names; the first is the judge's baseline")
    judge: str | None = Field(default=None, description="a served model that compares each model with the baseline")
    source: Literal["prompts", "dataset", "run"] = Field(
        default="prompts", description="prompts: `prompts` below; dataset: a saved version's rows; run: a fine-tune's eval split")
    prompts: list[EvaluationPrompt] | None = Field(default=None, max_length=2000)
    dataset_version_id: int | None = None
    split: Literal["eval", "all"] = Field(default="eval", description="dataset source: its eval split, or all rows")
    run_id: int | None = Field(default=None, description="run source: a completed fine-tune's id")
    limit: int = Field(default=0, ge=0, description="only the first N prompts (0: all)")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=256, ge=1, le=32768)
    judge_max_tokens: int = Field(default=512, ge=16, le=32768,
                                  description="the judge's longest verdict (its reasoning, then [[A]], [[B]] or [[C]])")
    concurrency: int | None = Field(default=None, ge=1, le=1024)


class EvaluationProgress(BaseModel):
    phase: str
    done: int
    total: int
    message: str


class EvaluationOut(BaseModel):
    id: int
    name: str
    owner: str | None
    status: Status
    phase: str | None
    models: list[str]
    judge: str | None
    source: str
    examples: int
    answered: int = Field(description="answers stored so far (every model)")
    dataset_version_id: int | None
    training_run_id: int | None
    error: str | None
    created_at: Timestamp
    finished_at: Timestamp | None


class EvaluationDetail(EvaluationOut):
    progress: EvaluationProgress | None = Field(description="live progress while it runs in this studio")
    params: dict[str, Any]
    summary: dict[str, Any] | None = Field(description="per-model figures once scored")


class ResultOut(BaseModel):
    example: int
    model: str
    category: str | None
    question: str
    reference: str | None
    output: str | None
    error: str | None
    attempts: int | None
    completion_tokens: int | None
    latency_ms: float | None
    rouge_l: float | None
    bleu: float | None
    exact: bool | None
    judge_outcome: str | None
    judge_error: str | None


class EvaluationCancel(BaseModel):
    stopped: bool = Field(description="false when it was not running here")


class EvaluationDownload(BaseModel):
    url: str = Field(description="GET it (with your key) to download the CSV")
    filename: str


# ---- shaping --------------------------------------------------------------------------------------------------------
def _eval(eval_id: int) -> EvalRun:
    run = evals.get_eval(eval_id)
    if run is None:
        raise NotFound(f"There is no evaluation {eval_id}.")
    return run


def eval_out(run: EvalRun, cls: type[EvaluationOut] = EvaluationOut, **extra: Any) -> Any:
    return cls(id=run.id, name=run.name, owner=getattr(run, "owner_name", None), status=run.status, phase=run.phase,
               models=evals.loads(run.models, []), judge=run.judge, source=run.source,
               examples=len(evals.loads(run.examples, [])), answered=evals.count_results(run.id, answered_only=True),
               dataset_version_id=run.dataset_version_id, training_run_id=run.training_run_id, error=run.error,
               created_at=run.created_at, finished_at=run.finished_at, **extra)


def detail(services: Any, eval_id: int) -> EvaluationDetail:
    run = _eval(eval_id)
    p = services.evals.progress(run.id) if services.evals else None
    progress = EvaluationProgress(phase=p.phase, done=p.done, total=p.total, message=p.message) if p else None
    return eval_out(run, EvaluationDetail, progress=progress, params=evals.loads(run.params, {}),
                    summary=evals.loads(run.summary, None))


def _none(value: Any) -> Any:
    """pandas' NaN / NA as None (JSON has no NaN)."""
    try:
        import pandas as pd

        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return value


def _manager(services: Any) -> Any:
    if services.evals is None:
        raise ValueError("This studio runs no evaluations.")
    return services.evals


# ---- routes ---------------------------------------------------------------------------------------------------------
@router.post("", response_model=EvaluationDetail, status_code=201, summary="Start a batch evaluation of yours")
def submit(body: EvaluationIn, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> EvaluationDetail:
    prompts = [p.model_dump(exclude_none=True) for p in body.prompts or []]
    source = "pasted" if body.source == "prompts" else body.source
    if source == "pasted" and not prompts:
        raise ValueError("Give at least one prompt (or pick the dataset or run source).")
    params = {"temperature": body.temperature, "max_tokens": body.max_tokens}
    if body.judge:
        params["judge_max_tokens"] = body.judge_max_tokens
    if body.concurrency:
        params["concurrency"] = body.concurrency
    eval_id, _ = _manager(services).submit_batch(
        actor=actor, name=body.name, models=body.models, judge=body.judge, source=source, prompts=prompts,
        version_id=body.dataset_version_id, split=body.split, run_id=body.run_id, limit=body.limit, params=params)
    return detail(services, eval_id)


@router.get("", response_model=Page[EvaluationOut], summary="The team's evaluations, newest first")
def list_evaluations(limit: WideLimit = 50, cursor: CursorParam = None) -> Page[EvaluationOut]:
    items, nxt = keyset_page(evals.list_evals(limit + 1, before=decode_position(cursor)), limit)
    return Page[EvaluationOut](items=[eval_out(r) for r in items], next_cursor=nxt)


@router.get("/{eval_id}", response_model=EvaluationDetail, summary="Progress, and the summary once scored")
def get_evaluation(eval_id: int, services=Depends(deps.services)) -> EvaluationDetail:
    return detail(services, eval_id)


@router.get("/{eval_id}/results", response_model=Page[ResultOut], summary="Per-example answers and scores")
def results(eval_id: int, limit: WideLimit = 50, cursor: CursorParam = None,
            model: str | None = Query(None, description="only this model's answers")) -> Page[ResultOut]:
    frame = report.results_frame(_eval(eval_id))
    if model:
        frame = frame[frame.model == model]
    rows = [ResultOut(**{k: _none(v) for k, v in rec.items()}) for rec in frame.to_dict("records")]
    items, nxt = offset_page(rows, limit, cursor)
    return Page[ResultOut](items=items, next_cursor=nxt)


@router.post("/{eval_id}/cancel", response_model=EvaluationCancel, summary="Stop a running evaluation (owner or admin)")
def cancel(eval_id: int, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> EvaluationCancel:
    _eval(eval_id)
    return EvaluationCancel(stopped=_manager(services).cancel(eval_id, actor=actor))


@router.post("/{eval_id}/resume", response_model=EvaluationDetail,
             summary="Resume an interrupted, failed or cancelled evaluation: only what is missing is asked (owner or admin)")
def resume(eval_id: int, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> EvaluationDetail:
    _eval(eval_id)
    _manager(services).resume(eval_id, actor=actor)
    return detail(services, eval_id)


@router.post("/{eval_id}/export", response_model=EvaluationDownload, summary="The results as CSV: a URL to download it")
def export(eval_id: int, request: Request) -> EvaluationDownload:
    run = _eval(eval_id)
    url = request.url_for("download_evaluation_csv", eval_id=eval_id)
    return EvaluationDownload(url=str(url), filename=report.csv_name(run))


@router.get("/{eval_id}/results.csv", name="download_evaluation_csv", response_class=FileResponse,
            summary="Download the per-example results as CSV (UTF-8 with BOM)",
            responses={200: {"content": {"text/csv": {}}}})
def download_csv(eval_id: int, services=Depends(deps.services)) -> FileResponse:
    path = report.export_csv(_eval(eval_id), services.settings.exports_path / "evaluations")
    return FileResponse(path, media_type="text/csv; charset=utf-8", filename=path.name)
