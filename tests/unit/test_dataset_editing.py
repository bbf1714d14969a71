"""The working copy: paged/filtered in SQL, every change undoable, splits seeded; rows from chats and 👍 answers."""

from __future__ import annotations

import json

import pytest

from engines.datasets import draft, from_chats
from engines.datasets.formats import Row
from engines.datasets.versions import create_empty, diff_versions, save_draft
from storage import chats
from storage import datasets as store


def qa(i: int, cat: str | None = None) -> Row:
    return Row([{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}], cat)


@pytest.fixture
def ds(db, owner):
    dataset_id = create_empty("work", actor=owner)
    draft.fill(dataset_id, [qa(i, "even" if i % 2 == 0 else "odd") for i in range(120)], actor=owner)
    return dataset_id


def test_pages_filters_and_search_run_in_sql(ds):
    p = draft.page(ds, 1)
    assert p.total == 120 and p.pages == 3 and len(p.rows) == 50
    assert draft.page(ds, 99).page == 3 and len(draft.page(ds, 3).rows) == 20
    assert draft.page(ds, search="question 11").total == 11  # 11, 110-119
    assert draft.page(ds, category="odd").total == 60
    assert dict(draft.categories(ds)) == {"even": 60, "odd": 60}


def test_edit_add_delete_and_undo_each(ds, owner):
    first = draft.page(ds, 1).rows[0]
    before = json.loads(first.messages)
    draft.update_row(first.id, [{"role": "user", "content": "Edited?"}, {"role": "assistant", "content": "Yes."}], "edited", actor=owner)
    assert json.loads(draft.get_row(first.id).messages)[0]["content"] == "Edited?"
    new_id = draft.add_row(ds, [{"role": "user", "content": "New?"}, {"role": "assistant", "content": "Added."}], actor=owner)
    assert draft.count(ds) == 121
    assert draft.undo(ds, actor=owner) == "add" and draft.get_row(new_id) is None
    assert draft.undo(ds, actor=owner) == "edit" and json.loads(draft.get_row(first.id).messages) == before
    assert draft.get_row(first.id).category == "even"
    with pytest.raises(draft.EditError, match="no assistant"):
        draft.update_row(first.id, [{"role": "user", "content": "only"}], None, actor=owner)


def test_bulk_delete_by_filter_dedupe_and_undo(ds, owner):
    with pytest.raises(draft.EditError):
        draft.delete_matching(ds, actor=owner)  # no filter: refuses to delete everything
    assert draft.delete_matching(ds, actor=owner, category="odd") == 60
    assert draft.count(ds) == 60
    assert draft.undo(ds, actor=owner) == "bulk_delete" and draft.count(ds) == 120
    draft.fill(ds, [qa(1, "odd"), Row([{"role": "user", "content": "QUESTION 2"}, {"role": "assistant", "content": "answer 2"}])],
               replace=False, action="append", actor=owner)
    assert draft.dedupe(ds, actor=owner) == 1  # the exact copy of row "Question 1?"
    assert draft.dedupe(ds, actor=owner, near=True) == 1  # "QUESTION 2 / answer 2" folds onto "Question 2? / Answer 2."
    assert draft.count(ds) == 120
    draft.undo(ds, actor=owner)
    draft.undo(ds, actor=owner)
    assert draft.count(ds) == 122


def test_split_is_seeded_and_undoable(ds, owner):
    assert draft.assign_split(ds, 0.1, seed=3, actor=owner) == (108, 12)
    evals = {r.id for r in draft.page(ds, 1, split="eval", size=100).rows}
    draft.assign_split(ds, 0.1, seed=3, actor=owner)
    assert {r.id for r in draft.page(ds, 1, split="eval", size=100).rows} == evals
    draft.undo(ds, actor=owner)
    draft.undo(ds, actor=owner)
    assert draft.page(ds, 1, split="eval").total == 0


def test_saving_freezes_a_version_and_refuses_no_change(db, settings, ds, owner):
    v1 = save_draft(settings, ds, note="first", actor=owner)
    with pytest.raises(ValueError, match="Nothing changed"):
        save_draft(settings, ds, actor=owner)
    draft.delete_rows(ds, [draft.page(ds, 1).rows[0].id], actor=owner)
    v2 = save_draft(settings, ds, actor=owner)
    assert (v1.version, v2.version, v2.row_count) == (1, 2, 119)
    assert len(diff_versions(settings, v1, v2).removed) == 1
    assert store.version_by_path(v2.path).id == v2.id


def test_the_working_copy_says_whether_a_version_holds_it(db, settings, ds, owner):
    import time

    assert draft.saved_state(ds) == draft.SavedState(None, True)  # rows, never saved
    assert draft.saved_state(create_empty("empty", actor=owner)) == draft.SavedState(None, False)
    save_draft(settings, ds, actor=owner)
    assert draft.saved_state(ds) == draft.SavedState(1, False)
    time.sleep(draft.SAVE_STAMP_SLACK.total_seconds() + 0.2)  # an edit a person makes after saving, not in the same instant
    row = draft.page(ds, 1).rows[0]
    draft.update_row(row.id, [{"role": "user", "content": "Edited?"}, {"role": "assistant", "content": "Yes."}], None, actor=owner)
    assert draft.saved_state(ds) == draft.SavedState(1, True)
    save_draft(settings, ds, actor=owner)
    assert draft.saved_state(ds) == draft.SavedState(2, False)
    time.sleep(draft.SAVE_STAMP_SLACK.total_seconds() + 0.2)
    draft.undo(ds, actor=owner)  # undoing the saved edit changes the working copy again
    assert draft.saved_state(ds) == draft.SavedState(2, True)


def test_rows_from_a_chat_and_all_thumbs_up_answers(ds, owner):
    conv = chats.create_conversation(title="t", system_prompt="You are Studio Helper.", owner_id=owner.id)
    chats.add_message(conv.id, "user", "What is QLoRA?")
    a1 = chats.add_message(conv.id, "assistant", "4-bit base weights plus LoRA.", finish_reason="stop")
    chats.add_message(conv.id, "user", "And LoRA?")
    chats.add_message(conv.id, "assistant", "Half writ", finish_reason="stopped")  # a stopped answer is left out
    row = from_chats.conversation_row(conv.id, a1.id, actor=owner)
    assert [m["role"] for m in row.messages] == ["system", "user", "assistant"]
    assert row.messages[0]["content"] == "You are Studio Helper."
    assert from_chats.conversation_row(conv.id, actor=owner).messages[-1]["content"] == "4-bit base weights plus LoRA."
    rid = from_chats.add_conversation(ds, conv.id, a1.id, actor=owner)
    assert json.loads(draft.get_row(rid).messages)[-1]["content"] == "4-bit base weights plus LoRA."
    chats.set_feedback(a1.id, 1)
    assert from_chats.add_thumbs_up(ds, actor=owner) == 0  # already in the dataset
    draft.undo(ds, actor=owner)
    assert from_chats.add_thumbs_up(ds, actor=owner) == 1


def test_token_histogram_bins_in_order_per_role():
    from studio.datasets_view import TOKEN_LABELS, token_histogram

    df = token_histogram({"user": [10, 40, 40, 5000], "assistant": [300]})
    user = df[df.role == "user"].set_index("tokens")["messages"]
    assert list(user.index) == TOKEN_LABELS  # every bin, in size order, zeros included
    assert (user["<32"], user["<64"], user["≥4096"], user.sum()) == (1, 2, 1, 4)
    assert df[df.role == "assistant"].set_index("tokens")["messages"]["<512"] == 1
