"""Cursor pagination shared by the REST routes: `?limit=&cursor=` in, `{"items": [...], "next_cursor": str|null}` out.

A cursor is opaque to clients: URL-safe base64 of a JSON list (the sort key of the last item shown). A cursor that does
not decode is a 400, never a 500."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import AfterValidator, BaseModel, Field

T = TypeVar("T")

MAX_ID = 2**63 - 1  # the largest integer the database stores: a bigger id can name nothing (and would not fit a query)
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
CursorParam = Annotated[str | None, Query(max_length=500, description="`next_cursor` of the previous page.")]


class InvalidCursor(ValueError):
    """400: a cursor this API did not hand out."""


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")


def encode_cursor(*parts: Any) -> str:
    raw = json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *types: type) -> tuple | None:
    """The parts of a cursor, checked against `types` (e.g. str, int); None without a cursor."""
    if not cursor:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("The cursor is not one this API handed out: use `next_cursor` of the previous page.") from None
    if not isinstance(parts, list) or len(parts) != len(types) or not all(
            isinstance(p, t) and not (t is int and (isinstance(p, bool) or not 0 <= p <= MAX_ID))
            for p, t in zip(parts, types, strict=True)):
        raise InvalidCursor("The cursor is not one this API handed out: use `next_cursor` of the previous page.")
    return tuple(parts)


def _utc(value: dt.datetime) -> dt.datetime:
    """The database keeps naive UTC times; an API says which zone (RFC 3339 needs it)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


Timestamp = Annotated[dt.datetime, AfterValidator(_utc)]  # a UTC time with its zone, e.g. 2026-12-02T22:46:57Z
