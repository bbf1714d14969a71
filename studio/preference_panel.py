"""The Datasets tab's preference panel: pairs (prompt, chosen, rejected) from the person's own votes, 👍/👎,
regenerations and judged evaluations — filters, a preview with what was skipped and why, and Save as a new
preference dataset (engines.datasets.preferences / preference_files, the same calls as POST /api/v1/preferences/…)."""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from engines.datasets.formats import PreferenceRow
from engines.datasets.preference_files import create_preference_dataset
from engines.datasets.preferences import SOURCES, BuildReport, PreferenceFilters, build_preferences
from engines.datasets.versions import NameTaken
from studio.i18n import Translatable, strings, t
from studio.people import actor_of
from studio.services import Services

PREVIEW_ROWS = 50
COLUMNS = ("prompt", "chosen", "rejected", "source", "models", "split")


@dataclass
class PreferencePanel:
    build_btn: gr.Button
    save_btn: gr.Button


def source_choices(lang: str) -> list[tuple[str, str]]:
    return [(t(lang, f"pref.source.{s}"), s) for s in SOURCES]


def _cut(text: str, n: int = 140) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def pairs_frame(lang: str, rows: list[PreferenceRow], limit: int = PREVIEW_ROWS) -> pd.DataFrame:
    """The first pairs as the preview table shows them: the last question (earlier turns counted), both answers,
    where the pair came from, the models (chosen ▸ rejected) and the split."""
    data = []
    for r in rows[:limit]:
        earlier = len([m for m in r.prompt[:-1] if m["role"] != "system"])
        prompt = _cut(r.prompt[-1]["content"]) + (f"  (+{earlier})" if earlier else "")
        models = r.source.get("models") or {}
        data.append([prompt, _cut(r.chosen), _cut(r.rejected), t(lang, f"pref.source.{r.source.get('kind')}"),
                     f"{models.get('chosen') or '?'} ▸ {models.get('rejected') or '?'}",
                     t(lang, f"ds.split.{r.split}") if r.split in ("train", "eval") else (r.split or "")])
    return pd.DataFrame(data, columns=[t(lang, f"pref.col.{c}") for c in COLUMNS])


def skip_reason(lang: str, reason: str) -> str:
    key = f"pref.skip.{reason}"
    return t(lang, key) if key in strings("en") else reason


def summary_html(lang: str, report: BuildReport) -> str:
    """Pairs per source, train/eval, and what was left out per reason (data-rows for scripts and tests)."""
    n_eval = sum(1 for r in report.rows if r.split == "eval")
    per_source = " · ".join(f"{t(lang, f'pref.source.{s}')} {n}" for s, n in report.counts.items() if n)
    head = t(lang, "pref.summary", rows=len(report.rows), train=len(report.rows) - n_eval, eval=n_eval)
    skipped = " · ".join(f"{skip_reason(lang, k)} {n}" for k, n in sorted(report.skipped.items(), key=lambda kv: -kv[1]))
    parts = [f"<b>{html.escape(head)}</b>"]
    if per_source:
        parts.append(html.escape(per_source))
    parts.append(html.escape(f"{t(lang, 'pref.skipped')}: {skipped or t(lang, 'pref.skipped_none')}"))
    if not report.rows:
        parts.append(html.escape(t(lang, "pref.none_found")))
    shown = min(len(report.rows), PREVIEW_ROWS)
    if len(report.rows) > shown:
        parts.append(html.escape(t(lang, "pref.first_n", n=shown)))
    return (f"<div class='pref-summary' data-testid='pref-summary' data-rows='{len(report.rows)}' "
            f"data-skipped='{html.escape(json.dumps(report.skipped), quote=True)}'>" + "<br>".join(parts) + "</div>")


def _names(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.strip() for n in (text or "").replace("\n", ",").split(",") if n.strip()))


