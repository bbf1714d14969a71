"""One timeline over chats, training runs, dataset versions, battles and evaluations; full-text search.

Each kind is read newest-first through its own time index with a LIMIT, then merged: a page costs the same
with 50k conversations as with 50. Text search uses SQLite FTS5 over messages and chat titles (prefix terms, so Korean words
match with their particles: 수도 finds 수도는) and ILIKE on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from peewee import PostgresqlDatabase, fn

from storage.db import database
from storage.models import Battle, Conversation, Dataset, DatasetVersion, EvalRun, Message, TrainingRun

KINDS = ("chat", "run", "dataset", "battle", "eval")


@dataclass
class Item:
    kind: str
    id: int
    title: str
    detail: str
    at: dt.datetime
    snippet: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass
class Filters:
    kinds: tuple[str, ...] = KINDS
    model: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    viewer: int | None = None  # users.id: chats and battles are private, so only the viewer's own are listed


Cursor = tuple[dt.datetime, str, int]  # (time, kind, id) of the last item shown


def _window(q, column, f: Filters, kind: str, before: Cursor | None, id_column):
    if f.since:
        q = q.where(column >= f.since)
    if f.until:
        q = q.where(column < f.until)
    if before:
        at, bkind, bid = before
        q = q.where((column < at) | ((column == at) & (id_column < bid))) if bkind == kind else q.where(column < at)
    return q.order_by(column.desc(), id_column.desc())


def _chats(f: Filters, before: Cursor | None, limit: int, ids: list[int] | None = None) -> list[Item]:
    q = Conversation.select()
    if f.viewer is not None:
        q = q.where(Conversation.owner_id == f.viewer)
    if f.model:
        q = q.where(Conversation.model == f.model)
    if ids is not None:
        q = q.where(Conversation.id.in_(ids))
    q = _window(q, Conversation.updated_at, f, "chat", before, Conversation.id).limit(limit)
    return [Item("chat", c.id, c.title, c.model or "", c.updated_at) for c in q]


def _runs(f: Filters, before: Cursor | None, limit: int, text: str | None = None) -> list[Item]:
    q = TrainingRun.select()
    if f.model:
        q = q.where((TrainingRun.base_model == f.model) | (TrainingRun.name == f.model))
    if text:
        q = q.where(_any_like(text, TrainingRun.name, TrainingRun.base_model, TrainingRun.dataset))
    q = _window(q, TrainingRun.created_at, f, "run", before, TrainingRun.id).limit(limit)
    return [Item("run", r.id, r.name, f"{r.status} · {r.base_model}", r.created_at) for r in q]


def _versions(f: Filters, before: Cursor | None, limit: int, text: str | None = None) -> list[Item]:
    if f.model:
        return []  # a dataset version belongs to no model
    q = DatasetVersion.select(DatasetVersion, Dataset).join(Dataset)
    if text:
        q = q.where(_any_like(text, Dataset.name, DatasetVersion.note))
    q = _window(q, DatasetVersion.created_at, f, "dataset", before, DatasetVersion.id).limit(limit)
    return [Item("dataset", v.id, f"{v.dataset.name} v{v.version}", f"{v.row_count} rows", v.created_at) for v in q]


def _battles(f: Filters, before: Cursor | None, limit: int, text: str | None = None) -> list[Item]:
    q = Battle.select()
    if f.viewer is not None:
        q = q.where(Battle.owner_id == f.viewer)
    if f.model:
        q = q.where((Battle.model_a == f.model) | (Battle.model_b == f.model))
    if text:
        q = q.where(_any_like(text, Battle.prompt, Battle.answer_a, Battle.answer_b))
    q = _window(q, Battle.created_at, f, "battle", before, Battle.id).limit(limit)
    return [Item("battle", b.id, _clip(b.prompt, 90), f"{b.model_a} vs {b.model_b} · {b.vote or 'no vote'}", b.created_at)
            for b in q]


def _evals(f: Filters, before: Cursor | None, limit: int, text: str | None = None) -> list[Item]:
    q = EvalRun.select(EvalRun.id, EvalRun.name, EvalRun.status, EvalRun.models, EvalRun.created_at)
    if f.model:
        q = q.where((EvalRun.models.contains(json.dumps(f.model))) | (EvalRun.judge == f.model))
    if text:
        q = q.where(_any_like(text, EvalRun.name, EvalRun.models, EvalRun.source))
    q = _window(q, EvalRun.created_at, f, "eval", before, EvalRun.id).limit(limit)
    return [Item("eval", e.id, e.name, f"{e.status} · {', '.join(json.loads(e.models))}", e.created_at) for e in q]


def _any_like(text: str, *columns):
    cond = None
    for term in text.split():
        like = f"%{term.lower()}%"
        part = None
        for col in columns:
            c = fn.LOWER(col) ** like
            part = c if part is None else part | c
        cond = part if cond is None else cond & part
    return cond


READERS: dict[str, Callable[..., list[Item]]] = {"run": _runs, "dataset": _versions, "battle": _battles, "eval": _evals}


def _merge(items: list[Item], limit: int) -> list[Item]:
    items.sort(key=lambda i: (i.at, i.kind, i.id), reverse=True)
    return items[:limit]


def timeline(filters: Filters | None = None, *, before: Cursor | None = None, limit: int = 50) -> list[Item]:
    """The newest `limit` items (older than `before`), across the chosen kinds."""
    f = filters or Filters()
    items: list[Item] = []
    if "chat" in f.kinds:
        items += _chats(f, before, limit)
    for kind, read in READERS.items():
        if kind in f.kinds:
            items += read(f, before, limit)
    return _merge(items, limit)


def fts_query(text: str) -> str:
    """User words → an FTS5 query: every word must appear, each as a prefix; FTS syntax in the input is inert."""
    words = [w for w in re.findall(r"\w+", text, flags=re.UNICODE)]
    return " ".join(f'"{w}"*' for w in words)


def search(text: str, filters: Filters | None = None, *, limit: int = 50) -> list[Item]:
    """Items whose text matches every word: chat messages and titles, run, dataset, battle and evaluation fields."""
    f = filters or Filters()
    text = (text or "").strip()
    if not text:
        return timeline(f, limit=limit)
    items: list[Item] = []
    if "chat" in f.kinds:
        items += _chat_hits(text, f, limit)
    for kind, read in READERS.items():
        if kind in f.kinds:
            items += read(f, None, limit, text)
    return _merge(items, limit)


def _chat_hits(text: str, f: Filters, limit: int) -> list[Item]:
    snippets: dict[int, str] = {}
    if isinstance(database.obj, PostgresqlDatabase):
        q = Message.select(Message.id, Message.conversation, Message.content)
        for term in text.split():
            q = q.where(Message.content.ilike(f"%{term}%"))
        for m in q.order_by(Message.id.desc()).limit(limit * 4):
            snippets.setdefault(m.conversation_id, _around(m.content, text.split()[0]))
    else:
        query = fts_query(text)
        if query:
            cur = database.execute_sql(
                "SELECT m.conversation_id, snippet(messages_fts, 0, '«', '»', '…', 12) FROM messages_fts "
                "JOIN messages m ON m.id = messages_fts.rowid WHERE messages_fts MATCH ? "
                "ORDER BY messages_fts.rowid DESC LIMIT ?", (query, limit * 4))
            for conv_id, snip in cur.fetchall():
                snippets.setdefault(conv_id, snip)
    if isinstance(database.obj, PostgresqlDatabase):
        titled = [c.id for c in Conversation.select(Conversation.id).where(_any_like(text, Conversation.title))
                  .order_by(Conversation.updated_at.desc()).limit(limit)]
    else:
        query = fts_query(text)
        titled = [r[0] for r in database.execute_sql(
            "SELECT rowid FROM conversations_fts WHERE conversations_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
            (query, limit)).fetchall()] if query else []
    ids = list(snippets) + [c for c in titled if c not in snippets]
    if not ids:
        return []
    found = _chats(f, None, limit, ids)
    for item in found:
        item.snippet = snippets.get(item.id, "")
    return found


def _around(content: str, word: str, width: int = 60) -> str:
    i = content.lower().find(word.lower())
    if i < 0:
        return _clip(content, 2 * width)
    start = max(0, i - width)
    return ("…" if start else "") + content[start:i] + "«" + content[i:i + len(word)] + "»" + content[i + len(word):i + width] + "…"


def _clip(text: str | None, n: int) -> str:
    s = " ".join((text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def models_seen(limit: int = 200) -> list[str]:
    """Model names that appear in chats, runs, battles and evaluations (for the model filter)."""
    names: set[str] = set()
    names |= {c.model for c in Conversation.select(Conversation.model).distinct().limit(limit) if c.model}
    names |= {r.base_model for r in TrainingRun.select(TrainingRun.base_model).distinct()}
    names |= {r.name for r in TrainingRun.select(TrainingRun.name).where(TrainingRun.status == "completed")}
    for b in Battle.select(Battle.model_a, Battle.model_b).distinct().limit(limit):
        names |= {b.model_a, b.model_b}
    for e in EvalRun.select(EvalRun.models).limit(limit):
        names |= set(json.loads(e.models))
    return sorted(names)
