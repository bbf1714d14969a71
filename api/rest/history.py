"""REST routes: the History timeline and search, one item's description and delete, a model's lineage, run
comparison, and archives (admins only).

Chats and battles are private: another person's is 'not found' (404) like a missing one. Runs, dataset versions and
evaluations are the team's: anyone sees them, their owner or an admin deletes them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from api.auth import acting_user
from api.rest import deps
from api.rest.errors import ERRORS, NotFound
from api.rest.pages import MAX_ID, CursorParam, InvalidCursor, Limit, Page, Timestamp, decode_cursor, encode_cursor
from engines.accounts import Actor
from engines.history import items as history_items
from engines.history.archive import archive_file, export_archive
from engines.history.lineage import compare_runs, lineage
from engines.history.timeline import MAX_SEARCH, history_page
from engines.paths import shown_path
from storage.history import KINDS

router = APIRouter(prefix="/history", tags=["history"], responses=ERRORS)

Kind = Literal["chat", "run", "dataset", "battle", "eval"]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID)]


class HistoryItem(BaseModel):
    key: str = Field(description="kind:id, e.g. chat:12")
    kind: Kind
    id: int
    title: str
    detail: str
    at: Timestamp = Field(description="When it was last changed (chats) or created (the rest), UTC.")
    snippet: str = Field("", description="For a search: the matching words in context, marked «like this».")


class ItemDescription(BaseModel):
    key: str
    kind: Kind
    id: int
    markdown: str = Field(description="What the History tab shows for it.")
    in_progress: bool = Field(description="A queued or running fine-tune or evaluation: it still changes.")


class Deleted(BaseModel):
    key: str
    deleted: str = Field(description="What was deleted (its name or title).")


class CurvePoint(BaseModel):
    step: int
    loss: float
    series: str = Field(description="`<run> · train` or `<run> · eval`")


class RunRef(BaseModel):
    id: int
    name: str
    status: str
    method: str
    base_model: str
    step: int
    total_steps: int | None = None


class DatasetVersionRef(BaseModel):
    id: int
    dataset: str
    version: int
    row_count: int


class Ref(BaseModel):
    id: int
    name: str


class Lineage(BaseModel):
    model: str
    kind: Literal["base", "adapter", "external", "unknown"]
    parent: str | None = None
    run: RunRef | None = Field(None, description="The fine-tune that made this adapter.")
    dataset_file: str | None = Field(None, description="The file the run trained on, relative to the data folder.")
    dataset_version: DatasetVersionRef | None = None
    source_chats: list[Ref] = Field(description="Your conversations its dataset version was built from.")
    adapters: list[str] = Field(description="For a base model: the adapters trained on it.")
    evaluations: list[Ref]
    battles: int
    battles_won: int
    curves: list[CurvePoint]
    curves_source: str = Field(description="mlflow | events | empty when there are no curves")


class ParameterDiff(BaseModel):
    parameter: str
    values: dict[str, str] = Field(description="run name → value")


class RunComparison(BaseModel):
    curves: list[CurvePoint]
    parameters: list[ParameterDiff] = Field(description="Only the spec fields whose values differ.")


class Archive(BaseModel):
    name: str
    size_bytes: int
    url: str = Field(description="GET it (with your key) to download the zip.")


def _curves(frame: Any) -> list[CurvePoint]:
    if frame is None:
        return []
    return [CurvePoint(step=int(r["step"]), loss=float(r["loss"]), series=str(r["series"])) for r in frame.to_dict("records")]


def _search_offset(cursor: str | None) -> int:
    """A search page's cursor: ("search", hits already shown), never past the last hit a search can reach."""
    parts = decode_cursor(cursor, str, int)
    if parts is None:
        return 0
    if parts[0] != "search" or parts[1] >= MAX_SEARCH:
        raise InvalidCursor()
    return parts[1]


def _timeline_before(cursor: str | None) -> tuple[dt.datetime, str, int] | None:
    """A timeline page's cursor: (the last item's time as naive UTC ISO text, its kind, its id)."""
    parts = decode_cursor(cursor, str, str, int)
    if parts is None:
        return None
    try:
        at = dt.datetime.fromisoformat(parts[0])
    except ValueError:
        raise InvalidCursor() from None
    if at.tzinfo is not None or parts[1] not in KINDS:
        raise InvalidCursor()
    return at, parts[1], parts[2]


