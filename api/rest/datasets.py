"""REST routes: datasets — list (the team's, with their owners), import a file, page and edit the working copy, save
versions, diff and export them, add one of the caller's chats, stats and problems.

Every change goes through engines.datasets with the acting user (owner or admin only); files come back by URL only."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.auth import acting_user
from api.rest import deps
from api.rest.errors import NotFound, error_responses
from api.rest.pages import CursorParam, Page, Timestamp, WideLimit, decode_position, keyset_page, offset_page
from engines.accounts import Actor
from engines.datasets import draft, from_chats, uploads, versions
from engines.datasets.formats import FORMATS, Problem
from engines.datasets.validate import check
from storage import datasets as store
from storage.models import Dataset, DatasetRow, DatasetVersion

router = APIRouter(prefix="/datasets", tags=["datasets"])

ExportFormat = Literal["openai", "sharegpt", "parquet"]
SourceFormat = Literal[FORMATS]  # type: ignore[valid-type]
EXPORT_MEDIA = {"openai": "application/x-ndjson", "sharegpt": "application/x-ndjson",
                "parquet": "application/vnd.apache.parquet"}


# ---- bodies ---------------------------------------------------------------------------------------------------------
class DatasetMessage(BaseModel):
    role: str = Field(description="system, user or assistant")
    content: str


class DatasetOut(BaseModel):
    id: int
    name: str
    kind: Literal["chat", "preference"] = Field(description="chat (messages) or preference (prompt, chosen, rejected: "
                                                            "its versions are read and exported under /preferences)")
    owner: str | None = Field(description="the owner's user name: only they or an admin change it")
    rows: int = Field(description="rows in the working copy")
    source_format: str | None
    note: str | None
    latest_version: int | None = Field(description="the newest saved version's number")
    latest_version_id: int | None
    created_at: Timestamp
    updated_at: Timestamp


class DatasetIn(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    note: str | None = None


class VersionOut(BaseModel):
    id: int
    dataset_id: int
    version: int
    rows: int
    content_hash: str
    note: str | None
    parent_id: int | None
    created_at: Timestamp


class RowOut(BaseModel):
    id: int
    dataset_id: int
    messages: list[DatasetMessage]
    category: str | None
    split: str | None
    tokens: int | None


class VersionRowOut(BaseModel):
    line: int = Field(description="1-based line in the version's file")
    messages: list[DatasetMessage]
    category: str | None
    split: str | None


class RowIn(BaseModel):
    messages: list[DatasetMessage] = Field(min_length=1)
    category: str | None = Field(default=None, max_length=100)


class DeleteRowsIn(BaseModel):
    ids: list[int] = Field(min_length=1, max_length=10_000)


class DeletedOut(BaseModel):
    deleted: int


class SaveVersionIn(BaseModel):
    note: str | None = Field(default=None, max_length=500)


class ProblemOut(BaseModel):
    row: int = Field(description="the row's id in the working copy, or the line of an imported file")
    kind: str
    message: str
    severity: Literal["error", "warning"]


class ProblemsOut(BaseModel):
    rows: int
    errors: int
    warnings: int
    problems: list[ProblemOut]


class ImportOut(BaseModel):
    dataset: DatasetOut
    version: VersionOut
    format: str | None
    rows: int
    skipped: list[int] = Field(description="lines left out (valid_only)")
    dropped: list[int] = Field(default_factory=list,
                               description="lines left out as exact duplicates (of an earlier line, or of a row the dataset has)")
    problems: list[ProblemOut]


class InspectOut(BaseModel):
    format: str | None = Field(description="the layout found, or null when a column mapping is needed")
    rows: int
    problems: list[ProblemOut]
    error: str | None = None
    fields: list[str] = Field(default_factory=list, description="fields found, for a column mapping")
    suggested_mapping: dict[str, str | None] | None = None


class RoleTokens(BaseModel):
    messages: int
    tokens: int
    mean: float
    max: int


class CategoryCount(BaseModel):
    category: str
    rows: int


class StatsOut(BaseModel):
    rows: int
    turns_mean: float
    tokens: int
    counted_with: str
    tokens_by_role: dict[str, RoleTokens]
    turns: dict[str, int] = Field(description="rows per number of turns")
    categories: list[CategoryCount]
    splits: dict[str, int]


class DiffPair(BaseModel):
    old: VersionRowOut
    new: VersionRowOut


class DiffOut(BaseModel):
    old: VersionOut
    new: VersionOut
    added: int
    removed: int
    changed: int
    added_rows: list[VersionRowOut]
    removed_rows: list[VersionRowOut]
    changed_rows: list[DiffPair]


class ExportIn(BaseModel):
    format: ExportFormat = "openai"


class DatasetDownload(BaseModel):
    url: str = Field(description="GET it (with your key) to download the file")
    filename: str
    format: str


class FromChatIn(BaseModel):
    conversation_id: int
    upto_message_id: int | None = Field(default=None, description="stop at this assistant answer (default: all turns)")


# ---- shaping --------------------------------------------------------------------------------------------------------
def dataset_out(ds: Dataset) -> DatasetOut:
    last = store.latest_version(ds.id)
    return DatasetOut(id=ds.id, name=ds.name, kind=ds.kind or "chat", owner=getattr(ds, "owner_name", None), rows=draft.count(ds.id),
                      source_format=ds.source_format, note=ds.note, latest_version=last.version if last else None,
                      latest_version_id=last.id if last else None, created_at=ds.created_at, updated_at=ds.updated_at)


def version_out(v: DatasetVersion) -> VersionOut:
    return VersionOut(id=v.id, dataset_id=v.dataset_id, version=v.version, rows=v.row_count, content_hash=v.content_hash,
                      note=v.note, parent_id=v.parent_id, created_at=v.created_at)


def row_out(r: DatasetRow) -> RowOut:
    return RowOut(id=r.id, dataset_id=r.dataset_id, messages=json.loads(r.messages), category=r.category, split=r.split,
                  tokens=r.tokens)


def file_row_out(r: Any) -> VersionRowOut:
    return VersionRowOut(line=r.source, messages=r.messages, category=r.category, split=r.extra.get("split"))


def problem_out(p: Problem) -> ProblemOut:
    return ProblemOut(row=p.row, kind=p.kind, message=p.message, severity="error" if p.severity == "error" else "warning")


def _dataset(dataset_id: int) -> Dataset:
    ds = store.get_dataset(dataset_id)
    if ds is None:
        raise NotFound(f"There is no dataset {dataset_id}.")
    return ds


def _version(dataset_id: int, version_id: int) -> DatasetVersion:
    v = store.get_version(version_id)
    if v is None or v.dataset_id != dataset_id:
        raise NotFound(f"Dataset {dataset_id} has no version {version_id}.")
    return v


def _row(dataset_id: int, row_id: int) -> DatasetRow:
    row = draft.get_row(row_id)
    if row is None or row.dataset_id != dataset_id:
        raise NotFound(f"Dataset {dataset_id} has no row {row_id}.")
    return row


def _messages(body: RowIn) -> list[dict[str, str]]:
    return [{"role": m.role.strip().lower(), "content": m.content} for m in body.messages]


def _mapping(user: str | None, assistant: str | None, system: str | None, category: str | None) -> dict[str, str | None]:
    return {"user": user, "assistant": assistant, "system": system, "category": category}


# ---- the team's datasets ------------------------------------------------------------------------------------------
@router.get("", response_model=Page[DatasetOut], summary="List the team's datasets (newest-changed first)")
def list_datasets(limit: WideLimit = 50, cursor: CursorParam = None) -> Page[DatasetOut]:
    items, nxt = offset_page(store.list_datasets(), limit, cursor)
    return Page[DatasetOut](items=[dataset_out(d) for d in items], next_cursor=nxt)


@router.post("", response_model=DatasetOut, status_code=201, summary="Create an empty dataset of yours")
def create_dataset(body: DatasetIn, actor: Actor = Depends(acting_user)) -> DatasetOut:
    ds_id = versions.create_empty(body.name.strip(), body.note, actor=actor)
    return dataset_out(_dataset(ds_id))


@router.post("/inspect", response_model=InspectOut, summary="Read a file as an import would, writing nothing")
def inspect_dataset_file(
    file: UploadFile = File(..., description="JSONL, JSON, CSV, TSV or Parquet"),
    format: SourceFormat | None = Form(None, description="the layout, when detection should not guess"),  # noqa: A002
    map_user: str | None = Form(None), map_assistant: str | None = Form(None), map_system: str | None = Form(None),
    map_category: str | None = Form(None), template_model: str | None = Form(None),
    services=Depends(deps.services),
) -> InspectOut:
    settings = services.settings
    with uploads.staged_upload(settings, file.file, file.filename) as path:
        found = uploads.inspect_upload(settings, path, fmt=format,
                                       mapping=uploads.clean_mapping(_mapping(map_user, map_assistant, map_system, map_category)),
                                       template_model=template_model)
    if found.report is None:
        return InspectOut(format=None, rows=0, problems=[], error=found.error, fields=found.fields or [],
                          suggested_mapping=found.guess)
    return InspectOut(format=found.report.format, rows=len(found.report.rows),
                      problems=[problem_out(p) for p in found.report.problems[:500]])


@router.post("/import", response_model=ImportOut, status_code=201,
             summary="Import a file as a new dataset of yours (all or nothing, or its valid rows only)",
             responses=error_responses(409))
def import_dataset(
    file: UploadFile = File(..., description="JSONL, JSON, CSV, TSV or Parquet"),
    name: str = Form("", description="the dataset's name (default: the file's name)"),
    valid_only: bool = Form(False, description="import the valid rows and skip the rest"),
    format: SourceFormat | None = Form(None, description="the layout, when detection should not guess"),  # noqa: A002
    map_user: str | None = Form(None, description="column mapping: the user turn's field"),
    map_assistant: str | None = Form(None), map_system: str | None = Form(None), map_category: str | None = Form(None),
    template_model: str | None = Form(None, description="count tokens with this model's tokenizer"),
    drop_duplicates: bool = Form(True, description="leave out rows that repeat an earlier row exactly"),
    actor: Actor = Depends(acting_user), services=Depends(deps.services),
) -> ImportOut:
    settings = services.settings
    with uploads.staged_upload(settings, file.file, file.filename) as path:  # NameTaken: 409, ImportRefused: 422 (errors.py)
        report = uploads.import_upload(settings, path, name, actor=actor, valid_only=valid_only, fmt=format,
                                       mapping=_mapping(map_user, map_assistant, map_system, map_category),
                                       template_model=template_model, source_name=file.filename,
                                       drop_duplicates=drop_duplicates)
    return _imported(report)


def _imported(report: versions.ImportReport) -> ImportOut:
    v = report.version
    assert v is not None
    return ImportOut(dataset=dataset_out(_dataset(v.dataset_id)), version=version_out(v), format=report.format,
                     rows=v.row_count, skipped=report.skipped, dropped=report.dropped,
                     problems=[problem_out(p) for p in report.problems[:500]])


@router.post("/{dataset_id}/append", response_model=ImportOut, status_code=201,
             summary="Add a file's rows to a dataset of yours and save them as its next version",
             responses=error_responses(422))
def append_to_dataset(
    dataset_id: int,
    file: UploadFile = File(..., description="JSONL, JSON, CSV, TSV or Parquet"),
    valid_only: bool = Form(False, description="add the valid rows and skip the rest (else all or nothing)"),
    format: SourceFormat | None = Form(None, description="the layout, when detection should not guess"),  # noqa: A002
    map_user: str | None = Form(None, description="column mapping: the user turn's field"),
    map_assistant: str | None = Form(None), map_system: str | None = Form(None), map_category: str | None = Form(None),
    template_model: str | None = Form(None, description="count tokens with this model's tokenizer"),
    drop_duplicates: bool = Form(True, description="leave out rows the dataset has already, or the file repeats"),
    actor: Actor = Depends(acting_user), services=Depends(deps.services),
) -> ImportOut:
    settings = services.settings
    _dataset(dataset_id)  # 404 before the upload is read
    with uploads.staged_upload(settings, file.file, file.filename) as path:  # ImportRefused: 422; nothing new: 400
        report = uploads.append_upload(settings, path, dataset_id, actor=actor, valid_only=valid_only, fmt=format,
                                       mapping=_mapping(map_user, map_assistant, map_system, map_category),
                                       template_model=template_model, source_name=file.filename,
                                       drop_duplicates=drop_duplicates)
    return _imported(report)


@router.get("/{dataset_id}", response_model=DatasetOut, summary="One dataset")
def get_dataset(dataset_id: int) -> DatasetOut:
    return dataset_out(_dataset(dataset_id))


# ---- the working copy -----------------------------------------------------------------------------------------------
@router.get("/{dataset_id}/rows", response_model=Page[RowOut], summary="Page the working copy's rows (by id)")
def list_rows(dataset_id: int, limit: WideLimit = 50, cursor: CursorParam = None,
              search: str = Query("", max_length=500), category: str | None = Query(None, description="'(none)': no category"),
              split: Literal["train", "eval"] | None = None) -> Page[RowOut]:
    _dataset(dataset_id)
    rows = draft.rows_after(dataset_id, decode_position(cursor), limit + 1, search=search, category=category, split=split)
    items, nxt = keyset_page(rows, limit)
    return Page[RowOut](items=[row_out(r) for r in items], next_cursor=nxt)


@router.post("/{dataset_id}/rows", response_model=RowOut, status_code=201, summary="Add a row")
def add_row(dataset_id: int, body: RowIn, actor: Actor = Depends(acting_user)) -> RowOut:
    _dataset(dataset_id)
    row_id = draft.add_row(dataset_id, _messages(body), (body.category or "").strip() or None, actor=actor)
    return row_out(_row(dataset_id, row_id))


@router.get("/{dataset_id}/rows/{row_id}", response_model=RowOut, summary="One row of the working copy")
def get_row(dataset_id: int, row_id: int) -> RowOut:
    return row_out(_row(dataset_id, row_id))


@router.put("/{dataset_id}/rows/{row_id}", response_model=RowOut, summary="Replace a row's messages and category")
def update_row(dataset_id: int, row_id: int, body: RowIn, actor: Actor = Depends(acting_user)) -> RowOut:
    _row(dataset_id, row_id)
    try:
        draft.update_row(row_id, _messages(body), (body.category or "").strip() or None, actor=actor)
    except KeyError:  # deleted meanwhile
        raise NotFound(f"Dataset {dataset_id} has no row {row_id}.") from None
    return row_out(_row(dataset_id, row_id))


@router.delete("/{dataset_id}/rows/{row_id}", response_model=DeletedOut, summary="Delete a row (undoable in the UI)")
def delete_row(dataset_id: int, row_id: int, actor: Actor = Depends(acting_user)) -> DeletedOut:
    _row(dataset_id, row_id)
    return DeletedOut(deleted=draft.delete_rows(dataset_id, [row_id], actor=actor))


@router.post("/{dataset_id}/rows/delete", response_model=DeletedOut, summary="Delete several rows (ids of other datasets are ignored)")
def delete_rows(dataset_id: int, body: DeleteRowsIn, actor: Actor = Depends(acting_user)) -> DeletedOut:
    _dataset(dataset_id)
    return DeletedOut(deleted=draft.delete_rows(dataset_id, body.ids, actor=actor))


@router.post("/{dataset_id}/conversations", response_model=RowOut, status_code=201,
             summary="Add one of your own conversations as a row")
def add_conversation(dataset_id: int, body: FromChatIn, actor: Actor = Depends(acting_user)) -> RowOut:
    _dataset(dataset_id)
    row_id = from_chats.add_conversation(dataset_id, body.conversation_id, body.upto_message_id, actor=actor)
    return row_out(_row(dataset_id, row_id))


@router.get("/{dataset_id}/problems", response_model=ProblemsOut, summary="Validation problems of the working copy")
def problems(dataset_id: int) -> ProblemsOut:
    _dataset(dataset_id)
    rows = draft.all_rows(dataset_id)
    found = check(rows)
    errors = sum(1 for p in found if p.severity == "error")
    return ProblemsOut(rows=len(rows), errors=errors, warnings=len(found) - errors,
                       problems=[problem_out(p) for p in found[:1000]])


@router.get("/{dataset_id}/stats", response_model=StatsOut, summary="Rows, turns and tokens per role")
def stats(dataset_id: int, template_model: str | None = Query(None, description="count with this model's tokenizer"),
          services=Depends(deps.services)) -> StatsOut:
    _dataset(dataset_id)
    s = uploads.dataset_stats(services.settings, dataset_id, template_model)
    by_role = {role: RoleTokens(messages=len(ns), tokens=sum(ns), mean=sum(ns) / len(ns), max=max(ns))
               for role, ns in s.tokens_by_role.items()}
    turns: dict[str, int] = {}
    for n in sorted(s.turns):
        turns[str(n)] = turns.get(str(n), 0) + 1
    return StatsOut(rows=s.rows, turns_mean=round(s.turns_mean, 3), tokens=s.tokens, counted_with=s.counted_with,
                    tokens_by_role=by_role, turns=turns,
                    categories=[CategoryCount(category=c, rows=n) for c, n in s.categories], splits=s.splits)


# ---- versions -------------------------------------------------------------------------------------------------------
@router.get("/{dataset_id}/versions", response_model=Page[VersionOut], summary="Saved versions, newest first")
def list_versions(dataset_id: int, limit: WideLimit = 50, cursor: CursorParam = None) -> Page[VersionOut]:
    _dataset(dataset_id)
    items, nxt = offset_page(store.list_versions(dataset_id), limit, cursor)
    return Page[VersionOut](items=[version_out(v) for v in items], next_cursor=nxt)


@router.post("/{dataset_id}/versions", response_model=VersionOut, status_code=201,
             summary="Save the working copy as the next immutable version")
def save_version(dataset_id: int, body: SaveVersionIn | None = None, actor: Actor = Depends(acting_user),
                 services=Depends(deps.services)) -> VersionOut:
    _dataset(dataset_id)
    note = ((body.note if body else None) or "").strip() or None
    return version_out(versions.save_draft(services.settings, dataset_id, note=note, actor=actor))


@router.get("/{dataset_id}/versions/{version_id}", response_model=VersionOut, summary="One saved version")
def get_version(dataset_id: int, version_id: int) -> VersionOut:
    return version_out(_version(dataset_id, version_id))


@router.get("/{dataset_id}/versions/{version_id}/rows", response_model=Page[VersionRowOut],
            summary="Page a saved version's rows (by line)")
def version_rows(dataset_id: int, version_id: int, limit: WideLimit = 50, cursor: CursorParam = None,
                 services=Depends(deps.services)) -> Page[VersionRowOut]:
    v = _version(dataset_id, version_id)
    items, nxt = offset_page(versions.load_version(services.settings, v), limit, cursor)
    return Page[VersionRowOut](items=[file_row_out(r) for r in items], next_cursor=nxt)


@router.get("/{dataset_id}/diff", response_model=DiffOut, summary="What changed from one version to another")
def diff(dataset_id: int, old: int = Query(..., description="the older version's id"),
         new: int = Query(..., description="the newer version's id"),
         limit: int = Query(50, ge=0, le=1000, description="rows listed per kind"),
         services=Depends(deps.services)) -> DiffOut:
    a, b = _version(dataset_id, old), _version(dataset_id, new)
    d = versions.diff_versions(services.settings, a, b)
    return DiffOut(old=version_out(a), new=version_out(b), added=len(d.added), removed=len(d.removed), changed=len(d.changed),
                   added_rows=[file_row_out(r) for r in d.added[:limit]],
                   removed_rows=[file_row_out(r) for r in d.removed[:limit]],
                   changed_rows=[DiffPair(old=file_row_out(o), new=file_row_out(n)) for o, n in d.changed[:limit]])


@router.post("/{dataset_id}/versions/{version_id}/export", response_model=DatasetDownload,
             summary="Export a version (OpenAI JSONL, ShareGPT JSONL or Parquet): a URL to download it")
def export_version(dataset_id: int, version_id: int, request: Request, body: ExportIn | None = None,
                   services=Depends(deps.services)) -> DatasetDownload:
    v = _version(dataset_id, version_id)
    fmt = body.format if body else "openai"
    out = versions.export_version(services.settings, v, fmt)
    url = request.url_for("download_dataset_version", dataset_id=dataset_id, version_id=version_id)
    return DatasetDownload(url=str(url.include_query_params(format=fmt)), filename=out.name, format=fmt)


@router.get("/{dataset_id}/versions/{version_id}/download", name="download_dataset_version",
            response_class=FileResponse, summary="Download a version's file in an export format",
            responses={200: {"content": {"application/x-ndjson": {}, "application/vnd.apache.parquet": {}}}})
def download_version(dataset_id: int, version_id: int, format: ExportFormat = "openai",  # noqa: A002
                     services=Depends(deps.services)) -> FileResponse:
    v = _version(dataset_id, version_id)
    out = versions.export_version(services.settings, v, format)
    return FileResponse(out, media_type=EXPORT_MEDIA[format], filename=out.name)
