"""What the History tab renders: the timeline table and a model's lineage (plain functions)."""

from __future__ import annotations

import datetime as dt
import html
import json

import pandas as pd

from engines.history.lineage import Lineage
from storage.history import Item
from studio.i18n import t

RANGES = {"0": None, "1": 1, "7": 7, "30": 30, "365": 365}


def since_of(value: str | None) -> dt.datetime | None:
    days = RANGES.get(str(value or "0"))
    return dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=days) if days else None


def items_table(lang: str, items: list[Item]) -> pd.DataFrame:
    cols = [t(lang, f"hist.col.{c}") for c in ("when", "kind", "title", "detail", "match")]
    rows = [[f"{i.at:%Y-%m-%d %H:%M}", t(lang, f"hist.kind.{i.kind}"), i.title, i.detail,
             i.snippet.replace("\n", " ")] for i in items]
    return pd.DataFrame(rows, columns=cols)


def lineage_markdown(lang: str, lin: Lineage) -> str:
    """The chain as an indented list: model ← run ← dataset version ← chats, then evaluations and battles."""
    esc = html.escape
    lines = [f"### {esc(lin.model)} · {t(lang, f'hist.model_kind.{lin.kind}')}"]
    if lin.parent:
        lines.append(f"- {t(lang, 'hist.lin.base')}: **{esc(lin.parent)}**")
    if lin.run:
        r = lin.run
        metrics = json.loads(r.metrics or "{}")
        loss = metrics.get("train_loss") or metrics.get("loss")
        lines.append(f"- {t(lang, 'hist.lin.run')}: **#{r.id} {esc(r.name)}** ({t(lang, f'ft.status.{r.status}')}, {r.method}, "
                     f"{r.step}/{r.total_steps or '?'} {t(lang, 'hist.lin.steps')}"
                     + (f", {t(lang, 'ft.col.loss')} {loss:.4g}" if isinstance(loss, int | float) else "") + ")")
        if lin.version:
            v = lin.version
            lines.append(f"  - {t(lang, 'hist.lin.dataset')}: **{esc(v.dataset.name)} v{v.version}** ({t(lang, 'ds.n_rows', n=v.row_count)})")
        elif lin.dataset:
            lines.append(f"  - {t(lang, 'hist.lin.dataset')}: `{esc(lin.dataset)}`")
        if lin.source_chats:
            chats_list = ", ".join(f"#{c.id} {esc(c.title)}" for c in lin.source_chats[:10])
            more = f" (+{len(lin.source_chats) - 10})" if len(lin.source_chats) > 10 else ""
            lines.append(f"    - {t(lang, 'hist.lin.chats', n=len(lin.source_chats))}: {chats_list}{more}")
    if lin.adapters:
        lines.append(f"- {t(lang, 'hist.lin.adapters')}: " + ", ".join(f"**{esc(a.name)}**" for a in lin.adapters))
    if lin.evaluations:
        lines.append(f"- {t(lang, 'hist.lin.evals', n=len(lin.evaluations))}: "
                     + ", ".join(f"#{e.id} {esc(e.name)}" for e in lin.evaluations[:10]))
    lines.append(f"- {t(lang, 'hist.lin.battles', n=lin.battles, won=lin.battles_won)}")
    if lin.run is None and not lin.adapters and lin.kind == "unknown":
        lines.append(f"\n{t(lang, 'hist.lin.nothing')}")
    if lin.curves_source:
        lines.append(f"\n<sub>{t(lang, 'hist.lin.curves_from', source=lin.curves_source)}</sub>")
    return "\n".join(lines)
