"""What the batch-evaluation screen shows: progress bar, summary table, plots, filtered examples (plain functions)."""

from __future__ import annotations

import html
import time
from typing import Any

import pandas as pd

from studio.i18n import t

OUTCOME_FILTERS = ("all", "win", "loss", "tie", "error", "skipped", "failed")
PHASES = ("queued", "generate", "judge", "score", "log")
SUMMARY_COLUMNS = ("model", "answered", "rouge_l", "bleu", "exact", "chars", "tokens", "win_rate", "lc_win_rate", "wlte")
EXAMPLE_COLUMNS = ("example", "model", "question", "output", "rouge_l", "bleu", "exact", "judge")


def progress_html(lang: str, run: Any, progress: Any | None) -> str:
    """A bar for the running phase (with count, rate and ETA), or the final status with its error."""
    if run is None:
        return ""
    status = run.status
    phase = (progress.phase if progress and status in ("queued", "running") else None) or run.phase or status
    done, total = (progress.done, progress.total) if progress else (0, 0)
    pct = 100.0 * done / total if total else (100.0 if status == "completed" else 0.0)
    detail = ""
    if progress and status in ("queued", "running") and total:
        elapsed = max(1e-6, time.monotonic() - progress.started)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else None
        detail = t(lang, "ev.progress_detail", done=done, total=total, rate=f"{rate:.2f}",
                   eta=f"{eta:.0f} s" if eta is not None else "–")
    elif status == "completed":
        detail = t(lang, "ev.completed")
    error = f"<div class='ev-error'>{html.escape(run.error)}</div>" if run.error and status != "completed" else ""
    label = t(lang, f"ev.phase.{phase}") if phase in (*PHASES, "completed", "failed", "cancelled", "interrupted") else phase
    return (f"<div class='ft-progress {status}' id='ev-progress-box' data-status='{status}' data-phase='{html.escape(str(phase))}' "
            f"data-done='{done}' data-total='{total}'>"
            f"<div class='ft-progress-head'><b>{html.escape(label)}</b><span>{html.escape(detail)}</span></div>"
            f"<div class='ft-bar'><div class='ft-bar-fill' style='width:{pct:.1f}%'></div></div>{error}</div>")


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _num(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def summary_table(lang: str, summary: dict[str, Any]) -> pd.DataFrame:
    cols = [t(lang, f"ev.col.{k}") for k in SUMMARY_COLUMNS]
    rows = []
    baseline = summary.get("baseline")
    for model, s in (summary.get("models") or {}).items():
        judged = "win_rate" in s
        rows.append([
            model + (f" ({t(lang, 'ev.baseline')})" if model == baseline and summary.get("judge") else ""),
            f"{s.get('answered', 0)}/{s.get('results', 0)}",
            _num(s.get("rouge_l")), _num(s.get("bleu"), 1), _pct(s.get("exact_match")),
            _num(s.get("chars_mean"), 0), _num(s.get("completion_tokens_mean"), 1),
            _pct(s.get("win_rate")) if judged else "–", _pct(s.get("lc_win_rate")) if judged else "–",
            f"{s.get('win', 0)}/{s.get('loss', 0)}/{s.get('tie', 0)}/{s.get('error', 0)}" if judged else "–",
        ])
    return pd.DataFrame(rows, columns=cols)


def score_bars(lang: str, summary: dict[str, Any]) -> str:
    """Horizontal bars per model: win rate and its length-controlled variant (50% = as good as the baseline),
    then ROUGE-L and BLEU. HTML rather than a plot: long model names stay readable and rates never stack."""
    models = summary.get("models") or {}
    if not models:
        return ""
    metrics = [("win_rate", 100, "%"), ("lc_win_rate", 100, "%"), ("rouge_l", 100, ""), ("bleu", 1, "")]
    blocks = []
    for model, s in models.items():
        bars = []
        for key, scale, unit in metrics:
            v = s.get(key)
            if v is None:
                continue
            pct = max(0.0, min(100.0, v * scale))
            shown = f"{pct:.1f}{unit}" if unit else (f"{v:.3f}" if key == "rouge_l" else f"{v:.1f}")
            mid = "<i class='ev-mid'></i>" if unit == "%" else ""
            bars.append(f"<div class='ev-bar-row' data-metric='{key}' data-value='{v:.4f}'><span>{html.escape(t(lang, f'ev.col.{key}'))}"
                        f"</span><div class='ev-bar'><div class='ev-fill {key}' style='width:{pct:.1f}%'></div>{mid}</div>"
                        f"<b>{shown}</b></div>")
        if bars:
            base = f" <small>({html.escape(t(lang, 'ev.baseline'))})</small>" if model == summary.get("baseline") and summary.get("judge") else ""
            blocks.append(f"<div class='ev-model' data-model='{html.escape(model)}'><div class='ev-model-name'>"
                          f"{html.escape(model)}{base}</div>{''.join(bars)}</div>")
    return f"<div class='ev-bars' data-testid='ev-bars'>{''.join(blocks)}</div>" if blocks else ""


def judge_note_text(lang: str, summary: dict[str, Any]) -> str:
    """Say plainly when the judge gave no usable verdicts (a small judge often cannot follow the format)."""
    if not summary.get("judge"):
        return ""
    rows = [s for m, s in (summary.get("models") or {}).items() if m != summary.get("baseline")]
    errors = sum(s.get("error", 0) for s in rows)
    valid = sum(s.get("win", 0) + s.get("loss", 0) + s.get("tie", 0) for s in rows)
    if errors and not valid:
        return t(lang, "ev.judge_failed", n=errors, judge=summary["judge"])
    if errors:
        return t(lang, "ev.judge_some_errors", n=errors, valid=valid)
    return ""


def filter_examples(frame: pd.DataFrame, model: str | None, outcome: str | None, query: str | None) -> pd.DataFrame:
    """Rows matching the model, the judge outcome ('failed' = no answer) and a case-insensitive text search."""
    f = frame
    if model and model != "all":
        f = f[f.model == model]
    if outcome == "failed":
        f = f[f.output.isna()]
    elif outcome and outcome != "all":
        f = f[f.judge_outcome == outcome]
    q = (query or "").strip().casefold()
    if q:
        hay = (f.question.fillna("") + "\n" + f.output.fillna("") + "\n" + f.reference.fillna("")).str.casefold()
        f = f[hay.str.contains(q, regex=False)]
    return f


def examples_table(lang: str, frame: pd.DataFrame, limit: int = 500) -> pd.DataFrame:
    """The per-example table as shown: long texts clipped (the detail panel shows them whole)."""
    cols = [t(lang, f"ev.ex.{k}") for k in EXAMPLE_COLUMNS]
    rows = []
    for r in frame.head(limit).itertuples(index=False):
        rows.append([
            int(r.example) + 1, r.model, _clip(r.question), _clip(r.output) if isinstance(r.output, str) else f"⚠ {_clip(r.error if isinstance(r.error, str) else '')}",
            _num(r.rouge_l if pd.notna(r.rouge_l) else None), _num(r.bleu if pd.notna(r.bleu) else None, 1),
            "✓" if r.exact is True else ("✗" if r.exact is False else "–"),
            t(lang, f"ev.outcome.{r.judge_outcome}") if isinstance(r.judge_outcome, str) else "–",
        ])
    return pd.DataFrame(rows, columns=cols)


def example_detail(lang: str, frame: pd.DataFrame, example: int, model: str, judge_raw: list[str] | None = None) -> str:
    """Markdown with the whole question, reference, answer and (when judged) both judge verdicts."""
    hit = frame[(frame.example == example) & (frame.model == model)]
    if hit.empty:
        return ""
    r = hit.iloc[0]
    parts = [f"**#{example + 1} · {model}**", f"**{t(lang, 'ev.ex.question')}**\n\n{_quote(r.question)}"]
    if isinstance(r.reference, str) and r.reference:
        parts.append(f"**{t(lang, 'ev.reference')}**\n\n{_quote(r.reference)}")
    parts.append(f"**{t(lang, 'ev.ex.output')}**\n\n{_quote(r.output) if isinstance(r.output, str) else '⚠ ' + str(r.error)}")
    for i, raw in enumerate(judge_raw or []):
        if raw:  # small judges ramble: the verdict line is what matters, so long text is cut in the middle
            shown = raw if len(raw) <= 900 else raw[:500] + "\n…\n" + raw[-300:]
            parts.append(f"**{t(lang, 'ev.judge_order', n=i + 1)}**\n\n{_quote(shown)}")
    if isinstance(r.judge_error, str) and r.judge_error:
        parts.append(f"⚠ {html.escape(r.judge_error)}")
    return "\n\n".join(parts)


def _clip(text: Any, n: int = 160) -> str:
    s = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text).replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def _quote(text: str) -> str:
    """Model text shown as a quote, escaped: an answer must not inject HTML into the page."""
    return "\n".join("> " + html.escape(line) for line in str(text).splitlines() or [""])
