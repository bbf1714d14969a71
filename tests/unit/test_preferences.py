"""Preference pairs built from real stored judgements on a real SQLite file: arena battles voted through the arena
engine, 👍/👎 and regenerations made through the chat engine, judged batch evaluations. Exactly the expected pairs
come out; ties, "both bad", same-verdict answers, other people's rows and different turns never pair."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from engines import accounts, conversations
from engines.accounts import PermissionDenied
from engines.datasets import preference_files as pf
from engines.datasets import preferences
from engines.datasets.formats import FormatError, PreferenceRow, detect, read_records
from engines.datasets.preferences import PreferenceFilters, build_preferences
from engines.datasets.versions import ImportRefused, import_file, load_version
from engines.evaluation import compare
from engines.settings import load_settings
from storage import chats, evals
from storage import datasets as store


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def team(db):
    admin = accounts.bootstrap(None)
    alice = accounts.add_user("alice", "alice-password", role="member")
    bob = accounts.add_user("bob", "bob-password", role="member")
    return admin, alice, bob


def battle(actor, prompt, a, b, vote, *, models=("base", "tuned"), system="", category=None):
    bid = compare.start_battle(actor, prompt, *models, blind=True, params={"system": system}, category=category)
    compare.save_battle_answers(actor, bid, a, b)
    if vote:
        compare.record_vote(actor, bid, vote)
    return bid


def answer(cid, text, model="base", finish="stop"):
    """An assistant answer as `engines.conversations.answer` leaves it once the stream finished."""
    return chats.add_message(cid, "assistant", text, model=model, finish_reason=finish).id


def ask(actor, cid, text):
    return conversations.store_user_turn(actor, cid, text)


def regenerate(actor, cid, text, model="base"):
    conversations.own_conversation(actor, cid)
    assert conversations.retire_last_answer(cid)
    return answer(cid, text, model)


def thumb(actor, cid, message_id, value):
    rows = conversations.active_messages(actor, cid)
    index = next(i for i, m in enumerate(rows) if m.id == message_id)
    conversations.set_feedback(actor, cid, index, value)


@pytest.fixture
def stored(team):
    """Alice's battles, chats and a judged evaluation, plus Bob's rows that must never reach Alice's dataset."""
    admin, alice, bob = team
    ids: dict[str, int] = {}
    ids["b_a"] = battle(alice, "Capital of Italy?", "Rome.", "Milan.", "a")
    ids["b_b"] = battle(alice, "2+2?", "5", "4", "b", models=("m1", "m2"), system="Answer with a number.", category="math")
    battle(alice, "Tie?", "x", "y", "tie")
    battle(alice, "Both bad?", "p", "q", "both_bad")
    battle(alice, "Not voted", "r", "s", None)
    battle(bob, "Bob's prompt", "bob a", "bob b", "a")

    # c1: 👎 answer regenerated into a 👍 one -> one thumbs pair; a later single answer -> nothing
    c1 = ask(alice, None, "What is 2+2?")
    chats.Conversation.update(system_prompt="Be brief.").where(chats.Conversation.id == c1).execute()
    ids["c1_bad"] = answer(c1, "5")
    thumb(alice, c1, ids["c1_bad"], -1)
    ids["c1_good"] = regenerate(alice, c1, "4")
    thumb(alice, c1, ids["c1_good"], 1)
    ask(alice, c1, "And 3+3?")
    answer(c1, "6")
    ids["c1"] = c1

    # c2: regenerated twice, the third kept -> two pairs (kept > each regenerated); the two regenerated never pair
    c2 = ask(alice, None, "Name a colour")
    ids["c2_1"] = answer(c2, "blue", model="m1")
    ids["c2_2"] = regenerate(alice, c2, "red", model="m2")
    ids["c2_3"] = regenerate(alice, c2, "green", model="m3")
    ids["c2"] = c2

    # c3: two 👍, c4: two 👎 -> same verdict, nothing
    c3 = ask(alice, None, "Say hi")
    first = answer(c3, "hi")
    thumb(alice, c3, first, 1)
    second = regenerate(alice, c3, "hello")
    thumb(alice, c3, second, 1)
    c4 = ask(alice, None, "Say bye")
    first = answer(c4, "x")
    thumb(alice, c4, first, -1)
    second = regenerate(alice, c4, "y")
    thumb(alice, c4, second, -1)

    # c5: a second turn regenerated and the new answer liked -> the pair carries the earlier turns as context
    c5 = ask(alice, None, "Hi")
    answer(c5, "Hello!")
    ask(alice, c5, "Tell a joke")
    ids["c5_old"] = answer(c5, "joke one")
    ids["c5_new"] = regenerate(alice, c5, "joke two")
    thumb(alice, c5, ids["c5_new"], 1)
    ids["c5"] = c5

    # c6: an edited question: the old question's only answer never pairs with the new question's answer
    c6 = ask(alice, None, "Capital of France?")
    old = answer(c6, "Lyon")
    thumb(alice, c6, old, -1)
    last = conversations.last_user_message(c6)
    conversations.replace_user_message(c6, last.id, "Capital of France, please?")
    answer(c6, "Paris")

    # c7: a failed (error) regeneration is no candidate
    c7 = ask(alice, None, "Count to three")
    answer(c7, "1 2 3")
    conversations.retire_last_answer(c7)
    answer(c7, "1 2", finish="error")

    # Bob: a 👍/👎 pair of his own
    cb = ask(bob, None, "Bob asks")
    bad = answer(cb, "bad")
    thumb(bob, cb, bad, -1)
    good = regenerate(bob, cb, "good")
    thumb(bob, cb, good, 1)

    # a batch evaluation (team-visible): win, loss, tie (the judge disagreed with itself across orders), error
    examples = [{"messages": [{"role": "user", "content": f"Q{i}"}], "reference": None, "category": "quiz"} for i in range(4)]
    run = evals.create_eval(name="judged", models=["base", "cand"], judge="judge-m", source="pasted", params={},
                            examples=examples, owner_id=bob.id)
    for i, outcome in enumerate(["win", "loss", "tie", "error"]):
        evals.save_result(run.id, i, "base", output=f"base answer {i}")
        evals.save_result(run.id, i, "cand", output=f"cand answer {i}", judge_outcome=outcome)
    evals.finish_eval(run.id, "completed")
    ids["eval"] = run.id
    return alice, bob, ids


