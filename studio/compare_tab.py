"""The Compare tab: 2–4 models answer one prompt side by side, a blind arena with votes, and the leaderboard."""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from engines.evaluation.compare import (
    BattleNotFound,
    draw_pair,
    record_vote,
    save_battle_answers,
    start_battle,
    stream_many,
    votes,
)
from engines.evaluation.ratings import leaderboard, win_matrix
from engines.inference import ChatParams, Delta, Finished, InferenceError
from storage import battles
from studio.choices import model_choices
from studio.i18n import Translatable, choices_for, t
from studio.people import actor_of
from studio.services import Services

MAX_PANES = 4
MODE_CHOICES = [("cmp.side_by_side", "side"), ("cmp.arena", "arena")]
BOARD_KEYS = tuple(f"cmp.col.{c}" for c in ("rank", "model", "score", "ci", "elo", "battles", "win_rate"))
STREAMING = {"concurrency_limit": None, "show_progress": "hidden"}


@dataclass
class CompareTab:
    models: list[gr.Dropdown]
    mode: gr.Radio
    panes: gr.Slider
    refresh: dict  # fn/inputs/outputs that fill the model pickers and the leaderboard (for the page's load and the tab's select)


def _labels(lang: str, round_: dict, n: int) -> list[str]:
    names = round_.get("models", [])
    if round_.get("blind") and not round_.get("revealed"):
        return [f"### {t(lang, 'cmp.model_x', x='AB'[i])}" if i < 2 else "" for i in range(n)]
    if len(names) == 2:  # a vote of two: the letters on the vote buttons name the panes
        return [f"### {'AB'[i]} · {html.escape(names[i])}" if i < 2 else "" for i in range(n)]
    return [f"### {html.escape(names[i])}" if i < len(names) else "" for i in range(n)]


def vote_prompt(lang: str, round_: dict) -> str:
    """What to do once the answers are in: a blind pair hides the names until the vote, a named pair is voted as it
    is, and three or four models are not a battle (votes are pairwise)."""
    if round_.get("battle_id"):
        return t(lang, "cmp.vote_now" if round_.get("blind") else "cmp.vote_now_named")
    return t(lang, "cmp.vote_two_only") if len(round_.get("models", [])) > 2 else ""


def interval_text(lang: str, r: Any) -> str:
    """The 95% interval, or "n/a" when resampling cannot give one (one battle: "1264 – 1264" said nothing)."""
    if r.battles < 2 or round(r.low) == round(r.high):
        return t(lang, "cmp.ci_na")
    return f"{r.low:.0f} – {r.high:.0f}"


