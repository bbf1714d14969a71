"""Cursor pagination for list routes: `?limit=&cursor=` → `{"items": [...], "next_cursor": str | null}`.

A cursor is opaque to clients (URL-safe base64 of a small JSON object); a route decodes it back to what it pages by:
the last id seen (keyset: stable while rows are added) or an offset (for short lists sorted by something else)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class BadCursor(ValueError):
    """400: a cursor this route did not hand out."""

    def __init__(self) -> None:
        super().__init__("Invalid cursor: pass back the next_cursor of the previous page unchanged.")


def encode_cursor(value: int) -> str:
    raw = json.dumps({"k": int(value)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The position a cursor stands for, or None for the first page; BadCursor (400) for anything else."""
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        value = data["k"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise BadCursor() from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadCursor()
    return value


def limit_param(default: int = DEFAULT_LIMIT) -> int:
    """FastAPI parameter: how many items a page holds (1..MAX_LIMIT)."""
    return Query(default, ge=1, le=MAX_LIMIT, description="Items per page.")


def cursor_param() -> str | None:
    return Query(None, description="`next_cursor` of the previous page; omit for the first page.")


def offset_page(items: Sequence[T], limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    """A slice of an in-memory list: the cursor is an offset."""
    start = decode_cursor(cursor) or 0
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