def pairs(report):
    return sorted((r.source["kind"], r.prompt[-1]["content"], r.chosen, r.rejected) for r in report.rows)


def test_exactly_the_expected_pairs(stored):
    alice, _, ids = stored
    report = build_preferences(alice)
    assert pairs(report) == sorted([
        ("battle", "Capital of Italy?", "Rome.", "Milan."),
        ("battle", "2+2?", "4", "5"),
        ("thumbs", "What is 2+2?", "4", "5"),
        ("regenerated", "Name a colour", "green", "blue"),
        ("regenerated", "Name a colour", "green", "red"),
        ("regenerated", "Tell a joke", "joke two", "joke one"),
        ("judge", "Q0", "cand answer 0", "base answer 0"),
        ("judge", "Q1", "base answer 1", "cand answer 1"),
    ])
    assert report.counts == {"battle": 2, "thumbs": 1, "regenerated": 3, "judge": 2}
    # what was left out, and why: two ties/both-bad, same-verdict answers (red/blue, 👍👍, 👎👎), the judge's tie+error
    assert report.skipped["tie_or_both_bad"] == 2
    assert report.skipped["same_verdict"] == 3
    assert report.skipped["judge_tie_or_split"] == 2
    assert all(r.split == "train" for r in report.rows)


def test_context_provenance_and_system_prompts(stored):
    alice, _, ids = stored
    rows = {(r.source["kind"], r.prompt[-1]["content"], r.rejected): r for r in build_preferences(alice).rows}
    math = rows[("battle", "2+2?", "5")]
    assert math.prompt == [{"role": "system", "content": "Answer with a number."}, {"role": "user", "content": "2+2?"}]
    assert math.source["battle_id"] == ids["b_b"] and math.source["models"] == {"chosen": "m2", "rejected": "m1"}
    assert math.source["voter"] == "alice" and math.category == "math"
    thumbs = rows[("thumbs", "What is 2+2?", "5")]
    assert thumbs.prompt == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    assert thumbs.source["message_ids"] == {"chosen": ids["c1_good"], "rejected": ids["c1_bad"]}
    assert thumbs.source["conversation_id"] == ids["c1"]
    joke = rows[("regenerated", "Tell a joke", "joke one")]
    assert joke.prompt == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                           {"role": "user", "content": "Tell a joke"}]
    assert joke.source["verdicts"] == {"chosen": "up", "rejected": "regenerated"}
    colour = rows[("regenerated", "Name a colour", "blue")]
    assert colour.source["models"] == {"chosen": "m3", "rejected": "m1"}
    judged = rows[("judge", "Q1", "cand answer 1")]
    assert judged.source == judged.source | {"eval_id": ids["eval"], "example": 1, "judge": "judge-m", "voter": "judge-m",
                                             "models": {"chosen": "base", "rejected": "cand"}}
    assert judged.category == "quiz"


