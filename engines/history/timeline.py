"""The History timeline as one person may see it: their own chats and battles, the team's runs, dataset versions
and evaluations; newest first, a page at a time, or the matches of a text search."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from engines.accounts import Actor
from storage import history
from storage.history import KINDS, Cursor, Filters, Item

MAX_SEARCH = 1000  # a search is paged by offset (its hits come ranked from several indexes), up to this many hits


@dataclass(frozen=True)
class HistoryPage:
    items: list[Item]
    next_before: Cursor | None = None  # the timeline's next page: items older than this
    next_offset: int | None = None  # a search's next page: hits after this many


def history_filters(actor: Actor, *, kinds: tuple[str, ...] = KINDS, model: str | None = None,
                    since: dt.datetime | None = None, until: dt.datetime | None = None) -> Filters:
    """Filters that always limit private kinds (chats, battles) to the actor's own rows."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"Unknown kind {unknown[0]!r}: the kinds are {', '.join(KINDS)}.")
    return Filters(kinds=tuple(kinds), model=model or None, since=since, until=until, viewer=actor.id)


def history_page(actor: Actor, *, text: str = "", kinds: tuple[str, ...] = KINDS, model: str | None = None,
                 since: dt.datetime | None = None, before: Cursor | None = None, offset: int = 0,
                 limit: int = 50) -> HistoryPage:
    """A page of the timeline (older than `before`), or of the matches of `text` (after `offset` hits)."""
    f = history_filters(actor, kinds=kinds, model=model, since=since)
    if (text or "").strip():
        offset = max(0, offset)
        if offset >= MAX_SEARCH:
            return HistoryPage([])
        got = history.search(text, f, limit=min(offset + limit + 1, MAX_SEARCH + 1))
        items = got[offset:offset + limit]
        more = len(got) > offset + limit and offset + limit < MAX_SEARCH
        return HistoryPage(items, next_offset=offset + limit if more else None)
    got = history.timeline(f, before=before, limit=limit + 1)
    items = got[:limit]
    last = items[-1] if items else None
    return HistoryPage(items, next_before=(last.at, last.kind, last.id) if len(got) > limit and last else None)
