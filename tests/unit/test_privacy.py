"""Each person's conversations, feedback and battles are theirs: another account can neither list, open, change
nor delete them, and bad ids get one clear sentence (real SQLite, the engines the UI and API call)."""

from __future__ import annotations

import pytest

from engines import accounts
from engines import conversations as turns
from engines.accounts import PermissionDenied
from engines.evaluation.compare import BattleNotFound, record_vote, save_battle_answers, start_battle
from engines.history import items
from engines.settings import load_settings
from storage import chats, runs
from storage.history import Filters, search, timeline
from studio.messages import display_assistant


@pytest.fixture
def people(db):
    admin = accounts.add_user("admin", "password-0", role="admin")
    return admin, accounts.add_user("ann", "password-1"), accounts.add_user("ben", "password-2")


def _chat(actor, text: str) -> int:
    cid = turns.store_user_turn(actor, None, text)
    chats.add_message(cid, "assistant", f"answer to {text}", finish_reason="stop")
    return cid


def test_conversations_are_private_to_their_owner(people):
    admin, ann, ben = people
    a = _chat(ann, "ann's secret recipe")
    b = _chat(ben, "ben's question")
    assert [c.id for c in turns.list_conversations(ann)] == [a]
    assert [c.id for c in turns.list_conversations(ben, "secret")] == []
    assert turns.list_conversations(admin) == []  # admins run the studio; they do not read people's chats
    for call in (lambda: turns.own_conversation(ben, a), lambda: turns.active_messages(ben, a),
                 lambda: turns.rename_conversation(ben, a, "mine now"), lambda: turns.delete_conversation(ben, a),
                 lambda: turns.set_feedback(ben, a, 1, 1), lambda: turns.export_conversation(ben, a),
                 lambda: turns.store_user_turn(ben, a, "appended by ben")):
        with pytest.raises(turns.ConversationNotFound, match=f"no conversation {a} of yours"):
            call()
    assert [m.content for m in chats.active_messages(a)] == ["ann's secret recipe", "answer to ann's secret recipe"]
    assert chats.get_conversation(a).title.startswith("ann's") and chats.active_messages(a)[1].feedback == 0
    turns.set_feedback(ann, a, 1, 1)
    turns.delete_conversation(ann, a)
    assert chats.get_conversation(a) is None and chats.get_conversation(b) is not None


@pytest.mark.parametrize("bad,message", [(-1, "no conversation -1"), (0, "no conversation 0"), ("", "whole number"),
                                         ("abc", "whole number"), (None, "whole number"), (999999, "no conversation 999999")])
def test_bad_conversation_ids_get_a_clear_sentence(people, bad, message):
    _, ann, _ = people
    _chat(ann, "hello")
    with pytest.raises(turns.ConversationNotFound, match=message):
        turns.delete_conversation(ann, bad)
    assert len(turns.list_conversations(ann)) == 1


@pytest.mark.parametrize("index,value,message", [("", 1, "whole numbers"), (0, "", "whole numbers"), (0, 7, "1 \\(👍\\)"),
                                                 (5, 1, "no message at index 5")])
def test_bad_feedback_gets_a_clear_sentence(people, index, value, message):
    _, ann, _ = people
    cid = _chat(ann, "hello")
    with pytest.raises(ValueError, match=message):
        turns.set_feedback(ann, cid, index, value)
    assert [m.feedback for m in chats.active_messages(cid)] == [0, 0]


def test_battles_and_votes_are_their_owners(people):
    _, ann, ben = people
    bid = start_battle(ann, "Which is better?", "m1", "m2", blind=True)
    with pytest.raises(BattleNotFound):
        record_vote(ben, bid, "a")
    with pytest.raises(BattleNotFound):
        save_battle_answers(ben, bid, "x", "y")
    assert record_vote(ann, bid, "b").vote == "b"


def test_history_lists_only_your_chats_and_battles_but_the_teams_runs(people, tmp_path):
    admin, ann, ben = people
    settings = load_settings(data_dir=tmp_path / "data")
    a = _chat(ann, "sourdough starter")
    _chat(ben, "sourdough loaf")
    start_battle(ann, "sourdough?", "m1", "m2", blind=False)
    run = runs.create_run(name="ann-tune", base_model="m1", dataset="d.jsonl", method="lora", spec={},
                          run_dir=str(settings.runs_path / "ann-tune"))
    from storage.models import TrainingRun

    TrainingRun.update(owner_id=ann.id, status="completed").where(TrainingRun.id == run.id).execute()
    for viewer, chats_seen, battles_seen in ((ann, 1, 1), (ben, 1, 0), (admin, 0, 0)):
        f = Filters(viewer=viewer.id)
        kinds = [i.kind for i in timeline(f)]
        assert kinds.count("chat") == chats_seen and kinds.count("battle") == battles_seen and kinds.count("run") == 1
        assert len([i for i in search("sourdough", f) if i.kind == "chat"]) == chats_seen
    assert items.describe("chat", a, ben) is None and "sourdough" in items.describe("chat", a, ann)
    with pytest.raises(KeyError):
        items.delete(settings, "chat", a, ben)
    with pytest.raises(PermissionDenied, match="owner or an admin"):
        items.delete(settings, "run", run.id, ben)
    assert runs.get_run(run.id) is not None
    items.delete(settings, "run", run.id, admin)
    assert runs.get_run(run.id) is None


def test_an_interrupted_answer_says_it_is_incomplete():
    class Row:
        finish_reason, error, ttft_ms = "interrupted", None, None

    assert "cut off" in display_assistant("en", "Partial", Row())
    assert "끊겼" in display_assistant("ko", "Partial", Row())


def test_a_chat_export_is_written_in_its_owners_folder_only(people, tmp_path):
    """The Chat tab's export (JSON + Markdown files): in the owner's own exports folder, refused to anyone else."""
    _, ann, ben = people
    settings = load_settings(data_dir=tmp_path / "data")
    a = _chat(ann, "ann's export")
    json_path, md_path = turns.export_conversation_files(settings, ann, a)
    assert json_path.parent == md_path.parent == settings.exports_path / f"user-{ann.id}"
    assert '"ann\'s export"' in json_path.read_text(encoding="utf-8")
    assert "answer to ann's export" in md_path.read_text(encoding="utf-8")
    with pytest.raises(turns.ConversationNotFound):
        turns.export_conversation_files(settings, ben, a)
    assert not (settings.exports_path / f"user-{ben.id}").exists()