@router.get("", response_model=Page[HistoryItem], summary="The timeline, or the matches of a search")
def timeline(
    limit: Limit = 50, cursor: CursorParam = None,
    q: Annotated[str, Query(max_length=200, description="Words to find (chat text and titles, names, prompts).")] = "",
    kinds: Annotated[list[Kind] | None, Query(description="Which kinds (repeat the parameter); all by default.")] = None,
    model: Annotated[str | None, Query(max_length=300, description="Only items of this model.")] = None,
    since_days: Annotated[int | None, Query(ge=1, le=3650, description="Only the last N days.")] = None,
    actor: Actor = Depends(acting_user),
) -> Page[HistoryItem]:
    """Everything recorded, newest first: your chats and battles, the team's runs, dataset versions and evaluations."""
    since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=since_days) if since_days else None
    chosen = tuple(dict.fromkeys(kinds)) if kinds else KINDS
    if q.strip():
        page = history_page(actor, text=q, kinds=chosen, model=model, since=since, offset=_search_offset(cursor),
                            limit=limit)
        nxt = encode_cursor("search", page.next_offset) if page.next_offset is not None else None
    else:
        page = history_page(actor, kinds=chosen, model=model, since=since, limit=limit, before=_timeline_before(cursor))
        nxt = encode_cursor(page.next_before[0].isoformat(), *page.next_before[1:]) if page.next_before else None
    items = [HistoryItem(key=i.key, kind=i.kind, id=i.id, title=i.title, detail=i.detail, at=i.at, snippet=i.snippet)
             for i in page.items]
    return Page[HistoryItem](items=items, next_cursor=nxt)


@router.get("/items/{kind}/{item_id}", response_model=ItemDescription, summary="One item, described")
def describe_item(kind: Kind, item_id: ItemId, actor: Actor = Depends(acting_user)) -> ItemDescription:
    text = history_items.describe(kind, item_id, actor)
    if text is None:
        raise NotFound(f"There is no {kind} {item_id} you can see.")
    return ItemDescription(key=f"{kind}:{item_id}", kind=kind, id=item_id, markdown=text,
                           in_progress=history_items.in_progress(kind, item_id))


@router.delete("/items/{kind}/{item_id}", response_model=Deleted, summary="Delete one item and its files")
def delete_item(kind: Kind, item_id: ItemId, actor: Actor = Depends(acting_user),
                services=Depends(deps.services)) -> Deleted:
    """Chats and battles by their owner; runs, dataset versions and evaluations by their owner or an admin (403 for
    anyone else). An item in use (a running job, a version a run trained on) is refused with 400 saying why."""
    try:
        name = history_items.delete(services.settings, kind, item_id, actor)
    except KeyError:
        raise NotFound(f"There is no {kind} {item_id} you can see.") from None
    return Deleted(key=f"{kind}:{item_id}", deleted=name)


@router.get("/lineage", response_model=Lineage, summary="Where a model came from and where it went")
def model_lineage(model: Annotated[str, Query(min_length=1, max_length=300, description="A model's name.")],
                  actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> Lineage:
    settings = services.settings
    lin = lineage(settings, model, actor)
    run = lin.run
    version = lin.version
    return Lineage(
        model=lin.model, kind=lin.kind if lin.kind in ("base", "adapter", "external") else "unknown", parent=lin.parent,
        run=RunRef(id=run.id, name=run.name, status=run.status, method=run.method, base_model=run.base_model,
                   step=run.step, total_steps=run.total_steps) if run else None,
        dataset_file=shown_path(lin.dataset, (settings.data_dir,)) if lin.dataset else None,
        dataset_version=DatasetVersionRef(id=version.id, dataset=version.dataset.name, version=version.version,
                                          row_count=version.row_count) if version else None,
        source_chats=[Ref(id=c.id, name=c.title) for c in lin.source_chats],
        adapters=[a.name for a in lin.adapters],
        evaluations=[Ref(id=e.id, name=e.name) for e in lin.evaluations],
        battles=lin.battles, battles_won=lin.battles_won, curves=_curves(lin.curves), curves_source=lin.curves_source,
    )


@router.get("/runs/compare", response_model=RunComparison, summary="Overlaid loss curves and differing parameters")
def runs_compared(ids: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Query(min_length=1, max_length=10, description="Run ids (repeat).")],
                  actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> RunComparison:
    settings = services.settings
    curves, table = compare_runs(settings, list(dict.fromkeys(ids)))
    names = [c for c in table.columns if c != "parameter"]

    def shown(value: Any) -> str:  # a spec's paths (dataset, output folder) are shown inside the data folder only
        text = str(value)
        return shown_path(text, (settings.data_dir,)) if text.startswith(("/", "~")) else text

    params = [ParameterDiff(parameter=str(r["parameter"]), values={n: shown(r[n]) for n in names})
              for r in table.to_dict("records")]
    return RunComparison(curves=_curves(curves), parameters=params)


@router.post("/archives", response_model=Archive, status_code=201, summary="Export the whole studio as a zip (admins)")
def export(request: Request, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> Archive:
    """Writes the archive into the studio's exports folder and answers with the URL to download it from."""
    path = export_archive(services.settings, actor=actor)
    url = f"{request.scope.get('root_path', '')}/history/archives/{path.name}"
    return Archive(name=path.name, size_bytes=path.stat().st_size, url=url)


@router.get("/archives/{name}", response_class=FileResponse, summary="Download an exported archive (admins)",
            responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
def download_archive(name: Annotated[str, Path(max_length=100)], actor: Actor = Depends(acting_user),
                     services=Depends(deps.services)) -> FileResponse:
    try:
        path = archive_file(services.settings, name, actor=actor)
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    return FileResponse(path, media_type="application/zip", filename=path.name)
