"""Team rows on a real SQLite file: datasets, fine-tune runs and evaluations are readable by everyone, changed only by
their owner or an admin; rows carry the owner who made them; a chat becomes a dataset row only for its own author."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from engines import accounts
from engines.accounts import PermissionDenied
from engines.datasets import draft, from_chats
from engines.datasets.formats import Row
from engines.datasets.synthetic import synthesize
from engines.datasets.versions import create_empty, import_file, save_draft, save_version
from engines.evaluation.runner import EvalManager
from engines.serving import Endpoint
from engines.settings import load_settings
from engines.training import JobManager
from storage import chats, evals, runs
from storage import datasets as store
from storage.models import DatasetEdit

SAMPLE = "assets/datasets/studio-helper-en.jsonl"


def qa(i: int, cat: str | None = None) -> Row:
    return Row([{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}], cat)


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def team(db):
    """The first admin plus two members."""
    admin = accounts.bootstrap(None)
    alice = accounts.add_user("alice", "alice-password", role="member")
    bob = accounts.add_user("bob", "bob-password", role="member")
    return admin, alice, bob


@pytest.fixture
def alices(team, settings):
    """Alice's dataset: 10 rows (5 odd, 5 even), one saved version."""
    _, alice, _ = team
    ds = create_empty("alices", actor=alice)
    draft.fill(ds, [qa(i, "odd" if i % 2 else "even") for i in range(10)], actor=alice)
    save_draft(settings, ds, actor=alice)
    return ds


def _state(ds: int) -> tuple:
    """Everything a change could touch: the rows, the undo log and the versions."""
    rows = [(r.source, json.dumps(r.messages), r.category, r.extra.get("split")) for r in draft.all_rows(ds)]
    return rows, DatasetEdit.select().where(DatasetEdit.dataset == ds).count(), [v.id for v in store.list_versions(ds)]


def test_created_datasets_carry_their_owner_and_show_the_name(team, settings, tmp_path):
    _, alice, bob = team
    ds = create_empty("mine", actor=alice)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r.to_json()) + "\n" for r in [qa(1), qa(2)]), encoding="utf-8")
    imported = import_file(settings, src, "imported", actor=bob).version.dataset_id
    assert store.get_dataset(ds).owner_id == alice.id and store.get_dataset(imported).owner_id == bob.id
    assert {d.name: d.owner_name for d in store.list_datasets()} == {"mine": "alice", "imported": "bob"}
    from studio.datasets_view import dataset_choices

    assert any(label.startswith("mine") and label.endswith("· alice") for label, _ in dataset_choices("en"))


def test_a_member_reads_but_cannot_change_another_members_dataset(team, settings, alices):
    _, alice, bob = team
    before = _state(alices)
    assert draft.page(alices, 1).total == 10 and len(draft.all_rows(alices)) == 10  # the team can read it
    first = draft.page(alices, 1).rows[0]
    refused = [
        lambda: draft.fill(alices, [qa(99)], actor=bob, replace=False, action="append"),
        lambda: draft.fill(alices, [qa(99)], actor=bob),
        lambda: draft.update_row(first.id, qa(42).messages, "x", actor=bob),
        lambda: draft.add_row(alices, qa(43).messages, actor=bob),
        lambda: draft.delete_rows(alices, [first.id], actor=bob),
        lambda: draft.delete_matching(alices, actor=bob, category="odd"),
        lambda: draft.dedupe(alices, actor=bob),
        lambda: draft.assign_split(alices, 0.2, 1, actor=bob),
        lambda: draft.undo(alices, actor=bob),
        lambda: save_version(settings, alices, [qa(7)], actor=bob),
        lambda: from_chats.add_thumbs_up(alices, actor=bob),
    ]
    for attempt in refused:
        with pytest.raises(PermissionDenied, match="owner or an admin"):
            attempt()
    draft.add_row(alices, qa(44).messages, actor=alice)  # the working copy differs: a version could be saved
    before = _state(alices)
    with pytest.raises(PermissionDenied):
        save_draft(settings, alices, actor=bob)
    assert _state(alices) == before  # not a row, undo entry or version changed


def test_the_owner_and_an_admin_can_change_it(team, settings, alices):
    admin, alice, _ = team
    draft.fill(alices, [qa(1), qa(2)], actor=alice, replace=False, action="append")
    assert draft.dedupe(alices, actor=alice) == 2
    assert draft.undo(alices, actor=admin) == "dedupe" and draft.count(alices) == 12
    assert draft.undo(alices, actor=admin) == "append" and draft.count(alices) == 10
    assert draft.delete_matching(alices, actor=admin, category="odd") == 5
    assert save_draft(settings, alices, actor=admin).version == 2
    row = draft.add_row(alices, qa(50).messages, actor=alice)
    draft.update_row(row, qa(51).messages, None, actor=admin)
    assert draft.assign_split(alices, 0.2, 1, actor=alice) == (5, 1)


def test_generation_into_someone_elses_dataset_is_refused_before_any_request(team, alices):
    _, _, bob = team
    nowhere = Endpoint(base_url="http://127.0.0.1:9/v1", model="m")
    before = _state(alices)
    with pytest.raises(PermissionDenied):
        asyncio.run(synthesize(nowhere, alices, actor=bob, n=2, seeds=["hi"]))
    assert _state(alices) == before


