"""/api/v1/history: the timeline and search as each person may see it, one item's description and delete, lineage,
run comparison, and admin-only archives that download through a URL (never a server path)."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.api.rest_helpers import battle, word

pytestmark = pytest.mark.api

ITEM_FIELDS = {"key", "kind", "id", "title", "detail", "at", "snippet"}


@pytest.fixture(scope="module")
def rows(api_studio) -> dict:
    """Two battles of ana's and one of boss's, each prompt with a shared and an own word."""
    shared = word()
    ana = [battle(api_studio, api_studio.member_key, f"Ana asks {shared} {word()}") for _ in range(2)]
    boss = battle(api_studio, api_studio.admin_key, f"Boss asks {shared} {word()}")
    return {"shared": shared, "ana": ana, "boss": boss}


def test_the_timeline_pages_and_shows_only_ones_own_battles(api_studio, rows) -> None:
    with api_studio.client() as c:
        first = c.get("/history", params={"limit": 1, "kinds": "battle"}).json()
        assert len(first["items"]) == 1 and first["next_cursor"]
        assert set(first["items"][0]) == ITEM_FIELDS and first["items"][0]["kind"] == "battle"
        second = c.get("/history", params={"limit": 1, "kinds": "battle", "cursor": first["next_cursor"]}).json()
        assert second["items"] and second["items"][0]["key"] != first["items"][0]["key"]
        every = c.get("/history", params={"limit": 200}).json()["items"]
        keys = {i["key"] for i in every}
        assert {f"battle:{b['id']}" for b in rows["ana"]} <= keys
        assert f"battle:{rows['boss']['id']}" not in keys
        assert c.get("/history", params={"kinds": "nonsense"}).status_code == 422
        assert c.get("/history", params={"cursor": "x"}).status_code == 400
    with api_studio.client(api_studio.admin_key) as c:
        boss_keys = {i["key"] for i in c.get("/history", params={"limit": 200}).json()["items"]}
        assert f"battle:{rows['boss']['id']}" in boss_keys and f"battle:{rows['ana'][0]['id']}" not in boss_keys


def test_search_finds_ones_own_matches_a_page_at_a_time(api_studio, rows) -> None:
    with api_studio.client() as c:
        first = c.get("/history", params={"q": rows["shared"], "limit": 1}).json()
        assert len(first["items"]) == 1 and first["next_cursor"]
        second = c.get("/history", params={"q": rows["shared"], "limit": 1, "cursor": first["next_cursor"]}).json()
        found = {first["items"][0]["key"], *(i["key"] for i in second["items"])}
        assert found == {f"battle:{b['id']}" for b in rows["ana"]}  # both of ana's, never boss's
        assert second["next_cursor"] is None
        own = rows["ana"][0]["prompt"].split()[-1]
        assert [i["key"] for i in c.get("/history", params={"q": own}).json()["items"]] == [f"battle:{rows['ana'][0]['id']}"]


def test_an_item_is_described_and_deleted_by_its_owner_only(api_studio, rows) -> None:
    mine, theirs = rows["ana"][1], rows["boss"]
    with api_studio.client() as c:
        described = c.get(f"/history/items/battle/{mine['id']}")
        assert described.status_code == 200, described.text
        body = described.json()
        assert body["key"] == f"battle:{mine['id']}" and mine["prompt"].split()[-1] in body["markdown"]
        assert body["in_progress"] is False
        for r in (c.get(f"/history/items/battle/{theirs['id']}"), c.delete(f"/history/items/battle/{theirs['id']}"),
                  c.get("/history/items/chat/987654")):
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        assert c.get("/history/items/secret/1").status_code == 422
        deleted = c.delete(f"/history/items/battle/{mine['id']}")
        assert deleted.status_code == 200 and deleted.json() == {"key": f"battle:{mine['id']}", "deleted": f"battle #{mine['id']}"}
        assert c.get(f"/history/items/battle/{mine['id']}").status_code == 404
        assert c.get(f"/arena/battles/{mine['id']}").status_code == 404
    with api_studio.client(api_studio.admin_key) as c:  # ana's attempt left boss's battle alone
        assert c.get(f"/history/items/battle/{theirs['id']}").status_code == 200


def test_lineage_and_run_comparison_describe_without_server_paths(api_studio, rows) -> None:
    with api_studio.client() as c:
        r = c.get("/history/lineage", params={"model": api_studio.model})
        assert r.status_code == 200, r.text
        lin = r.json()
        assert lin["model"] == api_studio.model and lin["battles"] >= 2 and lin["run"] is None
        assert {"kind", "parent", "dataset_file", "dataset_version", "source_chats", "adapters", "evaluations",
                "battles_won", "curves", "curves_source"} <= set(lin)
        unknown = c.get("/history/lineage", params={"model": "nobody-trained-this"}).json()
        assert unknown["kind"] == "unknown" and unknown["battles"] == 0 and unknown["curves"] == []
        assert c.get("/history/lineage").status_code == 422
        runs = c.get("/history/runs/compare", params={"ids": [987654]})
        assert runs.status_code == 200 and runs.json() == {"curves": [], "parameters": []}
        assert c.get("/history/runs/compare").status_code == 422
        assert str(api_studio.data_dir) not in r.text


def test_archives_are_admin_only_and_download_through_a_url(api_studio, rows) -> None:
    with api_studio.client() as c:  # a member
        refused = c.post("/history/archives")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert c.get("/history/archives/chat-studio-archive-20260101-000000.zip").status_code == 403
    with api_studio.client(api_studio.admin_key) as c:
        made = c.post("/history/archives")
        assert made.status_code == 201, made.text
        archive = made.json()
        assert archive["url"] == f"/api/v1/history/archives/{archive['name']}" and archive["size_bytes"] > 0
        assert str(api_studio.data_dir) not in made.text
        got = c.get(archive["url"].removeprefix("/api/v1"))
        assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
        assert len(got.content) == archive["size_bytes"]
        with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
            assert "manifest.json" in zf.namelist() and "tables/battles.jsonl" in zf.namelist()
        for name in ("studio.db", "chat-studio-archive-20000101-000000.zip", "..%2Fstudio.db"):
            assert c.get(f"/history/archives/{name}").status_code == 404
    with api_studio.client() as c:  # a member cannot fetch the admin's archive either
        assert c.get(archive["url"].removeprefix("/api/v1")).status_code == 403