def test_private_rows_stay_private(stored, team):
    admin, alice, bob = team
    bobs = build_preferences(bob, PreferenceFilters(sources=("battle", "thumbs", "regenerated")))
    assert pairs(bobs) == sorted([("battle", "Bob's prompt", "bob a", "bob b"), ("thumbs", "Bob asks", "good", "bad")])
    # an admin builds from their own chats and battles only (conversations are private even from admins)
    assert build_preferences(admin, PreferenceFilters(sources=("battle", "thumbs", "regenerated"))).rows == []


def test_filters(stored):
    alice, _, _ = stored
    only = build_preferences(alice, PreferenceFilters(sources=("battle",)))
    assert {r.source["kind"] for r in only.rows} == {"battle"} and len(only.rows) == 2
    by_model = build_preferences(alice, PreferenceFilters(models=("m3",)))
    assert pairs(by_model) == sorted([("regenerated", "Name a colour", "green", "blue"),
                                      ("regenerated", "Name a colour", "green", "red")])
    # the tie and the "both bad" were between base and tuned: for an m3 build they are other models' battles
    assert "tie_or_both_bad" not in by_model.skipped and by_model.skipped["other_models"] >= 4
    assert build_preferences(alice, PreferenceFilters(models=("base",))).skipped["tie_or_both_bad"] == 2
    by_voter = build_preferences(alice, PreferenceFilters(voters=("judge-m",)))
    assert {r.source["kind"] for r in by_voter.rows} == {"judge"} and len(by_voter.rows) == 2
    assert len(build_preferences(alice, PreferenceFilters(category="math")).rows) == 1
    tomorrow = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    assert build_preferences(alice, PreferenceFilters(since=tomorrow)).rows == []
    assert len(build_preferences(alice, PreferenceFilters(until=tomorrow)).rows) == 8
    with pytest.raises(ValueError, match="Unknown preference source"):
        PreferenceFilters(sources=("edits",))


def test_near_duplicates_and_contradictions_are_removed(stored):
    alice, _, _ = stored
    battle(alice, "capital of italy", "rome", "MILAN!", "a")  # the same pair up to case and punctuation
    report = build_preferences(alice, PreferenceFilters(sources=("battle",)))
    assert len(report.rows) == 2 and report.skipped["near_duplicate"] == 1
    assert len(build_preferences(alice, PreferenceFilters(sources=("battle",)), dedupe=False).rows) == 3
    p = [{"role": "user", "content": "q"}]
    rows = [PreferenceRow(p, "a", "b"), PreferenceRow(p, "b", "a"), PreferenceRow(p, "c", "d")]
    assert [(r.chosen, r.rejected) for r in preferences.remove_duplicates(rows)] == [("c", "d")]


def test_two_answers_with_the_same_text_never_pair(stored, settings):
    """A model against itself often answers word for word alike: such a pair teaches nothing, and a preference file
    refuses it (chosen == rejected), so it is skipped before it could be saved."""
    alice, _, _ = stored
    battle(alice, "Same twice?", "Yes, same.", "yes same", "a", models=("m1", "m1"))
    report = build_preferences(alice, PreferenceFilters(sources=("battle",)))
    assert report.skipped["same_answer"] == 1 and "Same twice?" not in {r.prompt[-1]["content"] for r in report.rows}
    version = pf.create_preference_dataset(settings, "no-same", report.rows, actor=alice)
    assert len(pf.load_preference_version(settings, version)) == len(report.rows)  # every saved row reads back


def test_split_keeps_prompts_on_one_side(stored):
    alice, _, _ = stored
    report = build_preferences(alice, eval_fraction=0.3, seed=7)
    held = [r for r in report.rows if r.split == "eval"]
    assert 0 < len(held) < len(report.rows)
    sides: dict[str, set[str]] = {}
    for r in report.rows:
        sides.setdefault(preferences.prompt_key(r), set()).add(r.split)
    assert all(len(s) == 1 for s in sides.values())  # "Name a colour" has two pairs: both on one side
    again = build_preferences(alice, eval_fraction=0.3, seed=7)
    assert [r.split for r in again.rows] == [r.split for r in report.rows]


