"""/api/v1/conversations: one's own conversations — listed a page at a time, searched, read with their messages'
numbers, renamed, deleted, rated, exported. Another person's conversation is 404 exactly like a missing one.

Conversations are made the way a client makes them: a turn through the OpenAI-compatible gateway (/v1)."""

from __future__ import annotations

import pytest

from tests.api.rest_helpers import chat, word

pytestmark = pytest.mark.api

SUMMARY_FIELDS = {"id", "title", "model", "source", "created_at", "updated_at"}
MESSAGE_FIELDS = {"index", "id", "role", "content", "model", "finish_reason", "ttft_ms", "tok_per_s", "prompt_tokens",
                  "completion_tokens", "feedback", "created_at"}


@pytest.fixture(scope="module")
def chats(api_studio) -> dict:
    """Two conversations of ana's (the first continued once) and one of boss's, each with its own word."""
    words = [word() for _ in range(3)]
    first = chat(api_studio, api_studio.member_key, f"Say {words[0]}")
    assert chat(api_studio, api_studio.member_key, "And again?", conversation_id=first) == first
    second = chat(api_studio, api_studio.member_key, f"Say {words[1]}")
    theirs = chat(api_studio, api_studio.admin_key, f"Say {words[2]}")
    return {"first": first, "second": second, "theirs": theirs, "words": words}


def test_a_missing_conversation_and_a_bad_cursor_are_clear_errors(api_studio) -> None:
    with api_studio.client() as c:
        missing = c.get("/conversations/987654")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert c.get("/conversations", params={"cursor": "nope"}).status_code == 400
        assert c.get("/conversations", params={"limit": 500}).status_code == 422
        assert c.get("/conversations/0").status_code == 422
        listed = c.get("/conversations")
        assert listed.status_code == 200 and set(listed.json()) == {"items", "next_cursor"}


def test_a_conversation_has_its_messages_and_their_numbers(api_studio, chats) -> None:
    with api_studio.client() as c:
        r = c.get(f"/conversations/{chats['first']}")
    assert r.status_code == 200, r.text
    conv = r.json()
    assert SUMMARY_FIELDS | {"system_prompt", "messages", "last_turn_versions"} == set(conv)
    assert conv["last_turn_versions"] == {"index": 1, "total": 1}
    assert conv["source"] == "api" and chats["words"][0] in conv["title"]
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]  # continued through /v1
    assert [m["index"] for m in conv["messages"]] == [0, 1, 2, 3]
    answer = conv["messages"][1]
    assert set(answer) == MESSAGE_FIELDS
    assert answer["model"] == api_studio.model and answer["finish_reason"] in ("stop", "length")
    assert answer["completion_tokens"] >= 1 and answer["ttft_ms"] is not None and answer["feedback"] == 0


def test_ones_conversations_come_a_page_at_a_time_and_by_search(api_studio, chats) -> None:
    with api_studio.client() as c:
        first = c.get("/conversations", params={"limit": 1}).json()
        assert len(first["items"]) == 1 and first["next_cursor"] and set(first["items"][0]) == SUMMARY_FIELDS
        second = c.get("/conversations", params={"limit": 1, "cursor": first["next_cursor"]}).json()
        assert second["items"] and second["items"][0]["id"] != first["items"][0]["id"]
        every = [x["id"] for x in c.get("/conversations", params={"limit": 200}).json()["items"]]
        assert {chats["first"], chats["second"]} <= set(every) and chats["theirs"] not in every
        found = c.get("/conversations", params={"search": chats["words"][1]}).json()
        assert [x["id"] for x in found["items"]] == [chats["second"]] and found["next_cursor"] is None
        assert c.get("/conversations", params={"search": chats["words"][2]}).json()["items"] == []  # boss's word


