import pytest

from storage import chats


def test_first_user_message_titles_the_conversation(db):
    conv = chats.create_conversation()
    chats.add_message(conv.id, "user", "  How do I fine-tune   an 8B model on Korean data? " + "x" * 80)
    title = chats.get_conversation(conv.id).title
    assert title.startswith("How do I fine-tune an 8B model") and len(title) == chats.TITLE_CHARS


def test_search_matches_titles_and_message_text(db):
    a = chats.create_conversation(title="Paris trip")
    b = chats.create_conversation(title="Other")
    chats.add_message(b.id, "assistant", "서울의 날씨는 맑음")
    assert [c.id for c in chats.list_conversations("paris")] == [a.id]
    assert [c.id for c in chats.list_conversations("날씨")] == [b.id]
    assert {c.id for c in chats.list_conversations("")} == {a.id, b.id}


def test_newest_conversation_first(db):
    a = chats.create_conversation(title="a")
    b = chats.create_conversation(title="b")
    chats.add_message(a.id, "user", "bump")
    assert [c.id for c in chats.list_conversations()][:2] == [a.id, b.id]


def test_rename_delete_and_cascade(db):
    conv = chats.create_conversation()
    chats.add_message(conv.id, "user", "hi")
    chats.rename_conversation(conv.id, "  Renamed  chat ")
    assert chats.get_conversation(conv.id).title == "Renamed chat"
    with pytest.raises(ValueError):
        chats.rename_conversation(conv.id, "   ")
    chats.delete_conversation(conv.id)
    assert chats.get_conversation(conv.id) is None
    assert chats.Message.select().count() == 0


def test_retired_messages_are_kept_but_hidden(db):
    conv = chats.create_conversation()
    u = chats.add_message(conv.id, "user", "q")
    a = chats.add_message(conv.id, "assistant", "old answer")
    chats.retire_from(conv.id, a.id)
    assert [m.id for m in chats.active_messages(conv.id)] == [u.id]
    assert chats.get_message(a.id).content == "old answer"


def test_feedback_and_export(db):
    conv = chats.create_conversation()
    chats.add_message(conv.id, "user", "q")
    a = chats.add_message(conv.id, "assistant", "a", ttft_ms=12.5, completion_tokens=3, finish_reason="stop")
    chats.set_feedback(a.id, -1)
    with pytest.raises(ValueError):
        chats.set_feedback(a.id, 7)
    data = chats.conversation_export(conv.id)
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["feedback"] == -1 and data["messages"][1]["ttft_ms"] == 12.5


def test_user_turn_is_stored_in_one_go(owner):
    from engines.conversations import store_user_turn

    cid = store_user_turn(owner, None, "first question")
    assert [m.content for m in chats.active_messages(cid)] == ["first question"]
    assert store_user_turn(owner, cid, "second") == cid
    with pytest.raises(ValueError):
        store_user_turn(owner, None, "   ")
    assert len(chats.list_conversations()) == 1  # the empty message created no conversation