def _chat(owner_id: int, liked: bool = False) -> int:
    conv = chats.create_conversation(title="t", owner_id=owner_id)
    chats.add_message(conv.id, "user", f"Who am I, {owner_id}?")
    answer = chats.add_message(conv.id, "assistant", f"You are user {owner_id}.", finish_reason="stop")
    if liked:
        chats.set_feedback(answer.id, 1)
    return conv.id


def test_a_chat_joins_a_dataset_only_from_its_own_author_into_a_dataset_they_may_change(team, alices):
    admin, alice, bob = team
    alice_chat, bob_chat = _chat(alice.id, liked=True), _chat(bob.id, liked=True)
    bobs = create_empty("bobs", actor=bob)
    with pytest.raises(PermissionDenied, match=f"no conversation {alice_chat} of yours"):
        from_chats.add_conversation(bobs, alice_chat, actor=bob)  # someone else's private chat
    with pytest.raises(PermissionDenied, match=f"no conversation {alice_chat} of yours"):
        from_chats.add_conversation(alices, alice_chat, actor=admin)  # chats are private even from an admin
    with pytest.raises(PermissionDenied, match="no conversation 999 of yours"):
        from_chats.add_conversation(bobs, 999, actor=bob)  # a missing chat reads the same: nothing is revealed
    with pytest.raises(PermissionDenied, match="owner or an admin"):
        from_chats.add_conversation(alices, bob_chat, actor=bob)  # his own chat, but not his dataset
    with pytest.raises(PermissionDenied):
        from_chats.conversation_row(alice_chat, actor=bob)
    assert draft.count(bobs) == 0
    row_id = from_chats.add_conversation(bobs, bob_chat, actor=bob)
    assert json.loads(draft.get_row(row_id).messages)[-1]["content"] == f"You are user {bob.id}."
    draft.undo(bobs, actor=bob)
    assert from_chats.add_thumbs_up(bobs, actor=bob) == 1  # only his own 👍, not alice's
    assert [r.messages[-1]["content"] for r in draft.all_rows(bobs)] == [f"You are user {bob.id}."]


def test_fine_tune_runs_are_cancelled_and_resumed_only_by_their_owner_or_an_admin(team, settings):
    admin, alice, bob = team
    jobs = JobManager(settings, None)  # not started: rows and checks only, no worker
    spec = {"base_model": "SmolLM2-135M-Instruct", "dataset": SAMPLE, "max_steps": 1}
    rid = jobs.submit({**spec, "output_name": "alice-run"}, actor=alice)
    run = runs.get_run(rid)
    assert run.owner_id == alice.id and run.owner_name == "alice"
    assert [(r.name, r.owner_name) for r in runs.list_runs()] == [("alice-run", "alice")]
    with pytest.raises(PermissionDenied, match="fine-tune run"):
        jobs.cancel(rid, actor=bob)
    assert runs.get_run(rid).status == "queued" and not runs.get_run(rid).cancel_requested
    assert jobs.cancel(rid, actor=alice) == "cancelled"
    with pytest.raises(PermissionDenied):
        jobs.resume(rid, actor=bob)
    assert runs.get_run(rid).status == "cancelled"
    jobs.resume(rid, actor=admin)
    assert runs.get_run(rid).status == "queued"
    assert jobs.cancel(rid, actor=admin) == "cancelled"
    from studio.finetune_view import runs_frame

    frame = runs_frame("en", runs.list_runs())
    assert list(frame.columns)[-1] == "Owner" and frame.iloc[0]["Owner"] == "alice"


def test_evaluations_are_stopped_and_resumed_only_by_their_owner_or_an_admin(team, settings):
    admin, alice, bob = team
    live = Endpoint(base_url="http://127.0.0.1:9/v1", model="m")

    def endpoint_for(model: str) -> Endpoint | None:
        # Served while submitting (the check), gone for the worker thread: the run fails at once, asking nothing.
        return live if threading.current_thread() is threading.main_thread() else None

    manager = EvalManager(settings, endpoint_for)
    eid = manager.submit(actor=alice, name="alice-eval", models=["m"], source="pasted",
                         examples=[{"messages": [{"role": "user", "content": "hi"}]}])
    manager.wait(eid, 30)
    run = evals.get_eval(eid)
    assert run.owner_id == alice.id and run.owner_name == "alice" and run.status == "failed"
    assert [e.owner_name for e in evals.list_evals()] == ["alice"]
    with pytest.raises(PermissionDenied, match="evaluation"):
        manager.resume(eid, actor=bob)
    with pytest.raises(PermissionDenied, match="evaluation"):
        manager.cancel(eid, actor=bob)
    assert evals.get_eval(eid).status == "failed" and evals.get_eval(eid).error == run.error
    for who in (alice, admin):
        manager.resume(eid, actor=who)
        manager.wait(eid, 30)
        assert evals.get_eval(eid).status == "failed"  # resumed (and failed again: nothing is served to the worker)
    assert manager.cancel(eid, actor=admin) is False  # allowed, but not running
