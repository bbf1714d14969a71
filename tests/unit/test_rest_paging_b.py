"""The REST API's cursor pages, and a version row that points outside the data folder refused over HTTP."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from api.rest.paging_b import BadCursor, decode_cursor, encode_cursor, keyset_page, offset_page


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert decode_cursor(encode_cursor(42)) == 42 and decode_cursor(None) is None and decode_cursor("") is None
    for bad in ("garbage", "eyJrIjotMX0", "eyJrIjoiYSJ9", "e30", "!!"):  # -1, "a", {}
        with pytest.raises(BadCursor):
            decode_cursor(bad)


def test_offset_and_keyset_pages_end_with_no_cursor() -> None:
    items = list(range(5))
    a, c1 = offset_page(items, 2, None)
    b, c2 = offset_page(items, 2, c1)
    c, c3 = offset_page(items, 2, c2)
    assert (a + b + c, c3) == (items, None)
    rows = [SimpleNamespace(id=i) for i in (9, 7, 5)]
    kept, nxt = keyset_page(rows, 2)
    assert [r.id for r in kept] == [9, 7] and decode_cursor(nxt) == 7
    assert keyset_page(rows, 3) == (rows, None)


def test_a_version_row_pointing_outside_is_refused_without_reading_it(db, owner, settings, tmp_path) -> None:
    from api.rest import build_rest_app
    from engines import accounts
    from engines.datasets.versions import create_empty
    from engines.serving import ServerManager
    from storage import datasets as store
    from studio.services import Services

    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"messages": [{"role": "user", "content": "TOP SECRET"}]}) + "\n")
    ds = create_empty("tampered", actor=owner)
    v = store.add_version(store.get_dataset(ds), path=str(secret), content_hash="x", row_count=1)
    _, key = accounts.create_api_key(owner)
    app = build_rest_app(Services(settings=settings, servers=ServerManager(settings)))
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
        for resp in (c.get(f"/datasets/{ds}/versions/{v.id}/rows"), c.get(f"/datasets/{ds}/versions/{v.id}/download"),
                     c.post(f"/datasets/{ds}/versions/{v.id}/export", json={"format": "openai"}),
                     c.get(f"/datasets/{ds}/diff", params={"old": v.id, "new": v.id})):
            assert resp.status_code == 403, resp.text
            assert "TOP SECRET" not in resp.text and str(tmp_path) not in resp.text