def test_saved_as_a_preference_dataset_with_versions_and_lineage(stored, settings, team):
    _, alice, bob = team
    _, _, ids = stored
    rows = build_preferences(alice, eval_fraction=0.25).rows
    v1 = pf.create_preference_dataset(settings, "alice-prefs", rows, actor=alice, note="from votes")
    ds = store.get_dataset(v1.dataset_id)
    assert ds.kind == "preference" and ds.owner_id == alice.id and v1.format == "preference" and v1.row_count == 8
    assert json.loads(v1.source_conversations) == sorted([ids["c1"], ids["c2"], ids["c5"]])
    back = pf.load_preference_version(settings, v1)
    assert [r.to_json() for r in back] == [r.to_json() for r in rows]
    with pytest.raises(ValueError, match="chat rows|preference"):
        load_version(settings, v1)  # a chat reader refuses a preference file
    v2 = pf.save_preference_version(settings, ds.id, rows[:5], actor=alice, note="fewer")
    assert v2.version == 2 and v2.parent_id == v1.id and v2.row_count == 5
    with pytest.raises(PermissionDenied):
        pf.save_preference_version(settings, ds.id, rows[:3], actor=bob)
    with pytest.raises(ValueError, match="Nothing changed"):
        pf.save_preference_version(settings, ds.id, rows[:5], actor=alice)


def test_trl_layouts_export_and_import(stored, settings, team, tmp_path):
    _, alice, bob = team
    rows = build_preferences(alice, eval_fraction=0.25).rows
    v1 = pf.create_preference_dataset(settings, "alice-prefs", rows, actor=alice)
    conv = pf.export_preference_version(settings, v1, "conversational")
    flat = pf.export_preference_version(settings, v1, "strings", split="train")
    conv_records = [json.loads(line) for line in conv.read_text().splitlines()]
    flat_records = [json.loads(line) for line in flat.read_text().splitlines()]
    assert set(conv_records[0]) == {"prompt", "chosen", "rejected"} and isinstance(conv_records[0]["chosen"], list)
    assert set(flat_records[0]) == {"prompt", "chosen", "rejected"} and isinstance(flat_records[0]["chosen"], str)
    assert len(flat_records) == sum(1 for r in rows if r.split == "train")
    everything = pf.export_preference_version(settings, v1, "strings")
    joke = next(json.loads(line) for line in everything.read_text().splitlines() if '"joke two"' in line)
    assert joke["prompt"] == "user: Hi\n\nassistant: Hello!\n\nuser: Tell a joke"
    assert detect(read_records(conv)[0]) == "preference_conversational"
    assert detect(read_records(flat)[0]) == "preference"

    # both layouts import as preference datasets (by anyone: it is their own file); chat import refuses them
    version, problems, removed = pf.import_preference_file(settings, conv, "imported-conv", actor=bob)
    assert problems == [] and removed == 0 and version.row_count == len(rows)
    assert [(r.prompt, r.chosen, r.rejected) for r in pf.load_preference_version(settings, version)] == \
        [(r.prompt, r.chosen, r.rejected) for r in rows]
    version, _, _ = pf.import_preference_file(settings, flat, "imported-flat", actor=bob)
    assert version.row_count == len(flat_records)
    with pytest.raises((FormatError, ImportRefused)):
        import_file(settings, conv, "as-chat", actor=bob)

    # TRL's implicit-prompt layout, and a file with a bad row (all or nothing, or valid rows only)
    implicit = tmp_path / "implicit.jsonl"
    implicit.write_text("\n".join(json.dumps(r) for r in [
        {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
         "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]},
        {"prompt": "same?", "chosen": "x", "rejected": "x"},
    ]) + "\n")
    with pytest.raises(ValueError, match="nothing was imported"):
        pf.import_preference_file(settings, implicit, "implicit", actor=bob)
    version, problems, _ = pf.import_preference_file(settings, implicit, "implicit", actor=bob, valid_only=True)
    assert [p.row for p in problems] == [2] and version.row_count == 1
    (row,) = pf.load_preference_version(settings, version)
    assert (row.prompt, row.chosen, row.rejected) == ([{"role": "user", "content": "hi"}], "hello", "go away")


def test_a_preference_version_and_a_dpo_runs_split_become_prompt_sets(stored, settings, team):
    from engines.evaluation.prompts import from_dataset_version, from_training_run

    _, alice, _ = team
    rows = build_preferences(alice, eval_fraction=0.25, seed=3).rows
    version = pf.create_preference_dataset(settings, "alice-prefs", rows, actor=alice)
    held = [r for r in rows if r.split == "eval"]
    examples = from_dataset_version(settings, version, "eval")
    assert [(e.messages, e.reference) for e in examples] == [(r.prompt, r.chosen) for r in held]
    assert len(from_dataset_version(settings, version, None)) == len(rows)

    class Run:
        name = "dpo-run"

    examples, note = from_training_run(Run(), {"eval_split": 0.2, "seed": 0}, Path(version.path))
    assert [(e.messages, e.reference) for e in examples] == [(r.prompt, r.chosen) for r in held]
    assert "labelled eval" in note
