"""Cursor pagination for every REST list route: `?limit=&cursor=` in, `{"items": [...], "next_cursor": str|null}` out.

A cursor is opaque to clients: URL-safe base64 of a JSON list, the sort key of the last item shown (keyset: stable
while rows are added) or an offset (short lists sorted by something else). A cursor this API did not hand out is a
400, never a 500."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import AfterValidator, BaseModel, Field

T = TypeVar("T")

MAX_ID = 2**63 - 1  # the largest integer the database stores: a bigger id can name nothing (and would not fit a query)
DEFAULT_LIMIT = 50
MAX_LIMIT = 200  # pages of chats, battles and history items (each carries text)
MAX_WIDE_LIMIT = 500  # pages of small records: datasets, rows, versions, runs, evaluations, results

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
WideLimit = Annotated[int, Query(ge=1, le=MAX_WIDE_LIMIT, description="Items per page.")]
CursorParam = Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page; omit for "
                                                                      "the first page.")]


class InvalidCursor(ValueError):
    """400: a cursor this API did not hand out."""

    def __init__(self) -> None:
        super().__init__("The cursor is not one this API handed out: use `next_cursor` of the previous page unchanged.")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")


def encode_cursor(*parts: Any) -> str:
    raw = json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _fits(part: Any, kind: type) -> bool:
    if kind is int:  # an id or offset: a whole number the database can hold (bool is an int to Python, not here)
        return isinstance(part, int) and not isinstance(part, bool) and 0 <= part <= MAX_ID
    return isinstance(part, kind)


def decode_cursor(cursor: str | None, *types: type) -> tuple | None:
    """The parts of a cursor, checked against `types` (e.g. str, int); None without a cursor; InvalidCursor otherwise."""
    if not cursor:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor() from None
    if not isinstance(parts, list) or len(parts) != len(types) or not all(map(_fits, parts, types)):
        raise InvalidCursor()
    return tuple(parts)


def decode_position(cursor: str | None) -> int | None:
    """A one-number cursor (the last id shown, or an offset); None for the first page."""
    parts = decode_cursor(cursor, int)
    return parts[0] if parts else None


def offset_page(items: Sequence[T], limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    """A slice of an in-memory list: the cursor is an offset (past the end, e.g. after deletes: an empty last page)."""
    start = decode_position(cursor) or 0
    chunk = list(items[start:start + limit])
    end = start + len(chunk)
    return chunk, (encode_cursor(end) if end < len(items) else None)


def keyset_page(rows: Sequence[T], limit: int, key: Callable[[T], int] = lambda r: r.id) -> tuple[list[T], str | None]:
    """`rows` fetched as limit + 1 items after the cursor's key: the extra one says whether a next page exists, and the
    last kept row's key (default `row.id`) becomes the next cursor."""
    kept = list(rows[:limit])
    if len(rows) <= limit or not kept:
        return kept, None
    return kept, encode_cursor(key(kept[-1]))


def _utc(value: dt.datetime) -> dt.datetime:
    """The database keeps naive UTC times; an API says which zone (RFC 3339 needs it)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


Timestamp = Annotated[dt.datetime, AfterValidator(_utc)]  # a UTC time with its zone, e.g. 2026-12-02T22:46:57Z
