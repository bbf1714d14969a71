"""Judge–human agreement and Cohen's kappa on real stored battles and judge verdicts, against hand-computed values."""

from __future__ import annotations

import pytest

from engines import accounts
from engines.evaluation import agreement, compare
from storage import battles


@pytest.fixture
def team(db):
    admin = accounts.bootstrap(None)
    alice = accounts.add_user("alice", "alice-password", role="member")
    bob = accounts.add_user("bob", "bob-password", role="member")
    return admin, alice, bob


def voted(actor, vote, n=[0]):  # noqa: B006  # a counter shared by the calls: unique prompts
    n[0] += 1
    bid = compare.start_battle(actor, f"prompt {n[0]}", "base", "tuned", blind=True)
    compare.save_battle_answers(actor, bid, f"answer a {n[0]}", f"answer b {n[0]}")
    compare.record_vote(actor, bid, vote)
    return bid


def test_kappa_textbook_values():
    # Wikipedia's example: 50 items, both yes 20, A yes/B no 5, A no/B yes 10, both no 15: p_o 0.7, p_e 0.5, κ 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert agreement.agreement_rate(pairs) == pytest.approx(0.7)
    assert agreement.cohen_kappa(pairs) == pytest.approx(0.4)
    assert agreement.cohen_kappa([("a", "b"), ("b", "a")]) == pytest.approx(-1.0)  # p_o 0, p_e 0.5
    assert agreement.cohen_kappa([("a", "a"), ("a", "a")]) is None  # chance agreement is total: undefined
    assert agreement.cohen_kappa([]) is None and agreement.agreement_rate([]) is None


def test_agreement_per_judge_with_disagreements(team):
    _, alice, bob = team
    humans = ["a", "a", "a", "a", "b", "b", "b", "tie", "tie", "both_bad"]
    judge1 = ["a", "a", "a", "b", "b", "b", "a", "tie", "a", "tie"]
    ids = [voted(alice, h) for h in humans]
    for bid, v in zip(ids, judge1, strict=True):
        battles.save_judgement(bid, "judge-1", v, {"raw": []})
    errored = voted(alice, "a")
    battles.save_judgement(errored, "judge-1", "error", {"error": "no verdict"})
    for bid, v in zip(ids[:2] + ids[4:6], ["a", "a", "b", "b"], strict=True):
        battles.save_judgement(bid, "judge-2", v)
    for bid in ids[:2]:
        battles.save_judgement(bid, "judge-3", "a")
    other = voted(bob, "a")  # Bob's battle, judged the other way: never in Alice's numbers
    battles.save_judgement(other, "judge-1", "b")

    got = {r.judge: r for r in agreement.judge_agreement(alice)}
    assert sorted(got) == ["judge-1", "judge-2", "judge-3"]
    one = got["judge-1"]
    # by hand: agree 7 of 10 -> 0.7; humans a4 b3 tie3, judge a5 b3 tie2 -> p_e (20+9+6)/100 = 0.35
    assert one.n == 10 and one.errors == 1
    assert one.agreement == pytest.approx(0.7)
    assert one.kappa == pytest.approx((0.7 - 0.35) / (1 - 0.35))
    assert one.confusion[("a", "b")] == 1 and one.confusion[("tie", "tie")] == 2 and one.confusion[("tie", "a")] == 1
    assert [(d.battle_id, d.human, d.judge) for d in one.disagreements] == [(ids[3], "a", "b"), (ids[6], "b", "a"),
                                                                              (ids[8], "tie", "a")]
    assert one.disagreements[0].prompt.startswith("prompt ") and one.disagreements[0].model_b == "tuned"
    two = got["judge-2"]  # all four agree; humans a2 b2, judge a2 b2 -> p_e 0.5, κ 1
    assert (two.n, two.agreement, two.kappa, two.disagreements) == (4, 1.0, pytest.approx(1.0), [])
    three = got["judge-3"]
    assert (three.n, three.agreement, three.kappa) == (2, 1.0, None)
    assert [r.judge for r in agreement.judge_agreement(alice, judge="judge-2")] == ["judge-2"]
    bobs = agreement.judge_agreement(bob)
    assert [(r.judge, r.n, r.agreement) for r in bobs] == [("judge-1", 1, 0.0)]
    assert one.as_dict()["confusion"]["a|b"] == 1


def test_unjudged_battles_are_the_ones_left_to_rate(team):
    _, alice, _ = team
    done, failed, todo = voted(alice, "a"), voted(alice, "b"), voted(alice, "tie")
    battles.save_judgement(done, "judge-1", "a")
    battles.save_judgement(failed, "judge-1", "error")
    assert [b.id for b in agreement.unjudged_battles(alice, "judge-1")] == [failed, todo]
    battles.save_judgement(failed, "judge-1", "b")  # a retry replaces the error
    assert [b.id for b in agreement.unjudged_battles(alice, "judge-1")] == [todo]
    assert battles.judgements([failed])[0].verdict == "b"