def _day(text: str, lang: str, *, end: bool = False) -> dt.datetime | None:
    """A YYYY-MM-DD box as a naive UTC time: the day's start, or (the "to" box) the next day's start."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise gr.Error(t(lang, "pref.bad_date", value=text)) from None
    return dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time())


def build_preference_panel(services: Services, tr: Translatable, lang_state: Any) -> PreferencePanel:
    settings = services.settings
    lang0 = settings.ui_language

    with tr.add(gr.Accordion(t(lang0, "pref.title"), open=False, elem_id="pref-panel"), label="pref.title"):
        tr.add(gr.Markdown(t(lang0, "pref.help"), elem_id="pref-help"), value="pref.help")
        sources = tr.add(gr.CheckboxGroup(source_choices(lang0), value=list(SOURCES), label=t(lang0, "pref.sources"),
                                          elem_id="pref-sources"), label="pref.sources")
        with gr.Row(equal_height=True):
            since = tr.add(gr.Textbox(label=t(lang0, "pref.since"), placeholder="YYYY-MM-DD", elem_id="pref-since", min_width=130),
                           label="pref.since")
            until = tr.add(gr.Textbox(label=t(lang0, "pref.until"), placeholder="YYYY-MM-DD", elem_id="pref-until", min_width=130),
                           label="pref.until")
            models = tr.add(gr.Textbox(label=t(lang0, "pref.models"), placeholder=t(lang0, "pref.comma"), elem_id="pref-models",
                                       scale=2), label="pref.models", placeholder="pref.comma")
            category = tr.add(gr.Textbox(label=t(lang0, "pref.category"), elem_id="pref-category"), label="pref.category")
            voters = tr.add(gr.Textbox(label=t(lang0, "pref.voters"), placeholder=t(lang0, "pref.comma"), elem_id="pref-voters"),
                            label="pref.voters", placeholder="pref.comma")
        with gr.Row(equal_height=False):
            dedupe = tr.add(gr.Checkbox(True, label=t(lang0, "pref.dedupe"), elem_id="pref-dedupe"), label="pref.dedupe")
            eval_fraction = tr.add(gr.Number(0.1, minimum=0, maximum=0.5, step=0.05, label=t(lang0, "pref.eval_fraction"),
                                             elem_id="pref-eval-fraction", min_width=120), label="pref.eval_fraction")
            seed = tr.add(gr.Number(0, precision=0, minimum=0, label=t(lang0, "pref.seed"), elem_id="pref-seed", min_width=100),
                          label="pref.seed")
            build_btn = tr.add(gr.Button(t(lang0, "pref.build"), elem_id="pref-build", scale=0, min_width=180), value="pref.build")
        summary = gr.HTML("", elem_id="pref-summary-box", padding=False)
        # Headers and the source column follow the language switch, like the other tables (the rest is data).
        table = tr.add(gr.Dataframe(pairs_frame(lang0, []), interactive=False, wrap=True, max_height=380, elem_id="pref-table",
                                    column_widths=["24%", "22%", "22%", "9%", "15%", "8%"]),
                       headers=tuple(f"pref.col.{c}" for c in COLUMNS), cells={3: tuple(f"pref.source.{s}" for s in SOURCES), 5: ("ds.split.train", "ds.split.eval")})
        with gr.Row(equal_height=False):
            name = tr.add(gr.Textbox(label=t(lang0, "pref.name"), elem_id="pref-name", scale=2), label="pref.name")
            note = tr.add(gr.Textbox(label=t(lang0, "pref.note"), elem_id="pref-note", scale=2), label="pref.note")
            save_btn = tr.add(gr.Button(t(lang0, "pref.save"), variant="primary", elem_id="pref-save", scale=0, min_width=200),
                              value="pref.save")
        saved = gr.Markdown("", elem_id="pref-saved")

    filter_inputs = [sources, since, until, models, category, voters, dedupe, eval_fraction, seed]

    def _build(lang: str, request: gr.Request, sources_v: list[str] | None, since_v: str, until_v: str, models_v: str,
               category_v: str, voters_v: str, dedupe_v: bool, frac: float | None, seed_v: float | None) -> BuildReport:
        if not sources_v:
            raise gr.Error(t(lang, "pref.no_sources"))
        filters = PreferenceFilters(sources=tuple(sources_v), since=_day(since_v, lang), until=_day(until_v, lang, end=True),
                                    models=_names(models_v), category=(category_v or "").strip() or None,
                                    voters=_names(voters_v))
        try:
            return build_preferences(actor_of(request), filters, dedupe=bool(dedupe_v), eval_fraction=float(frac or 0),
                                     seed=int(seed_v or 0))
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    def preview(request: gr.Request, lang: str, *values: Any):  # the request first: Gradio injects it only before *values
        """Build the pairs (nothing is saved): the summary with skipped reasons, and the first pairs."""
        report = _build(lang, request, *values)
        return summary_html(lang, report), pairs_frame(lang, report.rows), ""

    def save(request: gr.Request, lang: str, name_v: str, note_v: str, *values: Any):
        """Build again with the same filters and save the pairs as version 1 of a new preference dataset."""
        report = _build(lang, request, *values)
        if not report.rows:
            raise gr.Error(t(lang, "pref.none_found"))
        try:
            version = create_preference_dataset(settings, (name_v or "").strip(), report.rows, actor=actor_of(request),
                                                note=(note_v or "").strip() or None)
        except NameTaken as exc:
            raise gr.Error(t(lang, "ds.name_taken", name=exc.name)) from None
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        msg = t(lang, "pref.saved", name=(name_v or "").strip(), version=version.version, rows=version.row_count)
        gr.Info(msg)
        return summary_html(lang, report), pairs_frame(lang, report.rows), f"<span id='pref-saved-ok'>✓</span> {html.escape(msg)}"

    build_btn.click(preview, [lang_state, *filter_inputs], [summary, table, saved], api_name="build_preferences")
    save_btn.click(save, [lang_state, name, note, *filter_inputs], [summary, table, saved], api_name="save_preferences")
    # The source names are choices, not a label: relabelled here when the language changes (and at page load).
    lang_state.change(lambda lang, picked: gr.update(choices=source_choices(lang), value=picked), [lang_state, sources],
                      [sources], api_name=False, show_progress="hidden", queue=False)
    return PreferencePanel(build_btn=build_btn, save_btn=save_btn)
