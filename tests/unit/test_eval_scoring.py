"""Batch-evaluation scoring without a server: judge verdicts, win rates, reference metrics, prompt sets, summaries."""

from __future__ import annotations

import random

import pytest

from engines.evaluation.judge import (
    MalformedVerdict,
    combine,
    judge_messages,
    length_controlled_win_rate,
    parse_verdict,
    win_rate,
)
from engines.evaluation.metrics import corpus_bleu, length_stats, normalise, reference_scores
from engines.evaluation.prompts import PromptSetError, from_conversation, from_pasted


@pytest.mark.parametrize("text", ["", "I think A is better.", "[[A]] ... on reflection [[B]]", "[[D]]", "[A]", "verdict: A"])
def test_malformed_verdicts_are_refused(text):
    with pytest.raises(MalformedVerdict):
        parse_verdict(text)


@pytest.mark.parametrize(("text", "want"), [("Reasoning...\n[[A]]", "A"), ("[[ b ]]", "B"), ("Both fine. [[C]]", "C"),
                                            ("[[A]] and again [[A]]", "A")])
def test_verdicts_are_read(text, want):
    assert parse_verdict(text) == want


def test_both_orders_must_agree_or_it_is_a_tie():
    assert combine("A", "B") == "win"  # candidate first, then second: preferred both times
    assert combine("B", "A") == "loss"
    assert combine("A", "A") == "tie"  # position bias: each order preferred whatever came first
    assert combine("C", "B") == "tie"
    assert combine("C", "C") == "tie"


def test_win_rate_counts_ties_half_and_leaves_errors_out():
    assert win_rate(["win", "tie", "loss", "loss"]) == pytest.approx(1.5 / 4)
    assert win_rate(["win", "error", "error", "skipped"]) == 1.0
    assert win_rate(["error", "skipped"]) is None


def test_length_controlled_win_rate_discounts_wins_that_come_from_length():
    rng = random.Random(0)
    outcomes, cand, base = [], [], []
    for _ in range(400):  # the candidate wins exactly when its answer is longer: length, not quality
        c, b = rng.randint(50, 400), rng.randint(50, 400)
        cand.append(c), base.append(b), outcomes.append("win" if c > b else "loss")
    skewed = [c + 120 for c in cand]  # ...and it usually writes longer answers
    raw = win_rate(["win" if c > b else "loss" for c, b in zip(skewed, base, strict=True)])
    lc = length_controlled_win_rate(["win" if c > b else "loss" for c, b in zip(skewed, base, strict=True)], skewed, base)
    assert raw > 0.7
    assert abs(lc - 0.5) < abs(raw - 0.5), (raw, lc)
    # Without a length effect, the controlled rate stays near the raw one.
    fair = ["win" if rng.random() < 0.7 else "loss" for _ in range(400)]
    same = [100] * 400
    assert length_controlled_win_rate(fair, same, same) == pytest.approx(win_rate(fair), abs=0.01)
    assert length_controlled_win_rate(["error"], [1], [2]) is None


def test_the_judge_sees_both_answers_and_the_reference():
    msgs = judge_messages("Q?", "first", "second", "ref")
    assert msgs[0]["role"] == "system" and "[[A]]" in msgs[0]["content"]
    body = msgs[1]["content"]
    assert body.index("[Answer A]\nfirst") < body.index("[Answer B]\nsecond") and "[Reference answer]\nref" in body
    assert "[Reference answer]" not in judge_messages("Q?", "a", "b")[1]["content"]


def test_reference_metrics_score_korean_text():
    same = reference_scores("서울은 한국의 수도입니다.", "서울은 한국의 수도입니다.")
    assert same["rouge_l"] == pytest.approx(1.0) and same["exact"] is True and same["bleu"] > 99
    part = reference_scores("서울은 수도입니다", "서울은 한국의 수도입니다")
    assert 0 < part["rouge_l"] < 1  # rouge-score's stock tokenizer would give 0 for Hangul
    none = reference_scores("Paris", "서울")
    assert none["rouge_l"] == 0 and none["exact"] is False


def test_exact_match_ignores_case_punctuation_and_spacing():
    assert normalise("  Hello,   WORLD! ") == normalise("hello world")
    assert reference_scores("The answer is 42.", "the answer is 42")["exact"] is True
    assert reference_scores("The answer is 43", "the answer is 42")["exact"] is False


def test_corpus_bleu_and_lengths():
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100)
    assert corpus_bleu([], []) == 0.0
    stats = length_stats(["abcd", "ab", "abcdef"])
    assert stats["chars_mean"] == 4 and stats["chars_median"] == 4 and stats["chars_max"] == 6


def test_pasted_prompts_take_tabs_and_jsonl():
    exs = from_pasted("What is 2+2?\t4\n\n  Say hi  \n"
                      '{"prompt": "Capital of Korea?", "reference": "Seoul", "category": "geo"}\n'
                      '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}')
    assert [e.question for e in exs] == ["What is 2+2?", "Say hi", "Capital of Korea?", "Hi"]
    assert [e.reference for e in exs] == ["4", None, "Seoul", "Hello!"]
    assert exs[2].category == "geo" and exs[3].messages == [{"role": "user", "content": "Hi"}]
    with pytest.raises(PromptSetError, match="line 2"):
        from_pasted('ok\n{"prompt": ')
    with pytest.raises(PromptSetError):
        from_pasted(" \n \n")


def test_a_conversation_is_cut_at_its_last_reply():
    conv = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "U2"}, {"role": "assistant", "content": "A2"}]
    ex = from_conversation(conv)
    assert ex.reference == "A2" and ex.messages == conv[:4] and ex.question == "U2"
    assert from_conversation([{"role": "assistant", "content": "alone"}]) is None
