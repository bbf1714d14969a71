"""Who may call /api/v1 and /v1: a live key of an enabled account; nobody without one on a studio with accounts."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.api


def test_a_key_names_its_owner_and_a_missing_or_bad_key_gets_401(api_studio) -> None:
    with api_studio.client() as c:
        me = c.get("/me")
        assert me.status_code == 200 and me.json()["name"] == "ana" and me.json()["role"] == "member"
    with api_studio.client(api_studio.admin_key) as c:
        assert c.get("/me").json() == {"id": c.get("/me").json()["id"], "name": "boss", "role": "admin"}
    for key in ("", "cs-not-a-key", "sk-foreign"):
        with api_studio.client(key) as c:
            r = c.get("/me")
            assert r.status_code == 401, r.text
            assert r.json()["error"]["code"] == "not_authenticated"
            assert "boss" not in r.text and "ana" not in r.text


def test_the_description_needs_a_session_or_a_key(api_studio) -> None:
    base = api_studio.url.rstrip("/")
    assert httpx.get(f"{base}/api/v1/openapi.json").status_code == 401  # logged out: the gate answers
    assert httpx.get(f"{base}/api/v1/docs").status_code == 401
    bad = httpx.get(f"{base}/api/v1/openapi.json", headers={"Authorization": "Bearer cs-wrong"})
    assert bad.status_code == 401
    spec = httpx.get(f"{base}/api/v1/openapi.json", headers={"Authorization": f"Bearer {api_studio.member_key}"})
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "Chat Studio REST API"