def test_regenerated_and_edited_versions_of_the_last_turn_are_kept_and_shown_on_request(db):
    from engines import accounts, conversations
    from engines.conversations import TurnVersions

    me = accounts.bootstrap(None)
    cid = conversations.store_user_turn(me, None, "First question?")
    chats.add_message(cid, "assistant", "First answer.", finish_reason="stop")
    conversations.add_user_message(cid, "What is LoRA?")
    chats.add_message(cid, "assistant", "A1", finish_reason="stop")
    assert conversations.turn_versions(me, cid) == TurnVersions(1, 1)
    conversations.retire_last_answer(cid)  # Regenerate
    chats.add_message(cid, "assistant", "A2", finish_reason="stop")
    last_q = conversations.last_user_message(cid)
    conversations.replace_user_message(cid, last_q.id, "What is QLoRA?")  # Edit
    chats.add_message(cid, "assistant", "B1", finish_reason="stop")
    assert conversations.turn_versions(me, cid) == TurnVersions(3, 3)

    def shown() -> list[str]:
        return [m.content for m in chats.active_messages(cid)]

    assert conversations.show_version(me, cid, 1) == TurnVersions(1, 3)
    assert shown() == ["First question?", "First answer.", "What is LoRA?", "A1"]
    assert conversations.show_version(me, cid, 3) == TurnVersions(3, 3)
    assert shown() == ["First question?", "First answer.", "What is QLoRA?", "B1"]
    # Regenerating after going back to an older question answers that question, as a 4th version of the turn.
    conversations.show_version(me, cid, 2)
    conversations.retire_last_answer(cid)
    chats.add_message(cid, "assistant", "A3", finish_reason="stop")
    assert conversations.turn_versions(me, cid) == TurnVersions(4, 4)
    assert shown()[-2:] == ["What is LoRA?", "A3"]
    assert conversations.show_version(me, cid, 3) == TurnVersions(3, 4) and shown()[-2:] == ["What is QLoRA?", "B1"]
    # A new turn after that starts its own versions; nothing was deleted along the way.
    conversations.add_user_message(cid, "Thanks!")
    assert conversations.turn_versions(me, cid) == TurnVersions(0, 0)  # not answered yet
    chats.add_message(cid, "assistant", "You're welcome.", finish_reason="stop")
    assert conversations.turn_versions(me, cid) == TurnVersions(1, 1)
    assert len(list(chats.Message.select().where(chats.Message.conversation == cid))) == 10
    with pytest.raises(ValueError, match="no version 2"):
        conversations.show_version(me, cid, 2)
    other = accounts.add_user("other", "other-password", role="member")
    with pytest.raises(conversations.ConversationNotFound):  # someone else's conversation reads as not there
        conversations.turn_versions(other, cid)
    with pytest.raises(conversations.ConversationNotFound):
        conversations.show_version(other, cid, 1)


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "  Explain LoRA   in two sentences. "}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "첫 질문"},
     {"role": "assistant", "content": "첫 답"}, {"role": "assistant", "content": ""},
     {"role": "user", "content": "둘째 질문"}],
])
def test_the_gateways_fast_store_keeps_what_the_general_path_keeps(owner, messages):
    """`store_api_turn_and_open` for a new conversation writes with `chats.start_with_answer` (no reads); it must store
    the same rows (roles, text, turns, questions, title, system prompt) and send the model the same history as
    `store_api_turn` followed by `open_answer`."""
    from engines import conversations as turns
    from engines.inference import ChatParams

    params = ChatParams(temperature=0.0, max_tokens=64, seed=7)
    cid_slow, system_slow = turns.store_api_turn(owner, None, messages, model="m")
    opened_slow = turns.open_answer(cid_slow, "m", params, system_prompt=system_slow)
    cid_fast, system_fast, opened_fast = turns.store_api_turn_and_open(owner, None, messages, model="m", params=params)
    assert cid_fast != cid_slow and system_fast == system_slow
    assert opened_fast.history == opened_slow.history

    def shape(cid: int, answer_id: int) -> tuple:
        conv = chats.get_conversation(cid)
        rows = list(chats.Message.select().where(chats.Message.conversation == cid).order_by(chats.Message.id))
        ids = {m.id: i for i, m in enumerate(rows)}  # ids as positions: the two conversations' ids differ
        return ((conv.title, conv.model, conv.system_prompt, conv.source, conv.owner_id),
                [(m.role, m.content, m.finish_reason, m.model, m.params, m.active, ids.get(m.turn), ids.get(m.reply_to))
                 for m in rows], ids[answer_id])

    assert shape(cid_fast, opened_fast.message_id) == shape(cid_slow, opened_slow.message_id)
    fast_rows = list(chats.Message.select().where(chats.Message.conversation == cid_fast))
    assert all(m.turn is not None for m in fast_rows)  # every message belongs to a turn
