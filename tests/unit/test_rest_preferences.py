"""The preference and agreement routes in process (the REST app over a real SQLite file, no model server): a preview
that saves nothing, a saved preference dataset with its lineage, TRL files in and out, the judge–human agreement
per judge, and request errors that name their fields. tests/api/test_rest_preferences.py drives a launched studio."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from engines import accounts
from engines.settings import load_settings
from storage import battles
from storage import datasets as store
from tests.unit.test_preferences import answer, ask, battle, regenerate, thumb


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data", model_cache_dir=tmp_path / "models", offline_mode=True)


@pytest.fixture
def team(db):
    admin = accounts.bootstrap(None)
    alice = accounts.add_user("alice", "alice-password", role="member")
    bob = accounts.add_user("bob", "bob-password", role="member")
    return admin, alice, bob


@pytest.fixture
def client(team, settings):
    """Alice's client on the REST app, mounted the way the studio mounts it; `client.as_bob` is Bob's."""
    import api
    from engines.services import Services
    from engines.serving import ServerManager

    _, alice, bob = team
    root = FastAPI(middleware=[api.api_middleware(Services(settings=settings, servers=ServerManager(settings)))])
    keys = {who.name: accounts.create_api_key(who)[1] for who in (alice, bob)}
    with TestClient(root, base_url="http://testserver/api/v1", headers={"Authorization": f"Bearer {keys['alice']}"},
                    raise_server_exceptions=False) as c:
        c.bob = {"Authorization": f"Bearer {keys['bob']}"}
        yield c


@pytest.fixture
def judged(team):
    """Alice's two battles voted A/B, a tie, a 👎 answer regenerated into a 👍 one; Bob's battle."""
    _, alice, bob = team
    ids = {"italy": battle(alice, "Capital of Italy?", "Rome.", "Milan.", "a", category="geo"),
           "sum": battle(alice, "2+2?", "5", "4", "b", models=("m1", "m2")),
           "tie": battle(alice, "Tie?", "x", "y", "tie")}
    battle(bob, "Bob's prompt", "bob a", "bob b", "a")
    cid = ask(alice, None, "Name a colour")
    bad = answer(cid, "purple-ish", model="m1")
    thumb(alice, cid, bad, -1)
    good = regenerate(alice, cid, "Blue.", model="m2")
    thumb(alice, cid, good, 1)
    ids["chat"] = cid
    return ids


def test_a_preview_counts_and_lists_pairs_without_saving(client, judged) -> None:
    r = client.post("/preferences/preview", json={})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rows"] == 3 and body["counts"] == {"battle": 2, "thumbs": 1, "regenerated": 0, "judge": 0}
    assert body["skipped"]["tie_or_both_bad"] == 1 and body["train"] == 3 and body["eval"] == 0
    italy = next(p for p in body["pairs"] if p["prompt"][-1]["content"] == "Capital of Italy?")
    assert (italy["chosen"], italy["rejected"], italy["source"]["kind"]) == ("Rome.", "Milan.", "battle")
    assert "bob a" not in r.text  # Bob's battle is his

    only = client.post("/preferences/preview", json={"sources": ["battle"], "models": ["m2"], "limit": 1}).json()
    assert only["rows"] == 1 and only["pairs"][0]["chosen"] == "4" and only["skipped"]["other_models"] == 2
    assert "tie_or_both_bad" not in only["skipped"]  # the tie was between other models
    assert client.post("/preferences/preview", json={"category": "geo"}).json()["rows"] == 1
    future = client.post("/preferences/preview", json={"since": "2999-01-01T00:00:00Z"}).json()
    assert future["rows"] == 0
    split = client.post("/preferences/preview", json={"eval_fraction": 0.5, "seed": 3}).json()
    assert split["eval"] >= 1 and split["train"] >= 1
    assert client.get("/datasets").json()["items"] == []  # nothing was saved

    bad = client.post("/preferences/preview", json={"sources": ["votes"], "eval_fraction": 0.9})
    assert bad.status_code == 422
    err = bad.json()["error"]
    assert err["code"] == "invalid_request" and set(err["fields"]) == {"sources", "eval_fraction"}


def test_saving_makes_a_preference_dataset_with_lineage_and_trl_files_come_and_go(client, judged) -> None:
    r = client.post("/preferences/datasets", json={"name": "alice-prefs", "note": "first"})
    assert r.status_code == 201, r.text
    saved = r.json()
    ds, version = saved["dataset"], saved["version"]
    assert ds["kind"] == "preference" and ds["owner"] == "alice" and version["version"] == 1 and version["rows"] == 3
    stored = store.get_version(version["id"])
    assert json.loads(stored.source_conversations) == [judged["chat"]] and stored.format == "preference"  # lineage: the chat the 👍/👎 pair came from
    assert client.post("/preferences/datasets", json={"name": "alice-prefs"}).status_code == 409
    nothing = client.post("/preferences/datasets", json={"name": "empty", "since": "2999-01-01T00:00:00"})
    assert nothing.status_code == 400 and "no preference pairs" in nothing.json()["error"]["message"]

    rows = client.get(f"/preferences/datasets/{ds['id']}/versions/{version['id']}/rows", params={"limit": 2}).json()
    assert len(rows["items"]) == 2 and rows["next_cursor"]
    assert client.get(f"/datasets/{ds['id']}/versions/{version['id']}/rows").status_code == 400  # not chat rows

    for layout in ("conversational", "strings"):
        r = client.post(f"/preferences/datasets/{ds['id']}/versions/{version['id']}/export", json={"layout": layout})
        assert r.status_code == 200, r.text
        assert r.json()["url"].startswith("http://testserver/api/v1/preferences/")  # the link keeps the API's prefix
        got = client.get(r.json()["url"].replace("http://testserver/api/v1", ""))
        assert got.status_code == 200, got.text
        lines = [json.loads(x) for x in got.text.splitlines()]
        assert len(lines) == 3 and {"prompt", "chosen", "rejected"} <= set(lines[0])
        assert isinstance(lines[0]["chosen"], list if layout == "conversational" else str)
        exported = got.content

    files = {"file": ("prefs.jsonl", exported)}
    inspected = client.post("/preferences/inspect", files=files).json()
    assert inspected == {"layout": "preference", "rows": 3, "problems": [], "error": None}
    imported = client.post("/preferences/import", files=files, data={"name": "alice-prefs-copy"}, headers=client.bob)
    assert imported.status_code == 201, imported.text
    assert imported.json()["dataset"]["owner"] == "bob" and imported.json()["rows"] == 3

    broken = exported + b'{"prompt": "only a prompt"}\n'
    refused = client.post("/preferences/import", files={"file": ("broken.jsonl", broken)}, data={"name": "broken"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "import_refused"
    assert refused.json()["error"]["problems"][0]["row"] == 4
    partial = client.post("/preferences/import", files={"file": ("broken.jsonl", broken)},
                          data={"name": "broken", "valid_only": "true"})
    assert partial.status_code == 201 and partial.json()["rows"] == 3 and len(partial.json()["problems"]) == 1
    chat_file = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    assert "No preference layout" in client.post("/preferences/inspect", files={"file": ("chat.jsonl", chat_file)}).json()["error"]


def test_agreement_per_judge_and_judging_needs_a_served_judge(client, judged, team) -> None:
    battles.save_judgement(judged["italy"], "judge-1", "a")  # agrees
    battles.save_judgement(judged["sum"], "judge-1", "a")  # disagrees (Alice voted b)
    battles.save_judgement(judged["tie"], "judge-1", "error")
    battles.save_judgement(judged["italy"], "judge-2", "tie")
    r = client.get("/arena/agreement")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["voted"] == 3 and [j["judge"] for j in body["judges"]] == ["judge-1", "judge-2"]
    one = body["judges"][0]
    assert (one["n"], one["agreement"], one["errors"], one["unjudged"]) == (2, 0.5, 1, 1)
    assert one["confusion"] == {"a|a": 1, "b|a": 1}
    assert [(d["battle_id"], d["human"], d["judge"]) for d in one["disagreements"]] == [(judged["sum"], "b", "a")]
    assert client.get("/arena/agreement", params={"judge": "judge-2"}).json()["judges"][0]["n"] == 1
    assert client.get("/arena/agreement", params={"category": "geo"}).json()["voted"] == 1
    assert client.get("/arena/agreement", headers=client.bob).json() == {"voted": 1, "judges": []}  # his own battles only

    r = client.post("/arena/judgements", json={"judge": "not-served"})
    assert r.status_code == 400 and "No running server" in r.json()["error"]["message"]
    r = client.post("/arena/judgements", json={"judge": "x", "limit": 500})
    assert r.status_code == 422 and "limit" in r.json()["error"]["fields"]