def leaderboard_outputs(lang: str, since_days: float | None, category: str, blind_only: bool):
    vs = votes(since_days=since_days or None, category=(category or "").strip() or None, blind_only=bool(blind_only))
    board = leaderboard(vs, rounds=100)
    cols = [t(lang, k) for k in BOARD_KEYS]
    table = pd.DataFrame(
        [[i + 1, r.model, round(r.score), interval_text(lang, r), round(r.elo), r.battles, f"{100 * r.win_rate:.0f}%"]
         for i, r in enumerate(board)], columns=cols)
    models, rate, count = win_matrix(vs)
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    rows = []
    for i, m in enumerate(models):
        cells = []
        for j in range(len(models)):
            if i == j or count[i, j] == 0:
                cells.append("<td class='cmp-cell empty'>–</td>")
            else:
                r = rate[i, j]
                hue = int(120 * r) if not math.isnan(r) else 0
                cells.append(f"<td class='cmp-cell' style='background: hsla({hue}, 70%, 45%, 0.35)' "
                             f"title='{html.escape(t(lang, 'cmp.n_battles', n=count[i, j]), quote=True)}'>{100 * r:.0f}%"
                             f"<small> ({count[i, j]})</small></td>")
        rows.append(f"<tr><th>{html.escape(m)}</th>{''.join(cells)}</tr>")
    matrix = (f"<div class='cmp-matrix' data-testid='win-matrix'><p>{t(lang, 'cmp.matrix_help')}</p>"
              f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table></div>") if models else t(lang, "cmp.no_votes")
    counts = pd.DataFrame([{"model": r.model, "battles": r.battles} for r in board], columns=["model", "battles"]).astype({"battles": "int64"})
    return table, matrix, counts


def build_compare_tab(services: Services, tr: Translatable, lang_state: Any) -> CompareTab:
    settings = services.settings
    lang0 = settings.ui_language
    names0 = [settings.default_model]

    with gr.Row(equal_height=True):
        mode = tr.add(gr.Radio(choices_for(lang0, MODE_CHOICES), value="side",
                               label=t(lang0, "cmp.mode"), elem_id="cmp-mode", scale=2), label="cmp.mode", choices=MODE_CHOICES)
        panes = tr.add(gr.Slider(2, MAX_PANES, value=2, step=1, label=t(lang0, "cmp.panes"), elem_id="cmp-panes", scale=1),
                       label="cmp.panes")
        category = tr.add(gr.Textbox(label=t(lang0, "cmp.category"), elem_id="cmp-category", scale=1), label="cmp.category")
    with gr.Row(equal_height=True, elem_id="cmp-pickers") as pickers:
        models = [
            tr.add(gr.Dropdown(choices=names0, value=None, allow_custom_value=True, label=t(lang0, f"cmp.model_{i + 1}"),
                               elem_id=f"cmp-model-{i + 1}", visible=i < 2), label=f"cmp.model_{i + 1}")
            for i in range(MAX_PANES)
        ]
    with tr.add(gr.Accordion(t(lang0, "cmp.params"), open=False, elem_id="cmp-params"), label="cmp.params"):
        with gr.Row():
            system = tr.add(gr.Textbox(label=t(lang0, "chat.system_prompt"), scale=3, elem_id="cmp-system"), label="chat.system_prompt")
            temperature = tr.add(gr.Slider(0, 2, value=0.7, step=0.05, label=t(lang0, "chat.temperature")), label="chat.temperature")
            max_tokens = tr.add(gr.Slider(16, settings.vllm_max_model_len, value=min(256, settings.vllm_max_model_len), step=16,
                                          label=t(lang0, "chat.max_tokens"), elem_id="cmp-max-tokens"), label="chat.max_tokens")
    headers, bots, stats, columns = [], [], [], []
    with gr.Row(equal_height=False):
        for i in range(MAX_PANES):
            with gr.Column(visible=i < 2, min_width=260) as col:
                headers.append(gr.Markdown("", elem_id=f"cmp-head-{i + 1}"))
                bots.append(gr.Chatbot(height=380, elem_id=f"cmp-bot-{i + 1}", show_label=False, buttons=["copy"], layout="panel"))
                stats.append(gr.Markdown("", elem_id=f"cmp-stats-{i + 1}"))
            columns.append(col)
    with gr.Row(equal_height=True):
        prompt = tr.add(gr.Textbox(label=t(lang0, "cmp.prompt"), placeholder=t(lang0, "cmp.placeholder"), show_label=False, lines=1,
                                   scale=5, elem_id="cmp-prompt"), label="cmp.prompt", placeholder="cmp.placeholder")
        send = tr.add(gr.Button(t(lang0, "chat.send"), variant="primary", scale=1, elem_id="cmp-send"), value="chat.send")
        stop = tr.add(gr.Button(t(lang0, "cmp.stop_all"), variant="stop", scale=1, elem_id="cmp-stop"), value="cmp.stop_all")
        new_round = tr.add(gr.Button(t(lang0, "cmp.new_round"), scale=1, elem_id="cmp-new"), value="cmp.new_round")
    with gr.Row(visible=False, elem_id="cmp-votes") as vote_row:
        vote_btns = [tr.add(gr.Button(t(lang0, f"cmp.vote_{v}"), elem_id=f"cmp-vote-{v}"), value=f"cmp.vote_{v}") for v in battles.VOTES]
    reveal = gr.Markdown("", elem_id="cmp-reveal")
    round_state = gr.State({})
    with tr.add(gr.Accordion(t(lang0, "cmp.leaderboard"), open=True, elem_id="cmp-leaderboard"), label="cmp.leaderboard"):
        with gr.Row():
            since = tr.add(gr.Number(0, precision=0, minimum=0, label=t(lang0, "cmp.since_days"), elem_id="cmp-since"), label="cmp.since_days")
            board_category = tr.add(gr.Textbox(label=t(lang0, "cmp.category"), elem_id="cmp-board-category"), label="cmp.category")
            blind_only = tr.add(gr.Checkbox(False, label=t(lang0, "cmp.blind_only")), label="cmp.blind_only")
            refresh_btn = tr.add(gr.Button(t(lang0, "cmp.refresh"), size="sm", elem_id="cmp-refresh"), value="cmp.refresh")
        table0, matrix0, counts0 = leaderboard_outputs(lang0, None, "", False)
        board = tr.add(gr.Dataframe(table0, interactive=False, elem_id="cmp-board"), headers=BOARD_KEYS, cells={3: ("cmp.ci_na",)})
        with gr.Row():
            matrix = gr.HTML(matrix0, elem_id="cmp-matrix")
            counts_plot = tr.add(gr.BarPlot(counts0, x="model", y="battles", label=t(lang0, "cmp.battle_counts"),
                                            x_title=t(lang0, "cmp.col.model"), y_title=t(lang0, "cmp.col.battles"),
                                            elem_id="cmp-counts", y_lim=[0, None]),
                                 label="cmp.battle_counts", x_title="cmp.col.model", y_title="cmp.col.battles")

    # ---- handlers ------------------------------------------------------------------------------------------
    def layout(mode_v: str, n: float):
        n = 2 if mode_v == "arena" else int(n)
        return [gr.update(visible=mode_v != "arena")] + [gr.update(visible=i < n) for i in range(MAX_PANES)] \
            + [gr.update(visible=i < n) for i in range(MAX_PANES)] + [gr.update(visible=mode_v != "arena")]  # arena: always 2

    def refresh(lang: str, since_v: float, cat_v: str, blind_v: bool):
        """The served models in every picker and the leaderboard as it is now: the page was built at the app's start,
        before any server was ready and without the votes cast since."""
        names = [v for _, v in model_choices(services)] or names0
        return *[gr.update(choices=names) for _ in range(MAX_PANES)], *leaderboard_outputs(lang, since_v, cat_v, blind_v)

    async def run(request: gr.Request, prompt_v: str, mode_v: str, n: float, cat: str, sys_p: str, temp: float, mt: float,
                  state: dict, lang: str, *rest: Any):
        # `request` comes first: Gradio injects it by position, and only before a *args parameter.
        picked, histories = list(rest[:MAX_PANES]), [list(h or []) for h in rest[MAX_PANES:]]
        text = (prompt_v or "").strip()
        if not text:
            raise gr.Error(t(lang, "cmp.empty"))
        state = dict(state or {})
        if not state.get("models") or state.get("voted"):
            if mode_v == "arena":
                try:
                    pair = draw_pair([v for _, v in model_choices(services)])
                except ValueError as exc:
                    raise gr.Error(str(exc)) from None
                state = {"models": list(pair), "blind": True}
            else:
                chosen = [m for m in picked[: int(n)] if m]
                if len(chosen) < 2:
                    raise gr.Error(t(lang, "cmp.pick_two"))
                state = {"models": chosen, "blind": False}
            histories = [[] for _ in range(MAX_PANES)]
        names = state["models"]
        endpoints = []
        for name in names:
            ep = services.servers.endpoint_for(name)
            if ep is None:
                raise gr.Error(t(lang, "cmp.not_served", model=name))
            endpoints.append(ep)
        convs = []
        for i in range(len(names)):
            histories[i] = histories[i] + [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
            msgs = [{"role": "system", "content": sys_p}] if (sys_p or "").strip() else []
            msgs += [{"role": m["role"], "content": _flat(m["content"])} for m in histories[i][:-1]]
            convs.append(msgs)
        battle = None
        if len(names) == 2:
            battle = start_battle(actor_of(request), text, names[0], names[1], blind=bool(state.get("blind")),
                                  params={"temperature": temp, "max_tokens": int(mt), "system": sys_p or ""},
                                  category=(cat or "").strip() or None)
        state.update(battle_id=battle, voted=False, revealed=False)
        pane_stats = ["" for _ in range(MAX_PANES)]
        heads = _labels(lang, state, MAX_PANES)
        yield _frame(histories, heads, pane_stats, state, "", voting=False)
        last = 0.0
        async for i, ev in stream_many(endpoints, convs, ChatParams(temperature=float(temp), max_tokens=int(mt))):
            if isinstance(ev, Delta):
                histories[i][-1]["content"] += ev.text
            elif isinstance(ev, Finished):
                stats_line = t(lang, "chat.stats", ttft=f"{ev.ttft_ms or 0:.0f}", tps=f"{ev.tok_per_s or 0:.1f}",
                               tokens=ev.completion_tokens or 0)
                pane_stats[i] = f"<sub class='msg-stats'>{stats_line}</sub>"
            elif isinstance(ev, InferenceError):
                histories[i][-1]["content"] += f"\n\n⚠ {ev}"
                pane_stats[i] = f"<sub class='msg-stats'>{html.escape(ev.kind)}</sub>"
            now = time.monotonic()
            if now - last > 0.05 or not isinstance(ev, Delta):
                last = now
                yield _frame(histories, heads, pane_stats, state, "", voting=False)
        if battle:
            save_battle_answers(actor_of(request), battle, histories[0][-1]["content"], histories[1][-1]["content"])
        yield _frame(histories, heads, pane_stats, state, vote_prompt(lang, state), voting=bool(battle))

    def _frame(histories, heads, pane_stats, state, reveal_text, *, voting: bool):
        return [*[gr.update(value=h) for h in histories], *heads, *pane_stats, state, gr.update(visible=voting), reveal_text, ""]

    def vote(choice: str, state: dict, lang: str, since_v: float, cat_v: str, blind_v: bool, request: gr.Request):
        state = dict(state or {})
        if not state.get("battle_id") or state.get("voted"):
            raise gr.Error(t(lang, "cmp.no_battle"))
        try:
            b = record_vote(actor_of(request), state["battle_id"], choice)
        except (BattleNotFound, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        state.update(voted=True, revealed=True)
        winner = {"a": b.model_a, "b": b.model_b}.get(choice)
        said = t(lang, "cmp.revealed", a=b.model_a, b=b.model_b) if state.get("blind") else t(lang, "cmp.recorded")
        text = said + " " + (
            t(lang, "cmp.winner", model=winner) if winner else t(lang, f"cmp.result_{choice}"))
        return (state, gr.update(visible=False), html.escape(text),
                *_labels(lang, state, MAX_PANES), *leaderboard_outputs(lang, since_v, cat_v, blind_v))

    def _voter(choice: str):
        def on_vote(s: dict, lang: str, a: float, b_: str, c: bool, request: gr.Request):
            return vote(choice, s, lang, a, b_, c, request)
        return on_vote

    def clear():
        return [*[gr.update(value=[]) for _ in range(MAX_PANES)], *["" for _ in range(MAX_PANES)],
                *["" for _ in range(MAX_PANES)], {}, gr.update(visible=False), ""]

    # ---- wiring ------------------------------------------------------------------------------------------------
    outputs = [*bots, *headers, *stats, round_state, vote_row, reveal, prompt]
    gr.on([mode.change, panes.change], layout, [mode, panes], [pickers, *models, *columns, panes], api_name=False,
          show_progress="hidden")
    inputs = [prompt, mode, panes, category, system, temperature, max_tokens, round_state, lang_state, *models, *bots]
    ev_send = send.click(run, inputs, outputs, api_name="compare", **STREAMING)
    ev_submit = prompt.submit(run, inputs, outputs, api_name=False, **STREAMING)
    stop.click(None, None, None, cancels=[ev_send, ev_submit], api_name="compare_stop", api_visibility="private")
    new_round.click(clear, None, [*bots, *headers, *stats, round_state, vote_row, reveal], api_name="compare_new_round")
    board_inputs = [since, board_category, blind_only]
    for v, btn in zip(battles.VOTES, vote_btns, strict=True):
        btn.click(_voter(v), [round_state, lang_state, *board_inputs],
                  [round_state, vote_row, reveal, *headers, board, matrix, counts_plot], api_name=f"vote_{v}")
    refresh_btn.click(lambda lang, a, b_, c: leaderboard_outputs(lang, a, b_, c), [lang_state, *board_inputs],
                      [board, matrix, counts_plot], api_name="leaderboard")
    # A filter applies as it changes (always_last: while one recompute runs, only the newest filter waits).
    gr.on([since.change, board_category.change, blind_only.change], lambda lang, a, b_, c: leaderboard_outputs(lang, a, b_, c),
          [lang_state, *board_inputs], [board, matrix, counts_plot], api_name=False, show_progress="hidden",
          trigger_mode="always_last")
    # Pickers are filled when the tab opens, not on focus: new choices sent to an open dropdown close it (or show it empty).
    refresh_spec = {"fn": refresh, "inputs": [lang_state, *board_inputs], "outputs": [*models, board, matrix, counts_plot],
                    "show_progress": "hidden"}
    return CompareTab(models=models, mode=mode, panes=panes, refresh=refresh_spec)


def _flat(content: Any) -> str:
    """Chatbot values come back as content blocks; the model wants plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_flat(c) for c in content)
    if isinstance(content, dict):
        return str(content.get("text", content.get("content", "")))
    return json.dumps(content)
