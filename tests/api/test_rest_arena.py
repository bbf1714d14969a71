"""/api/v1/arena: battles answered by the real CPU vLLM server, private to their owner; votes; the team's leaderboard."""

from __future__ import annotations

import pytest

from tests.api.rest_helpers import battle, word

pytestmark = pytest.mark.api

BATTLE_FIELDS = {"id", "prompt", "blind", "model_a", "model_b", "answer_a", "answer_b", "vote", "category", "created_at",
                 "voted_at"}


def test_a_battle_stores_both_answers_and_the_vote(api_studio) -> None:
    got = battle(api_studio, api_studio.member_key, "Say hello in one word.", category="greetings")
    assert BATTLE_FIELDS | {"stats_a", "stats_b"} <= set(got)
    assert isinstance(got["id"], int) and got["blind"] is False and got["vote"] is None
    assert got["model_a"] == got["model_b"] == api_studio.model
    assert got["answer_a"] and got["answer_b"], got  # both models answered (a few tokens each)
    for side in ("stats_a", "stats_b"):
        assert got[side]["error"] is None and got[side]["completion_tokens"] >= 1 and got[side]["finish_reason"] == "length"
    with api_studio.client() as c:
        stored = c.get(f"/arena/battles/{got['id']}").json()
        assert stored["answer_a"] == got["answer_a"] and stored["category"] == "greetings"
        voted = c.post(f"/arena/battles/{got['id']}/vote", json={"choice": "a"})
        assert voted.status_code == 200, voted.text
        assert voted.json()["vote"] == "a" and voted.json()["voted_at"]
        assert c.post(f"/arena/battles/{got['id']}/vote", json={"choice": "maybe"}).status_code == 422
        board = c.get("/arena/leaderboard", params={"category": "greetings"}).json()
    assert board["votes"] >= 1
    top = {r["model"]: r for r in board["ratings"]}[api_studio.model]
    assert {"rank", "score", "low", "high", "elo", "battles", "win_rate"} <= set(top) and top["battles"] >= 1


def test_another_persons_battle_is_not_found(api_studio) -> None:
    theirs = battle(api_studio, api_studio.admin_key, f"Boss asks {word()}")
    with api_studio.client() as c:  # ana
        for r in (c.get(f"/arena/battles/{theirs['id']}"), c.post(f"/arena/battles/{theirs['id']}/vote", json={"choice": "b"}),
                  c.get("/arena/battles/987654")):
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "not_found"
        assert theirs["id"] not in [b["id"] for b in c.get("/arena/battles", params={"limit": 200}).json()["items"]]
    with api_studio.client(api_studio.admin_key) as c:
        assert c.get(f"/arena/battles/{theirs['id']}").json()["vote"] is None  # ana's vote did not land


def test_own_battles_come_a_page_at_a_time(api_studio) -> None:
    for _ in range(2):
        battle(api_studio, api_studio.member_key, f"Count to two {word()}")
    with api_studio.client() as c:
        first = c.get("/arena/battles", params={"limit": 1}).json()
        assert len(first["items"]) == 1 and first["next_cursor"]
        second = c.get("/arena/battles", params={"limit": 1, "cursor": first["next_cursor"]}).json()
        assert len(second["items"]) == 1 and second["items"][0]["id"] < first["items"][0]["id"]
        assert set(second["items"][0]) == BATTLE_FIELDS
        assert c.get("/arena/battles", params={"cursor": "not-a-cursor"}).status_code == 400
        assert c.get("/arena/battles", params={"limit": 0}).status_code == 422


def test_a_battle_names_both_models_or_neither_and_only_served_ones(api_studio) -> None:
    with api_studio.client() as c:
        one = c.post("/arena/battles", json={"prompt": "hi", "model_a": api_studio.model})
        assert one.status_code == 422 and "both models" in one.json()["error"]["message"]
        unknown = c.post("/arena/battles", json={"prompt": "hi", "model_a": api_studio.model, "model_b": "no-such-model"})
        assert unknown.status_code == 400 and "no-such-model" in unknown.json()["error"]["message"]
        served = [m["name"] for m in c.get("/models").json()]
        blind = c.post("/arena/battles", json={"prompt": "Name a colour.", "max_tokens": 4})
        if len(set(served)) < 2:  # one model served: no blind draw
            assert blind.status_code == 400 and "two served models" in blind.json()["error"]["message"]
        else:  # the models stay hidden until the vote
            assert blind.status_code == 201 and blind.json()["model_a"] is None and blind.json()["blind"] is True
            revealed = c.post(f"/arena/battles/{blind.json()['id']}/vote", json={"choice": "tie"}).json()
            assert revealed["model_a"] in served and revealed["model_b"] in served
