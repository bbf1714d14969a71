"""Stored evaluation results → summary, tables, plots and CSV (a real SQLite file, no server)."""

from __future__ import annotations

import pandas as pd
import pytest

from engines.evaluation import report
from storage import evals
from studio.batch_eval_view import examples_table, filter_examples, score_bars, summary_table

EXAMPLES = [{"messages": [{"role": "user", "content": f"질문 {i}"}], "reference": f"답 {i}", "category": None} for i in range(4)]


@pytest.fixture
def run(db):
    r = evals.create_eval(name="t", models=["base", "tuned", "broken"], judge="judge", source="pasted", params={},
                          examples=EXAMPLES)
    for i in range(4):
        evals.save_result(r.id, i, "base", output=f"답 {i}", attempts=1, completion_tokens=3, rouge_l=1.0, bleu=100.0, exact=True)
        evals.save_result(r.id, i, "tuned", output=f"답 {i} 그리고 더 길게", attempts=1, completion_tokens=8, rouge_l=0.5,
                          bleu=20.0, exact=False, judge_outcome=["win", "tie", "loss", "error"][i],
                          judge_detail={"raw": ["[[A]]", "[[B]]"], "error": "judge output has no verdict" if i == 3 else None})
        evals.save_result(r.id, i, "broken", output=None, error="server down", attempts=3, judge_outcome="skipped")
    return evals.get_eval(r.id)


def test_summary_counts_every_result_and_scores_the_judged(run):
    s = report.summarise(run)
    assert s["baseline"] == "base" and s["examples"] == 4
    base, tuned, broken = (s["models"][m] for m in ("base", "tuned", "broken"))
    assert base["results"] == tuned["results"] == broken["results"] == 4
    assert broken["answered"] == 0 and broken["failed"] == 4 and broken["win_rate"] is None and broken["skipped"] == 4
    assert tuned["win_rate"] == pytest.approx((1 + 0.5) / 3)  # the judge error is left out, the tie counts half
    assert (tuned["win"], tuned["loss"], tuned["tie"], tuned["error"]) == (1, 1, 1, 1)
    assert tuned["lc_win_rate"] is not None and "win_rate" not in base
    assert base["rouge_l"] == 1.0 and base["exact_match"] == 1.0 and tuned["exact_match"] == 0.0


def test_a_retry_overwrites_the_failed_attempt(run):
    evals.save_result(run.id, 0, "broken", output="now it works", error=None, attempts=1)
    assert evals.count_results(run.id) == 12
    assert report.summarise(run)["models"]["broken"]["answered"] == 1


def test_tables_filters_and_plot(run):
    frame = report.results_frame(run)
    assert len(frame) == 12 and frame.question.iloc[0] == "질문 0"
    assert set(filter_examples(frame, "tuned", "all", "").example) == {0, 1, 2, 3}
    assert list(filter_examples(frame, "all", "win", "").model) == ["tuned"]
    assert list(filter_examples(frame, "all", "failed", "").model) == ["broken"] * 4
    assert len(filter_examples(frame, "all", "all", "더 길게")) == 4
    assert filter_examples(frame, "all", "all", "nothing like this").empty
    table = summary_table("en", report.summarise(run))
    assert list(table["Model"]) == ["base (baseline)", "tuned", "broken"]
    assert table.loc[1, "W/L/T/err"] == "1/1/1/1" and table.loc[1, "Win rate"] == "50.0%"
    bars = score_bars("en", report.summarise(run))
    assert "data-model='tuned'" in bars and "data-metric='win_rate' data-value='0.5000'" in bars
    assert bars.count("data-metric='win_rate'") == 1  # the baseline and the never-answering model have no win rate
    shown = examples_table("en", frame)
    assert shown.iloc[-1]["Answer"].startswith("⚠ server down")


def test_csv_export_reads_back_with_korean(run, tmp_path):
    path = report.export_csv(run, tmp_path)
    back = pd.read_csv(path, encoding="utf-8-sig")
    assert len(back) == 12 and back.question.iloc[0] == "질문 0"
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
