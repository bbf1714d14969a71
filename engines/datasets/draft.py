"""A dataset's working copy: rows in SQL (paged, filtered and searched server-side), every change undoable.

Edits land here; "save version" freezes the working copy into an immutable file (versions.py).
Every change takes the acting user: datasets are visible to the whole team, changed only by their owner or an admin.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from typing import Any

from peewee import fn

from engines.accounts import Actor, require_owner
from engines.datasets.formats import Row
from engines.datasets.validate import near_key, row_problems
from storage import datasets as store
from storage.db import database
from storage.models import Dataset, DatasetEdit, DatasetRow

PAGE_SIZE = 50
BATCH = 2000  # rows per INSERT: 7 columns x 2000 stays under SQLite's 32766 bound parameters


@dataclass
class Page:
    rows: list[DatasetRow]
    total: int  # rows matching the filter
    page: int
    pages: int


def _search_text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages).casefold()


def _snapshot(rows: list[DatasetRow], present: bool = True) -> list[dict[str, Any]]:
    return [{"id": r.id, "present": present, "messages": r.messages, "category": r.category, "split": r.split,
             "tokens": r.tokens} for r in rows]


def _log(dataset_id: int, action: str, before: list[dict[str, Any]]) -> None:
    DatasetEdit.create(dataset=dataset_id, action=action, before=json.dumps(before, ensure_ascii=False))
    store.touch(dataset_id)


# A version's save stamps the dataset a moment after the version's own time: closer than this is not a change.
SAVE_STAMP_SLACK = dt.timedelta(seconds=1)


@dataclass
class SavedState:
    version: int | None  # the newest saved version's number (None: never saved)
    unsaved: bool  # the working copy changed since it (or has rows and was never saved)


def saved_state(dataset_id: int) -> SavedState:
    """Whether the working copy has changes that no version holds yet (an edit, an undo, added or deleted rows)."""
    last = store.latest_version(dataset_id)
    if last is None:
        return SavedState(None, count(dataset_id) > 0)
    ds = store.get_dataset(dataset_id)
    return SavedState(last.version, bool(ds and ds.updated_at and ds.updated_at - last.created_at > SAVE_STAMP_SLACK))


def writable(actor: Actor, dataset_id: int) -> Dataset:
    """The dataset if `actor` may change it (its owner or an admin); PermissionDenied if not, EditError if there is none."""
    ds = store.get_dataset(int(dataset_id))
    if ds is None:
        raise EditError(f"There is no dataset {dataset_id}.")
    require_owner(actor, ds.owner_id, "dataset")
    return ds


def fill(dataset_id: int, rows: list[Row], *, actor: Actor, replace: bool = True, action: str | None = None) -> int:
    """Put rows into the working copy (replacing it, or appended); logged for undo when `action` is given."""
    writable(actor, dataset_id)
    with database.atomic():
        if replace:
            if action:
                _log(dataset_id, action, _snapshot(list(DatasetRow.select().where(DatasetRow.dataset == dataset_id))))
            DatasetRow.delete().where(DatasetRow.dataset == dataset_id).execute()
        payload = [
            {"dataset": dataset_id, "messages": json.dumps(r.messages, ensure_ascii=False), "category": r.category,
             "split": r.extra.get("split"), "search": _search_text(r.messages), "tokens": r.extra.get("tokens"),
             "conversation_id": r.extra.get("conversation_id")}
            for r in rows
        ]
        first_new = (DatasetRow.select(fn.MAX(DatasetRow.id)).scalar() or 0) + 1
        for i in range(0, len(payload), BATCH):
            DatasetRow.insert_many(payload[i:i + BATCH]).execute()
        if action and not replace:
            added = DatasetRow.select().where((DatasetRow.dataset == dataset_id) & (DatasetRow.id >= first_new))
            _log(dataset_id, action, _snapshot(list(added), present=False))
    return len(payload)


def _query(dataset_id: int, search: str = "", category: str | None = None, split: str | None = None) -> Any:
    q = DatasetRow.select().where(DatasetRow.dataset == dataset_id)
    if search.strip():
        q = q.where(DatasetRow.search.contains(search.strip().casefold()))
    if category:
        q = q.where(DatasetRow.category.is_null() if category == "(none)" else DatasetRow.category == category)
    if split:
        q = q.where(DatasetRow.split == split)
    return q


def page(dataset_id: int, number: int = 1, *, search: str = "", category: str | None = None, split: str | None = None,
         size: int = PAGE_SIZE) -> Page:
    q = _query(dataset_id, search, category, split)
    total = q.count()
    pages = max(1, -(-total // size))
    number = min(max(1, number), pages)
    rows = list(q.order_by(DatasetRow.id).paginate(number, size))
    return Page(rows, total, number, pages)


def rows_after(dataset_id: int, after_id: int | None = None, limit: int = PAGE_SIZE, *, search: str = "",
               category: str | None = None, split: str | None = None) -> list[DatasetRow]:
    """Up to `limit` rows with ids above `after_id` (keyset paging: stable while rows are added or deleted)."""
    q = _query(dataset_id, search, category, split)
    if after_id:
        q = q.where(DatasetRow.id > after_id)
    return list(q.order_by(DatasetRow.id).limit(limit))


def all_rows(dataset_id: int) -> list[Row]:
    out = []
    for r in DatasetRow.select().where(DatasetRow.dataset == dataset_id).order_by(DatasetRow.id).iterator():
        out.append(Row(json.loads(r.messages), r.category, r.id,
                       {"split": r.split, "tokens": r.tokens, "conversation_id": r.conversation_id}))
    return out


def count(dataset_id: int) -> int:
    return DatasetRow.select().where(DatasetRow.dataset == dataset_id).count()


def get_row(row_id: int) -> DatasetRow | None:
    return DatasetRow.get_or_none(DatasetRow.id == row_id)


def categories(dataset_id: int) -> list[tuple[str, int]]:
    q = (DatasetRow.select(DatasetRow.category, fn.COUNT(DatasetRow.id).alias("n"))
         .where(DatasetRow.dataset == dataset_id).group_by(DatasetRow.category).order_by(fn.COUNT(DatasetRow.id).desc()))
    return [(r.category or "(none)", r.n) for r in q]


class EditError(ValueError):
    """An edit that would leave an invalid row; the message says why."""


def _checked(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    problems = [p for p in row_problems(Row(messages)) if p.severity == "error"]
    if problems:
        raise EditError("; ".join(p.message for p in problems))
    return messages


def update_row(row_id: int, messages: list[dict[str, str]], category: str | None, *, actor: Actor) -> None:
    row = get_row(row_id)
    if row is None:
        raise KeyError(row_id)
    writable(actor, row.dataset_id)
    _checked(messages)
    with database.atomic():
        _log(row.dataset_id, "edit", _snapshot([row]))
        DatasetRow.update(messages=json.dumps(messages, ensure_ascii=False), category=category or None,
                          search=_search_text(messages), tokens=None).where(DatasetRow.id == row_id).execute()


def add_row(dataset_id: int, messages: list[dict[str, str]], category: str | None = None, *, actor: Actor,
            action: str = "add", conversation_id: int | None = None) -> int:
    writable(actor, dataset_id)
    _checked(messages)
    with database.atomic():
        row = DatasetRow.create(dataset=dataset_id, messages=json.dumps(messages, ensure_ascii=False),
                                category=category or None, search=_search_text(messages), conversation_id=conversation_id)
        _log(dataset_id, action, _snapshot([row], present=False))
    return row.id


def delete_rows(dataset_id: int, row_ids: list[int], action: str = "delete", *, actor: Actor) -> int:
    writable(actor, dataset_id)
    return _delete_rows(dataset_id, row_ids, action)


def _delete_rows(dataset_id: int, row_ids: list[int], action: str) -> int:
    rows = list(DatasetRow.select().where((DatasetRow.dataset == dataset_id) & (DatasetRow.id.in_(row_ids))))
    if not rows:
        return 0
    with database.atomic():
        _log(dataset_id, action, _snapshot(rows))
        DatasetRow.delete().where(DatasetRow.id.in_([r.id for r in rows])).execute()
    return len(rows)


def delete_matching(dataset_id: int, *, actor: Actor, search: str = "", category: str | None = None,
                    split: str | None = None) -> int:
    """Bulk delete everything the current filter shows (undoable as one change)."""
    writable(actor, dataset_id)
    if not (search.strip() or category or split):
        raise EditError("Set a filter first: bulk delete removes the rows the filter shows.")
    ids = [r.id for r in _query(dataset_id, search, category, split).select(DatasetRow.id)]
    return _delete_rows(dataset_id, ids, "bulk_delete")


def dedupe(dataset_id: int, *, actor: Actor, near: bool = False) -> int:
    """Remove exact (or near) duplicates, keeping the first of each; returns how many went."""
    writable(actor, dataset_id)
    seen: set[str] = set()
    drop = []
    for r in DatasetRow.select().where(DatasetRow.dataset == dataset_id).order_by(DatasetRow.id).iterator():
        key = near_key(Row(json.loads(r.messages))) if near else r.messages
        if key in seen:
            drop.append(r.id)
        seen.add(key)
    return _delete_rows(dataset_id, drop, "dedupe") if drop else 0


def assign_split(dataset_id: int, eval_fraction: float, seed: int, *, actor: Actor) -> tuple[int, int]:
    """Mark rows train/eval with a seeded shuffle (at least one eval row when asked); returns (train, eval)."""
    writable(actor, dataset_id)
    if not 0 <= eval_fraction < 1:
        raise EditError("The eval fraction must be between 0 and 1.")
    rows = list(DatasetRow.select().where(DatasetRow.dataset == dataset_id).order_by(DatasetRow.id))
    ids = [r.id for r in rows]
    random.Random(seed).shuffle(ids)
    n_eval = min(len(ids) - 1, max(1, round(len(ids) * eval_fraction))) if eval_fraction > 0 and len(ids) > 1 else 0
    eval_ids = set(ids[:n_eval])
    with database.atomic():
        _log(dataset_id, "split", _snapshot(rows))
        DatasetRow.update(split="train").where((DatasetRow.dataset == dataset_id) & ~(DatasetRow.id.in_(eval_ids))).execute()
        if eval_ids:
            DatasetRow.update(split="eval").where(DatasetRow.id.in_(eval_ids)).execute()
    return len(ids) - n_eval, n_eval


def undo(dataset_id: int, *, actor: Actor) -> str | None:
    """Revert the last change; returns its action name, or None when there is nothing to undo."""
    writable(actor, dataset_id)
    last = DatasetEdit.select().where(DatasetEdit.dataset == dataset_id).order_by(DatasetEdit.id.desc()).first()
    if last is None:
        return None
    before = json.loads(last.before)
    with database.atomic():
        gone = [b["id"] for b in before if not b["present"]]
        if gone:
            DatasetRow.delete().where(DatasetRow.id.in_(gone)).execute()
        back = [b for b in before if b["present"]]
        if back:
            DatasetRow.delete().where(DatasetRow.id.in_([b["id"] for b in back])).execute()
            payload = [{"id": b["id"], "dataset": dataset_id, "messages": b["messages"], "category": b["category"],
                        "split": b["split"], "tokens": b["tokens"], "search": _search_text(json.loads(b["messages"]))}
                       for b in back]
            for i in range(0, len(payload), 500):
                DatasetRow.insert_many(payload[i:i + 500]).execute()
        last.delete_instance()
        store.touch(dataset_id)
    return last.action