def test_another_persons_conversation_is_not_found(api_studio, chats) -> None:
    theirs = chats["theirs"]
    with api_studio.client() as c:  # ana
        for r in (c.get(f"/conversations/{theirs}"), c.patch(f"/conversations/{theirs}", json={"title": "mine now"}),
                  c.delete(f"/conversations/{theirs}"), c.get(f"/conversations/{theirs}/export"),
                  c.put(f"/conversations/{theirs}/messages/1/feedback", json={"feedback": -1})):
            assert r.status_code == 404, r.text
            assert r.json()["error"] == {"code": "not_found", "message": f"There is no conversation {theirs} of yours."}
    with api_studio.client(api_studio.admin_key) as c:
        conv = c.get(f"/conversations/{theirs}").json()
        assert chats["words"][2] in conv["title"] and conv["messages"][1]["feedback"] == 0


def test_rename_feedback_and_export(api_studio, chats) -> None:
    cid = chats["second"]
    with api_studio.client() as c:
        renamed = c.patch(f"/conversations/{cid}", json={"title": "  Greeting   test "})
        assert renamed.status_code == 200 and renamed.json()["title"] == "Greeting test"
        assert c.patch(f"/conversations/{cid}", json={"title": ""}).status_code == 422
        rated = c.put(f"/conversations/{cid}/messages/1/feedback", json={"feedback": 1})
        assert rated.status_code == 200 and rated.json()["feedback"] == 1 and rated.json()["index"] == 1
        assert c.get(f"/conversations/{cid}").json()["messages"][1]["feedback"] == 1
        assert c.put(f"/conversations/{cid}/messages/9/feedback", json={"feedback": 1}).status_code == 400
        assert c.put(f"/conversations/{cid}/messages/1/feedback", json={"feedback": 2}).status_code == 422
        exported = c.get(f"/conversations/{cid}/export").json()
        assert exported["title"] == "Greeting test" and exported["messages"][1]["feedback"] == 1
        assert {"role", "content", "model", "params", "ttft_ms", "completion_tokens", "finish_reason"} <= set(exported["messages"][1])
        md = c.get(f"/conversations/{cid}/export", params={"format": "markdown"})
        assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
        assert md.text.startswith("# Greeting test") and "### User" in md.text


def test_delete_removes_it(api_studio) -> None:
    cid = chat(api_studio, api_studio.member_key, f"Forget {word()}")
    with api_studio.client() as c:
        assert c.delete(f"/conversations/{cid}").status_code == 204
        assert c.get(f"/conversations/{cid}").status_code == 404
        assert c.delete(f"/conversations/{cid}").status_code == 404
        assert cid not in [x["id"] for x in c.get("/conversations", params={"limit": 200}).json()["items"]]


def test_the_kept_versions_of_the_last_turn_are_listed_and_shown(api_studio) -> None:
    """A second answer to the last question (stored as the Chat tab's Regenerate stores one): version 1 comes back
    on request, nothing is deleted, and only the owner may switch."""
    from engines import accounts, conversations
    from storage import chats as store
    from storage import connect

    cid = chat(api_studio, api_studio.member_key, f"Say {word()}")
    db = connect(f"sqlite:///{api_studio.data_dir / 'studio.db'}")
    try:
        ana = accounts.actor_for("ana")
        first = conversations.active_messages(ana, cid)[-1].content
        conversations.retire_last_answer(cid)
        store.add_message(cid, "assistant", "A regenerated answer.", model=api_studio.model, finish_reason="stop")
    finally:
        db.close()
    with api_studio.client() as c:
        now = c.get(f"/conversations/{cid}").json()
        assert now["last_turn_versions"] == {"index": 2, "total": 2} and now["messages"][-1]["content"] == "A regenerated answer."
        back = c.put(f"/conversations/{cid}/last-turn/1")
        assert back.status_code == 200, back.text
        assert back.json()["last_turn_versions"] == {"index": 1, "total": 2} and back.json()["messages"][-1]["content"] == first
        assert len(back.json()["messages"]) == 2  # shown instead, not added
        missing = c.put(f"/conversations/{cid}/last-turn/3")
        assert missing.status_code == 400 and "no version 3" in missing.json()["error"]["message"]
    with api_studio.client(api_studio.admin_key) as boss:  # another person's conversation: not found, even for an admin
        assert boss.put(f"/conversations/{cid}/last-turn/2").status_code == 404
