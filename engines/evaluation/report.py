"""Scores of a batch evaluation: per-example table, per-model summary, CSV export."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from engines.evaluation.judge import length_controlled_win_rate, win_rate
from engines.evaluation.metrics import corpus_bleu, length_stats
from storage import evals

COLUMNS = ["example", "model", "category", "question", "reference", "output", "error", "attempts", "completion_tokens",
           "latency_ms", "rouge_l", "bleu", "exact", "judge_outcome", "judge_error"]


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS)


def results_frame(run: Any) -> pd.DataFrame:
    """One row per example × model, with the question and reference beside the answer."""
    examples = evals.loads(run.examples, [])
    rows = []
    for r in evals.results(run.id):
        ex = examples[r.example] if r.example < len(examples) else {}
        question = next((m["content"] for m in reversed(ex.get("messages", [])) if m["role"] == "user"), "")
        detail = evals.loads(r.judge_detail, {})
        rows.append({
            "example": r.example, "model": r.model, "category": ex.get("category"), "question": question,
            "reference": ex.get("reference"), "output": r.output, "error": r.error, "attempts": r.attempts,
            "completion_tokens": r.completion_tokens, "latency_ms": r.latency_ms, "rouge_l": r.rouge_l, "bleu": r.bleu,
            "exact": r.exact, "judge_outcome": r.judge_outcome, "judge_error": detail.get("error"),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def summarise(run: Any, frame: pd.DataFrame | None = None) -> dict[str, Any]:
    """Per-model figures: answered/failed, reference metrics, lengths, judge counts, win rate and its LC variant."""
    frame = results_frame(run) if frame is None else frame
    models = evals.loads(run.models, [])
    baseline = models[0] if models else None
    base_len = {}
    if baseline is not None:
        b = frame[(frame.model == baseline) & frame.output.notna()]
        base_len = dict(zip(b.example, b.output.str.len(), strict=True))
    out: dict[str, Any] = {"models": {}, "baseline": baseline, "judge": run.judge, "examples": len(evals.loads(run.examples, []))}
    for m in models:
        f = frame[frame.model == m]
        ok = f[f.output.notna()]
        scored = ok[ok.rouge_l.notna()]
        row: dict[str, Any] = {
            "results": len(f), "answered": len(ok), "failed": int(f.error.notna().sum()),
            "rouge_l": _mean(scored.rouge_l), "bleu": corpus_bleu(list(scored.output), list(scored.reference)) if len(scored) else None,
            "exact_match": _mean(scored.exact.astype(float)) if len(scored) else None,
            "completion_tokens_mean": _mean(ok.completion_tokens.dropna()),
            "latency_ms_mean": _mean(ok.latency_ms.dropna()),
            **length_stats(list(ok.output)),
        }
        if run.judge and m != baseline:
            judged = f[f.judge_outcome.notna()]
            outcomes = list(judged.judge_outcome)
            row.update({o: outcomes.count(o) for o in ("win", "loss", "tie", "error", "skipped")})
            row["win_rate"] = win_rate(outcomes)
            pairs = [(o, len(t), base_len[e]) for o, t, e in zip(judged.judge_outcome, judged.output.fillna(""), judged.example, strict=True)
                     if e in base_len]
            row["lc_win_rate"] = length_controlled_win_rate([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs]) if pairs else None
        out["models"][m] = row
    return out


def _mean(series: pd.Series) -> float | None:
    if series is None or not len(series):
        return None
    v = float(series.astype(float).mean())
    return None if math.isnan(v) else v


def export_csv(run: Any, folder: Path) -> Path:
    """Write the per-example table (UTF-8 with BOM so spreadsheet apps read Korean right)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / csv_name(run)
    results_frame(run).to_csv(path, index=False, encoding="utf-8-sig")
    return path


def csv_name(run: Any) -> str:
    """The results file's name: eval-ID-NAME.csv (letters, digits, '-' and '_' only)."""
    return f"eval-{run.id}-{_slug(run.name)}.csv"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60] or "eval"
