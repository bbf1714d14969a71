"""What fuzzing found, on the real studio: forged or out-of-range history cursors are a 400 (never a 500), and a
request path with control characters (%0A, %0D) is answered by the API in its own error shape, not by the UI."""

from __future__ import annotations

import httpx
import pytest

from api.rest.pages import MAX_ID, encode_cursor
from engines.history.timeline import MAX_SEARCH

pytestmark = pytest.mark.api


def test_negative_or_out_of_range_history_cursors_are_400(api_studio) -> None:
    with api_studio.client() as c:
        assert c.get("/history", params={"q": "anything"}).status_code == 200
        for params in ({"q": "anything", "cursor": encode_cursor("search", -1)},
                       {"q": "anything", "cursor": encode_cursor("search", MAX_SEARCH)},
                       {"q": "anything", "cursor": encode_cursor("search", MAX_ID + 1)},
                       {"cursor": encode_cursor("2026-01-01T00:00:00", "chat", -1)},
                       {"cursor": encode_cursor("2026-01-01T00:00:00", "no-such-kind", 1)}):
            r = c.get("/history", params=params)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor", (params, r.text)
        r = c.get("/history", params={"limit": -1})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text


def test_paths_with_control_characters_reach_the_apis(api_studio) -> None:
    base = api_studio.url.rstrip("/")
    rest = {"Authorization": f"Bearer {api_studio.member_key}"}
    for path in ("/api/v1/his%0Atory", "/api/v1/history/items/chat%0A/1", "/api/v1/%0D%0A", "/api/v1/me%0D"):
        r = httpx.get(base + path, headers=rest, timeout=60)
        assert r.status_code in (404, 422), (path, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/json") and "error" in r.json(), (path, r.text[:300])
    r = httpx.get(base + "/v1/mo%0Adels", headers=rest, timeout=60)
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error", r.text[:300]
    r = httpx.get(base + "/api/v1/his%0Atory", timeout=60)  # no key, no such route: the API's 404, not the UI's
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text[:300]
