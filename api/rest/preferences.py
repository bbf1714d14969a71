"""REST routes: preference datasets — pairs (prompt with its context, chosen, rejected) built from the caller's own
judgements (arena votes, 👍/👎, regenerations; the team's judged batch evaluations), previewed without saving or saved
as a new preference dataset (version 1, with the chats it came from as lineage); TRL-layout files inspected, imported
and exported.

Building and saving go through engines.datasets.preferences / preference_files with the acting user: battles and
chats are private, so each person builds only from their own. An upload is staged like a chat dataset's
(engines.datasets.uploads); files come back by URL only."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.auth import acting_user
from api.rest import deps
from api.rest.datasets import (
    DatasetDownload,
    DatasetMessage,
    DatasetOut,
    ProblemOut,
    VersionOut,
    dataset_out,
    problem_out,
    version_out,
)
from api.rest.errors import NotFound, error_responses
from api.rest.pages import MAX_ID, CursorParam, Page, WideLimit, offset_page
from engines.accounts import Actor
from engines.datasets import preference_files as pf
from engines.datasets import uploads
from engines.datasets.formats import FormatError, PreferenceRow
from engines.datasets.preferences import SOURCES, BuildReport, PreferenceFilters, build_preferences
from storage import datasets as store
from storage.models import DatasetVersion

router = APIRouter(prefix="/preferences", tags=["preferences"])

Source = Literal[SOURCES]  # type: ignore[valid-type]
Layout = Literal[pf.EXPORT_LAYOUTS]  # type: ignore[valid-type]
Split = Literal["train", "eval"]
Name = Annotated[str, Field(max_length=300)]
EvalId = Annotated[int, Field(ge=1, le=MAX_ID)]


# ---- bodies ---------------------------------------------------------------------------------------------------------
class PreferenceBuild(BaseModel):
    """Which judgements to build pairs from, and how to clean and split them."""

    sources: list[Source] = Field(default_factory=lambda: list(SOURCES), min_length=1,
                                  description="battle: your arena votes A/B; thumbs: 👍 against 👎 on one turn; "
                                              "regenerated: the kept answer against one regenerated away; "
                                              "judge: batch-evaluation examples the judge decided the same way in both orders")
    since: dt.datetime | None = Field(None, description="only judgements made at or after this time (UTC when no zone)")
    until: dt.datetime | None = Field(None, description="and before this time")
    models: list[Name] = Field(default_factory=list, max_length=50,
                              description="keep a pair when either answer came from one of these models")
    category: str | None = Field(None, max_length=100, description="battles' and evaluation examples' category")
    voters: list[Name] = Field(default_factory=list, max_length=50,
                              description="who judged: a person's name, or a judge model for judge pairs")
    eval_ids: list[EvalId] = Field(default_factory=list, max_length=200, description="which batch evaluations (empty: all)")
    dedupe: bool = Field(True, description="drop near-duplicate pairs and both pairs of a contradiction")
    eval_fraction: float = Field(0.0, ge=0.0, le=0.5, description="share of prompts held out as the eval split")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="the split's seed: the same rows and seed give the same split")


class PreferencePreviewIn(PreferenceBuild):
    limit: int = Field(50, ge=0, le=500, description="pairs listed in the answer (all are counted)")


class PreferenceSaveIn(PreferenceBuild):
    name: str = Field(min_length=1, max_length=80, description="the new preference dataset's name")
    note: str | None = Field(None, max_length=500)


class PreferencePair(BaseModel):
    prompt: list[DatasetMessage] = Field(description="the conversation up to the user's turn (system prompt included)")
    chosen: str
    rejected: str
    category: str | None
    split: str | None
    source: dict[str, Any] = Field(description="where the pair came from: kind (battle | thumbs | regenerated | judge), "
                                               "ids, models, voter, time")


class PreferenceBuildOut(BaseModel):
    rows: int = Field(description="pairs built (after filters and clean-up)")
    train: int
    eval: int
    counts: dict[str, int] = Field(description="pairs per source")
    skipped: dict[str, int] = Field(description="judgements left out, per reason (tie_or_both_bad, same_verdict, "
                                                "near_duplicate, contradicting, other_models, …)")


class PreferencePreviewOut(PreferenceBuildOut):
    pairs: list[PreferencePair] = Field(description="the first `limit` pairs")


class PreferenceSaveOut(PreferenceBuildOut):
    dataset: DatasetOut
    version: VersionOut


class PreferenceInspectOut(BaseModel):
    layout: str | None = Field(description="preference (TRL strings) or preference_conversational (message lists)")
    rows: int
    problems: list[ProblemOut]
    error: str | None = None


class PreferenceImportOut(BaseModel):
    dataset: DatasetOut
    version: VersionOut
    layout: str | None
    rows: int
    duplicates_removed: int
    problems: list[ProblemOut] = Field(description="rows left out (valid_only)")


class PreferenceExportIn(BaseModel):
    layout: Layout = Field("conversational", description="TRL's conversational (message lists) or strings layout")
    split: Split | None = Field(None, description="only this split (default: every row)")


# ---- shaping --------------------------------------------------------------------------------------------------------
def _filters(body: PreferenceBuild) -> tuple[PreferenceFilters, dict[str, Any]]:
    def naive_utc(at: dt.datetime | None) -> dt.datetime | None:
        try:
            return at.astimezone(dt.UTC).replace(tzinfo=None) if at and at.tzinfo else at
        except (OverflowError, ValueError):
            raise ValueError(f"{at.isoformat()} is out of range.") from None

    f = PreferenceFilters(sources=tuple(body.sources), since=naive_utc(body.since), until=naive_utc(body.until),
                          models=tuple(m.strip() for m in body.models if m.strip()),
                          category=(body.category or "").strip() or None,
                          voters=tuple(v.strip() for v in body.voters if v.strip()), eval_ids=tuple(body.eval_ids))
    return f, {"dedupe": body.dedupe, "eval_fraction": body.eval_fraction, "seed": body.seed}


def _totals(report: BuildReport) -> dict[str, Any]:
    n_eval = sum(1 for r in report.rows if r.split == "eval")
    return {"rows": len(report.rows), "train": len(report.rows) - n_eval, "eval": n_eval, "counts": report.counts,
            "skipped": report.skipped}


def pair_out(r: PreferenceRow) -> PreferencePair:
    return PreferencePair(prompt=[DatasetMessage(**m) for m in r.prompt], chosen=r.chosen, rejected=r.rejected,
                          category=r.category, split=r.split, source=r.source)


def _version(dataset_id: int, version_id: int) -> DatasetVersion:
    v = store.get_version(version_id)
    if v is None or v.dataset_id != dataset_id:
        raise NotFound(f"Dataset {dataset_id} has no version {version_id}.")
    return v


# ---- build from judgements ------------------------------------------------------------------------------------------
@router.post("/preview", response_model=PreferencePreviewOut,
             summary="Build preference pairs from your judgements without saving: counts, skipped reasons, the first pairs")
def preview(body: PreferencePreviewIn, actor: Actor = Depends(acting_user)) -> PreferencePreviewOut:
    filters, opts = _filters(body)
    report = build_preferences(actor, filters, **opts)
    return PreferencePreviewOut(**_totals(report), pairs=[pair_out(r) for r in report.rows[:body.limit]])


@router.post("/datasets", response_model=PreferenceSaveOut, status_code=201, responses=error_responses(409),
             summary="Build preference pairs from your judgements and save them as a new preference dataset (version 1)")
def save(body: PreferenceSaveIn, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> PreferenceSaveOut:
    """The version records the chats its pairs came from (lineage, like a chat dataset's). 400 when nothing matches."""
    filters, opts = _filters(body)
    report = build_preferences(actor, filters, **opts)
    version = pf.create_preference_dataset(services.settings, body.name.strip(), report.rows, actor=actor,
                                           note=(body.note or "").strip() or None)
    return PreferenceSaveOut(**_totals(report), dataset=dataset_out(store.get_dataset(version.dataset_id)),
                             version=version_out(version))


# ---- TRL files ------------------------------------------------------------------------------------------------------
@router.post("/inspect", response_model=PreferenceInspectOut, summary="Read a TRL preference file as an import would, writing nothing")
def inspect_file(file: UploadFile = File(..., description="JSONL, JSON, CSV, TSV or Parquet in a TRL preference layout"),
                 services=Depends(deps.services)) -> PreferenceInspectOut:
    with uploads.staged_upload(services.settings, file.file, file.filename) as path:
        try:
            layout, rows, problems = pf.inspect_preference_file(path)
        except FormatError as exc:
            return PreferenceInspectOut(layout=None, rows=0, problems=[], error=str(exc))
    return PreferenceInspectOut(layout=layout, rows=len(rows), problems=[problem_out(p) for p in problems[:500]])


@router.post("/import", response_model=PreferenceImportOut, status_code=201, responses=error_responses(409),
             summary="Import a TRL preference file (prompt/chosen/rejected, strings or messages) as a new preference dataset")
def import_file(
    file: UploadFile = File(..., description="JSONL, JSON, CSV, TSV or Parquet in a TRL preference layout"),
    name: str = Form("", description="the dataset's name (default: the file's name)"),
    valid_only: bool = Form(False, description="import the readable rows and skip the rest"),
    dedupe: bool = Form(True, description="drop near-duplicate and contradicting pairs"),
    actor: Actor = Depends(acting_user), services=Depends(deps.services),
) -> PreferenceImportOut:
    """All or nothing unless valid_only: rows that cannot be read give 422 import_refused with `problems`."""
    settings = services.settings
    with uploads.staged_upload(settings, file.file, file.filename) as path:
        version, problems, removed = pf.import_preference_file(
            settings, path, name.strip() or uploads.safe_stem(file.filename), actor=actor, valid_only=valid_only,
            dedupe=dedupe, note=f"imported from {uploads.safe_stem(file.filename)}{path.suffix}")
    ds = store.get_dataset(version.dataset_id)
    return PreferenceImportOut(dataset=dataset_out(ds), version=version_out(version), layout=ds.source_format,
                               rows=version.row_count, duplicates_removed=removed,
                               problems=[problem_out(p) for p in problems[:500]])


@router.get("/datasets/{dataset_id}/versions/{version_id}/rows", response_model=Page[PreferencePair],
            summary="Page a preference version's pairs (by line)")
def version_rows(dataset_id: int, version_id: int, limit: WideLimit = 50, cursor: CursorParam = None,
                 services=Depends(deps.services)) -> Page[PreferencePair]:
    rows = pf.load_preference_version(services.settings, _version(dataset_id, version_id))  # a chat version: 400
    items, nxt = offset_page(rows, limit, cursor)
    return Page[PreferencePair](items=[pair_out(r) for r in items], next_cursor=nxt)


@router.post("/datasets/{dataset_id}/versions/{version_id}/export", response_model=DatasetDownload,
             summary="Export a preference version in a TRL layout: a URL to download it")
def export_version(dataset_id: int, version_id: int, request: Request, body: PreferenceExportIn | None = None,
                   services=Depends(deps.services)) -> DatasetDownload:
    body = body or PreferenceExportIn()
    out = pf.export_preference_version(services.settings, _version(dataset_id, version_id), body.layout, split=body.split)
    url = request.url_for("download_preference_version", dataset_id=dataset_id, version_id=version_id)
    params = {"layout": body.layout, **({"split": body.split} if body.split else {})}
    return DatasetDownload(url=str(url.include_query_params(**params)), filename=out.name, format=f"trl-{body.layout}")


@router.get("/datasets/{dataset_id}/versions/{version_id}/download", name="download_preference_version",
            response_class=FileResponse, responses={200: {"content": {"application/x-ndjson": {}}}},
            summary="Download a preference version as TRL JSONL")
def download_version(dataset_id: int, version_id: int, layout: Layout = "conversational", split: Split | None = None,
                     services=Depends(deps.services)) -> FileResponse:
    out = pf.export_preference_version(services.settings, _version(dataset_id, version_id), layout, split=split)
    return FileResponse(out, media_type="application/x-ndjson", filename=out.name)
