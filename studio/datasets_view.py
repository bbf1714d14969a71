"""What the Datasets tab renders: the page table, problems, the template preview, stats frames."""

from __future__ import annotations

import html
import json
from collections import Counter

import pandas as pd

from engines.datasets import draft
from engines.datasets.draft import Page
from engines.datasets.formats import Problem
from storage import datasets as store
from studio.i18n import t

TOKEN_BINS = [0, 32, 64, 128, 256, 512, 1024, 2048, 4096, 10**9]


def _cut(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def rows_frame(lang: str, page: Page) -> pd.DataFrame:
    cols = [t(lang, f"ds.col.{c}") for c in ("id", "category", "split", "turns", "user", "assistant")]
    data = []
    for r in page.rows:
        msgs = json.loads(r.messages)
        user = next((m["content"] for m in msgs if m["role"] == "user"), "")
        reply = next((m["content"] for m in reversed(msgs) if m["role"] == "assistant"), "")
        split = t(lang, f"ds.split.{r.split}") if r.split in ("train", "eval") else (r.split or "")
        data.append([r.id, r.category or "", split, len(msgs), _cut(user), _cut(reply)])
    return pd.DataFrame(data, columns=cols)


def problems_frame(lang: str, problems: list[Problem], limit: int = 500) -> pd.DataFrame:
    cols = [t(lang, f"ds.col.{c}") for c in ("row", "severity", "kind", "message")]
    return pd.DataFrame([[p.row, p.severity, p.kind, p.message] for p in problems[:limit]], columns=cols)


def summary_markdown(lang: str, fmt: str | None, n_rows: int, problems: list[Problem]) -> str:
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    head = t(lang, "ds.detected", format=t(lang, f"ds.format.{fmt}") if fmt else "?", rows=f"{n_rows:,}")
    if not problems:
        return f"<span class='ds-ok'>✓</span> {head} · {t(lang, 'ds.no_problems')}"
    return (f"{head} · <span class='ds-bad'>{t(lang, 'ds.errors', n=len(errors), rows=len({p.row for p in errors}))}</span>"
            f" · {t(lang, 'ds.warnings', n=len(warnings))}")


def preview_html(lang: str, segments: list[tuple[str, bool]]) -> str:
    """The row as the trainer sees it: trained text highlighted, the rest (not trained) greyed."""
    parts = [
        f"<span class='{'ds-trained' if trained else 'ds-masked'}'>{html.escape(text)}</span>" for text, trained in segments
    ]
    legend = (f"<div class='ds-legend'><span class='ds-trained'>{t(lang, 'ds.trained')}</span> "
              f"<span class='ds-masked'>{t(lang, 'ds.masked')}</span></div>")
    return f"{legend}<pre class='ds-preview' data-testid='ds-preview'>{''.join(parts)}</pre>"


TOKEN_LABELS = [f"<{TOKEN_BINS[i + 1]}" if TOKEN_BINS[i + 1] < 10**9 else f"≥{TOKEN_BINS[i]}" for i in range(len(TOKEN_BINS) - 1)]


def token_histogram(per_role: dict[str, list[int]]) -> pd.DataFrame:
    """Messages per token-length bin, per role (for a bar plot; bins in TOKEN_LABELS order)."""
    labels = TOKEN_LABELS
    data = []
    for role, counts in per_role.items():
        binned = pd.cut(pd.Series(counts, dtype="int64"), TOKEN_BINS, right=False, labels=labels)
        for label, n in binned.value_counts(sort=False).items():
            data.append({"tokens": str(label), "messages": int(n), "role": role})
    return pd.DataFrame(data, columns=["tokens", "messages", "role"]).astype({"messages": "int64"})


def turns_histogram(turns: list[int]) -> pd.DataFrame:
    c = Counter(turns)
    return pd.DataFrame([{"turns": str(k), "rows": v} for k, v in sorted(c.items())], columns=["turns", "rows"]).astype({"rows": "int64"})


def categories_frame(pairs: list[tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"category": c, "rows": n} for c, n in pairs[:30]], columns=["category", "rows"]).astype({"rows": "int64"})


def dataset_choices(lang: str) -> list[tuple[str, str]]:
    out = []
    for d in store.list_datasets():
        last = store.latest_version(d.id)
        owner = f" · {d.owner_name}" if getattr(d, "owner_name", None) else ""  # visible to the team: say whose it is
        rows = t(lang, "ds.n_rows", n=f"{draft.count(d.id):,}")
        out.append((f"{d.name} · {rows}" + (f" · v{last.version}" if last else "") + owner, str(d.id)))
    return out
