"""The REST API's cursor pages (api.rest.pages): cursors round-trip, forged ones are refused, pages end with no cursor."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from api.rest.pages import InvalidCursor, decode_cursor, decode_position, encode_cursor, keyset_page, offset_page


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    assert decode_cursor(encode_cursor("2026-01-01T00:00:00", "chat", 3), str, str, int) == ("2026-01-01T00:00:00", "chat", 3)
    assert decode_cursor(None, int) is None and decode_cursor("", int) is None
    for bad in ("x", encode_cursor("a"), encode_cursor(1, 2), encode_cursor(True), encode_cursor(2**63), encode_cursor(-1),
                "%%%", "!!"):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad, int)


def test_a_position_cursor_round_trips_and_other_shapes_are_refused() -> None:
    assert decode_position(encode_cursor(42)) == 42 and decode_position(None) is None and decode_position("") is None
    old_style = base64.urlsafe_b64encode(json.dumps({"k": 7}).encode()).decode().rstrip("=")  # a dict, not a list
    for bad in ("garbage", encode_cursor(-1), encode_cursor("a"), encode_cursor(1.5), encode_cursor(), old_style, "e30"):
        with pytest.raises(InvalidCursor):
            decode_position(bad)


def test_offset_and_keyset_pages_end_with_no_cursor() -> None:
    items = list(range(5))
    a, c1 = offset_page(items, 2, None)
    b, c2 = offset_page(items, 2, c1)
    c, c3 = offset_page(items, 2, c2)
    assert (a + b + c, c3) == (items, None)
    assert offset_page(items, 2, encode_cursor(99)) == ([], None)  # past the end (rows deleted meanwhile): an empty page
    rows = [SimpleNamespace(id=i) for i in (9, 7, 5)]
    kept, nxt = keyset_page(rows, 2)
    assert [r.id for r in kept] == [9, 7] and decode_position(nxt) == 7
    assert keyset_page(rows, 3) == (rows, None)
