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


def pairs_frame(lang: str, rows: list, first: int = 0) -> pd.DataFrame:
    """Preference pairs in the rows table's columns: the prompt's last user turn, then ✓ chosen / ✗ rejected."""
    cols = [t(lang, f"ds.col.{c}") for c in ("id", "category", "split", "turns", "user", "assistant")]
    data = []
    for i, r in enumerate(rows, first + 1):
        user = next((m["content"] for m in reversed(r.prompt) if m["role"] == "user"), "")
        split = t(lang, f"ds.split.{r.split}") if r.split in ("train", "eval") else (r.split or "")
        data.append([r.line or i, r.category or "", split, len(r.prompt) + 1, _cut(user),
                     f"✓ {_cut(r.chosen, 60)}  ✗ {_cut(r.rejected, 60)}"])
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
        if getattr(d, "kind", "chat") == "preference":  # pairs live in their versions, not in a working copy
            rows = t(lang, "ds.n_pairs", n=f"{last.row_count if last else 0:,}")
        else:
            rows = t(lang, "ds.n_rows", n=f"{draft.count(d.id):,}")
        out.append((f"{d.name} · {rows}" + (f" · v{last.version}" if last else "") + owner, str(d.id)))
    return out


ROLE_KEYS = {"user": "ds.role.user", "assistant": "ds.role.assistant", "system": "ds.role.system"}


def _turn_changes(old: list[dict], new: list[dict]) -> list[tuple[str, str, str]]:
    """(role, old text, new text) for each turn that differs between two versions of a row ("" where one has none)."""
    out = []
    for i in range(max(len(old), len(new))):
        a, b = (old[i] if i < len(old) else None), (new[i] if i < len(new) else None)
        if a != b:
            out.append(((b or a)["role"], (a or {}).get("content", ""), (b or {}).get("content", "")))
    return out


def diff_html(lang: str, old_version: int, new_version: int, d: object, limit: int = 8) -> str:
    """The version diff: its counts, then the changed rows turn by turn (old → new), the added and the removed rows."""
    esc = html.escape
    parts = [t(lang, "ds.diff", old=old_version, new=new_version, added=len(d.added), removed=len(d.removed),
               changed=len(d.changed))]

    def first_user(msgs: list[dict]) -> str:
        return next((m["content"] for m in msgs if m["role"] == "user"), "")

    def more(n: int) -> str:
        return f"<li class='ds-note'>{esc(t(lang, 'ds.diff_more', n=n))}</li>" if n > 0 else ""

    if d.changed:
        items = []
        for old, new in d.changed[:limit]:
            turns = "".join(
                f"<div><b>{esc(t(lang, ROLE_KEYS[role]) if role in ROLE_KEYS else role)}</b>: <span class='ds-old'>{esc(_cut(a, 120)) or '∅'}</span>"
                f" → <span class='ds-new'>{esc(_cut(b, 120)) or '∅'}</span></div>"
                for role, a, b in _turn_changes(old.messages, new.messages))
            if (old.category or "") != (new.category or ""):
                turns += (f"<div><b>{esc(t(lang, 'ds.col.category'))}</b>: <span class='ds-old'>{esc(old.category or '∅')}</span>"
                          f" → <span class='ds-new'>{esc(new.category or '∅')}</span></div>")
            items.append(f"<li>“{esc(_cut(first_user(new.messages), 80))}”{turns}</li>")
        parts.append(f"<div class='ds-diff-head'>{esc(t(lang, 'ds.diff_changed'))}</div><ul>{''.join(items)}"
                     f"{more(len(d.changed) - limit)}</ul>")
    for rows, key, cls in ((d.added, "ds.diff_added", "ds-new"), (d.removed, "ds.diff_removed", "ds-old")):
        if rows:
            items = "".join(
                f"<li class='{cls}'>“{esc(_cut(first_user(r.messages), 80))}” → "
                f"{esc(_cut(next((m['content'] for m in r.messages if m['role'] == 'assistant'), ''), 80))}</li>"
                for r in rows[:limit])
            parts.append(f"<div class='ds-diff-head'>{esc(t(lang, key))}</div><ul>{items}{more(len(rows) - limit)}</ul>")
    return "\n\n".join(parts)
