"""Compare's judge-agreement panel: how often each LLM judge agrees with the person's own arena votes (rate and
Cohen's κ), the battles where it disagreed, and "Judge battles" to have a served model rate the voted battles it has
not rated yet, with live progress (engines.evaluation.agreement, the same calls as /api/v1/arena/agreement and
/api/v1/arena/judgements)."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from engines.evaluation import agreement
from engines.evaluation.agreement import JudgeAgreement
from storage.models import utcnow
from studio.choices import model_choices
from studio.i18n import Translatable, t
from studio.people import actor_of
from studio.services import Services

POLL_S = 0.5


@dataclass
class AgreementPanel:
    refresh: dict  # fn/inputs/outputs: the judge picker's served models and the tables (wired to the sub-tab's select)


def _label(lang: str, vote: str) -> str:
    return {"a": "A", "b": "B"}.get(vote) or t(lang, f"agr.vote.{vote}")


def agreement_frame(lang: str, rows: list[JudgeAgreement], unjudged: dict[str, int]) -> pd.DataFrame:
    cols = [t(lang, f"agr.col.{c}") for c in ("judge", "n", "agreement", "kappa", "errors", "unjudged")]
    data = [[r.judge, r.n, "—" if r.agreement is None else f"{100 * r.agreement:.0f}%",
             "—" if r.kappa is None else f"{r.kappa:.2f}", r.errors, unjudged.get(r.judge, 0)] for r in rows]
    return pd.DataFrame(data, columns=cols)


def disagreements_frame(lang: str, rows: list[JudgeAgreement], limit: int = 200) -> pd.DataFrame:
    cols = [t(lang, f"agr.col.{c}") for c in ("judge", "battle", "prompt", "model_a", "model_b", "you", "verdict")]
    data = []
    for r in rows:
        for d in r.disagreements:
            prompt = " ".join(d.prompt.split())
            data.append([r.judge, d.battle_id, prompt if len(prompt) <= 120 else prompt[:119] + "…", d.model_a, d.model_b,
                         _label(lang, d.human), _label(lang, d.judge)])
    return pd.DataFrame(data[:limit], columns=cols)


def progress_html(lang: str, done: int, total: int, judge: str, status: str, counts: dict[str, int] | None = None) -> str:
    """The judging bar: data-status is running | completed | idle; data-done / data-total count battles."""
    pct = 100.0 * done / total if total else (100.0 if status == "completed" else 0.0)
    if status == "completed":
        text = t(lang, "agr.judged", n=done, judge=judge) if total else t(lang, "agr.nothing_to_judge", judge=judge)
        if counts:
            text += " · " + " · ".join(f"{_label(lang, k) if k != 'error' else t(lang, 'agr.vote.error')} {n}"
                                       for k, n in sorted(counts.items()))
    else:
        text = t(lang, "agr.judging", done=done, total=total or "?", judge=judge)
    return (f"<div class='ft-progress {status}' id='agr-progress' data-status='{status}' data-done='{done}' "
            f"data-total='{total}'><div class='ft-bar'><div class='ft-bar-fill' style='width:{pct:.1f}%'></div></div>"
            f"<div class='ft-progress-meta'>{html.escape(text)}</div></div>")


def build_agreement_panel(services: Services, tr: Translatable, lang_state: Any) -> AgreementPanel:
    settings = services.settings
    lang0 = settings.ui_language

    tr.add(gr.Markdown(t(lang0, "agr.help"), elem_id="agr-help"), value="agr.help")
    with gr.Row(equal_height=False):
        judge = tr.add(gr.Dropdown([], value=None, allow_custom_value=True, label=t(lang0, "agr.judge"), elem_id="agr-judge",
                                   scale=3), label="agr.judge")
        limit = tr.add(gr.Number(20, precision=0, minimum=1, maximum=500, label=t(lang0, "agr.limit"), elem_id="agr-limit",
                                 min_width=120), label="agr.limit")
        max_tokens = tr.add(gr.Number(512, precision=0, minimum=8, maximum=4096, label=t(lang0, "agr.max_tokens"),
                                      elem_id="agr-max-tokens", min_width=120), label="agr.max_tokens")
        judge_btn = tr.add(gr.Button(t(lang0, "agr.judge_button"), variant="primary", elem_id="agr-judge-btn", scale=0,
                                     min_width=180), value="agr.judge_button")
    progress = gr.HTML("", elem_id="agr-progress-box", padding=False)
    with gr.Row(equal_height=False):
        since = tr.add(gr.Number(0, precision=0, minimum=0, label=t(lang0, "agr.since_days"), elem_id="agr-since", min_width=120),
                       label="agr.since_days")
        category = tr.add(gr.Textbox(label=t(lang0, "agr.category"), elem_id="agr-category"), label="agr.category")
        refresh_btn = tr.add(gr.Button(t(lang0, "agr.refresh"), size="sm", elem_id="agr-refresh", scale=0, min_width=120),
                             value="agr.refresh")
    voted_md = gr.Markdown("", elem_id="agr-voted")
    table = gr.Dataframe(agreement_frame(lang0, [], {}), interactive=False, wrap=True, elem_id="agr-table", max_height=260)
    tr.add(gr.Markdown(t(lang0, "agr.kappa_help"), elem_id="agr-kappa-help"), value="agr.kappa_help")
    tr.add(gr.Markdown(t(lang0, "agr.disagreements_md")), value="agr.disagreements_md")
    disagreements = gr.Dataframe(disagreements_frame(lang0, []), interactive=False, wrap=True, elem_id="agr-disagreements",
                                 max_height=360, column_widths=["14%", "7%", "35%", "14%", "14%", "8%", "8%"])

    def report(lang: str, since_days: float | None, category_v: str, request: gr.Request):
        """The agreement per judge on the person's own voted battles (in the filters), and the disagreements."""
        actor = actor_of(request)
        since_at = utcnow() - dt.timedelta(days=float(since_days)) if since_days else None
        cat = (category_v or "").strip() or None
        rows = agreement.judge_agreement(actor, since=since_at, category=cat)
        unjudged = {r.judge: agreement.unjudged_count(actor, r.judge) for r in rows}
        voted = agreement.voted_count(actor, since=since_at, category=cat)
        note = t(lang, "agr.voted", n=voted) + ("" if rows else f" · {t(lang, 'agr.no_judgements')}")
        return f"<span data-testid='agr-voted' data-voted='{voted}'>{html.escape(note)}</span>", \
            agreement_frame(lang, rows, unjudged), disagreements_frame(lang, rows)

    def pickers(lang: str, current: str | None, since_days: float | None, category_v: str, request: gr.Request):
        names = [v for _, v in model_choices(services)]
        value = current if current else (names[0] if names else None)
        return (gr.update(choices=names, value=value), *report(lang, since_days, category_v, request))

    async def run_judge(judge_v: str, limit_v: float | None, max_tokens_v: float | None, lang: str, since_days: float | None,
                        category_v: str, request: gr.Request):
        """Judge up to `limit` unrated battles one after another; the bar moves after each; the tables follow at the end."""
        actor = actor_of(request)
        name = (judge_v or "").strip()
        state = {"done": 0, "total": 0}

        def moved(done: int, total: int, _verdict: str) -> None:
            state.update(done=done, total=total)

        task = asyncio.create_task(agreement.judge_with_served(
            services.servers, name, actor, limit=int(limit_v or 20), timeout=float(settings.request_timeout),
            max_tokens=int(max_tokens_v or 512), progress=moved))
        try:
            while not task.done():
                yield progress_html(lang, state["done"], state["total"], name, "running"), gr.skip(), gr.skip(), gr.skip()
                await asyncio.wait({task}, timeout=POLL_S)
            try:
                counts = task.result()
            except ValueError as exc:
                raise gr.Error(str(exc)) from None
        finally:
            if not task.done():  # the page went away: stop judging (verdicts so far are stored)
                task.cancel()
        tables = await asyncio.to_thread(report, lang, since_days, category_v, request)
        yield (progress_html(lang, sum(counts.values()), state["total"], name, "completed", counts), *tables)

    filters = [lang_state, since, category]
    refresh = {"fn": pickers, "inputs": [lang_state, judge, since, category], "outputs": [judge, voted_md, table, disagreements],
               "show_progress": "hidden"}
    refresh_btn.click(report, filters, [voted_md, table, disagreements], api_name="judge_agreement")
    gr.on([since.submit, category.submit], report, filters, [voted_md, table, disagreements], api_name=False,
          show_progress="hidden")
    judge_btn.click(run_judge, [judge, limit, max_tokens, lang_state, since, category],
                    [progress, voted_md, table, disagreements], api_name="judge_battles", concurrency_limit=None,
                    show_progress="hidden")
    return AgreementPanel(refresh=refresh)
