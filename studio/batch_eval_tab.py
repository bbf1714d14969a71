"""Batch evaluation (inside the Compare tab): models × a prompt set, reference metrics, an LLM judge, stored results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from engines.accounts import PermissionDenied
from engines.datasets.files import DatasetFileError
from engines.evaluation import report
from engines.evaluation.prompts import PromptSetError
from engines.evaluation.runner import EvalError
from engines.training.data import DataError
from storage import datasets, evals, runs
from studio.api_files import downloadable
from studio.batch_eval_view import (
    EXAMPLE_COLUMNS,
    OUTCOME_FILTERS,
    SUMMARY_COLUMNS,
    example_detail,
    examples_table,
    filter_examples,
    judge_note_text,
    progress_html,
    score_bars,
    summary_table,
)
from studio.choices import model_choices
from studio.i18n import Translatable, choices_for, t
from studio.people import actor_of, ownership_hint
from studio.services import Services

POLL_S = 1.0
SOURCE_CHOICES = [("ev.src_dataset", "dataset"), ("ev.src_run", "run"), ("ev.src_pasted", "pasted")]
SPLIT_CHOICES = [("ev.split_eval", "eval"), ("ev.split_all", "all")]
OUTCOME_CHOICES = [(f"ev.outcome.{o}", o) for o in OUTCOME_FILTERS]
SUMMARY_KEYS = tuple(f"ev.col.{k}" for k in SUMMARY_COLUMNS)
EXAMPLE_KEYS = tuple(f"ev.ex.{k}" for k in EXAMPLE_COLUMNS)


@dataclass
class BatchEvalTab:
    models: gr.Dropdown
    source: gr.Radio
    run_pick: gr.Dropdown
    eval_id: gr.Textbox
    timer: gr.Timer


def version_choices(lang: str) -> list[tuple[str, str]]:
    return [(f"{v.dataset.name} · v{v.version} ({t(lang, 'ds.n_rows', n=v.row_count)})", str(v.id))
            for v in reversed(datasets.list_versions())]


def run_choices() -> list[tuple[str, str]]:
    return [(f"#{r.id} {r.name} ← {r.base_model}", str(r.id)) for r in runs.list_runs(100, statuses=("completed",))]


def eval_choices(lang: str) -> list[tuple[str, str]]:
    """Every evaluation of the team, each labelled with its owner (only they or an admin stop/resume it)."""
    return [(f"#{e.id} {e.name} · {t(lang, f'ev.status.{e.status}')}" + (f" · {e.owner_name}" if getattr(e, "owner_name", None) else ""),
             str(e.id)) for e in evals.list_evals(100)]


def model_filter_choices(lang: str, models: list[str]) -> list[tuple[str, str]]:
    return [(t(lang, "ev.all_models"), "all"), *((m, m) for m in models)]


def build_batch_eval_tab(services: Services, tr: Translatable, lang_state: Any) -> BatchEvalTab:
    settings, manager = services.settings, services.evals
    lang0 = settings.ui_language

    def judge_choices(lang: str) -> list[tuple[str, str]]:
        return [(t(lang, "ev.no_judge"), ""), *((n, n) for _, n in model_choices(services))]

    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            models = tr.add(gr.Dropdown(choices=[], value=[], multiselect=True, allow_custom_value=True,
                                        label=t(lang0, "ev.models"), info=t(lang0, "ev.models_info"), elem_id="ev-models"),
                            label="ev.models", info="ev.models_info")
            judge = tr.add(gr.Dropdown(choices=[(t(lang0, "ev.no_judge"), "")], value="", allow_custom_value=True,
                                       label=t(lang0, "ev.judge"), info=t(lang0, "ev.judge_info"), elem_id="ev-judge"),
                           label="ev.judge", info="ev.judge_info", choices=judge_choices)
            source = tr.add(gr.Radio(choices_for(lang0, SOURCE_CHOICES), value="pasted", label=t(lang0, "ev.source"),
                                     elem_id="ev-source"), label="ev.source", choices=SOURCE_CHOICES)
            with gr.Row(visible=False) as dataset_row:
                version = tr.add(gr.Dropdown(choices=version_choices(lang0), value=None, label=t(lang0, "ev.dataset"),
                                             elem_id="ev-dataset", scale=3), label="ev.dataset", choices=version_choices)
                split = tr.add(gr.Radio(choices_for(lang0, SPLIT_CHOICES), value="eval",
                                        label=t(lang0, "ev.split"), scale=2), label="ev.split", choices=SPLIT_CHOICES)
            run_pick = tr.add(gr.Dropdown(choices=run_choices(), value=None, label=t(lang0, "ev.run"), visible=False,
                                          elem_id="ev-run"), label="ev.run")
            pasted = tr.add(gr.Textbox(lines=6, max_lines=16, label=t(lang0, "ev.pasted"), placeholder=t(lang0, "ev.pasted_ph"),
                                       elem_id="ev-pasted"), label="ev.pasted", placeholder="ev.pasted_ph")
            with tr.add(gr.Accordion(t(lang0, "ev.settings"), open=False, elem_id="ev-settings"), label="ev.settings"):
                name = tr.add(gr.Textbox(label=t(lang0, "ev.name"), elem_id="ev-name"), label="ev.name")
                with gr.Row():
                    temperature = tr.add(gr.Slider(0, 2, value=0.0, step=0.05, label=t(lang0, "chat.temperature")),
                                         label="chat.temperature")
                    max_tokens = tr.add(gr.Slider(16, settings.vllm_max_model_len, value=min(256, settings.vllm_max_model_len),
                                                  step=16, label=t(lang0, "chat.max_tokens"), elem_id="ev-max-tokens"),
                                        label="chat.max_tokens")
                with gr.Row():
                    concurrency = tr.add(gr.Number(settings.eval_concurrency, precision=0, minimum=1, maximum=1024,
                                                   label=t(lang0, "ev.concurrency"), elem_id="ev-concurrency"), label="ev.concurrency")
                    limit = tr.add(gr.Number(0, precision=0, minimum=0, label=t(lang0, "ev.limit"), elem_id="ev-limit"),
                                   label="ev.limit")
                    judge_tokens = tr.add(gr.Number(512, precision=0, minimum=16, maximum=settings.vllm_max_model_len,
                                                    label=t(lang0, "ev.judge_max_tokens"), info=t(lang0, "ev.judge_max_tokens_info"),
                                                    elem_id="ev-judge-max-tokens"),
                                          label="ev.judge_max_tokens", info="ev.judge_max_tokens_info")
            with gr.Row():
                start = tr.add(gr.Button(t(lang0, "ev.start"), variant="primary", elem_id="ev-start"), value="ev.start")
                stop = tr.add(gr.Button(t(lang0, "ev.stop"), variant="stop", elem_id="ev-stop"), value="ev.stop")
                resume = tr.add(gr.Button(t(lang0, "ev.resume"), elem_id="ev-resume"), value="ev.resume")
            history = tr.add(gr.Dropdown(choices=eval_choices(lang0), value=None, label=t(lang0, "ev.history"), elem_id="ev-history"),
                             label="ev.history", choices=eval_choices)
            owner_md = gr.Markdown("", elem_id="ev-owner")
        with gr.Column(scale=3, min_width=420):
            eval_id = gr.Textbox(value="", visible=False, elem_id="ev-id")
            progress = gr.HTML("", elem_id="ev-progress")
            judge_note = gr.Markdown("", elem_id="ev-judge-note")
            bars = gr.HTML("", elem_id="ev-bars")
            with gr.Row():
                export_btn = tr.add(gr.Button(t(lang0, "ev.export"), size="sm", elem_id="ev-export"), value="ev.export")
                mlflow_btn = tr.add(gr.Button(t(lang0, "ft.mlflow"), size="sm", elem_id="ev-mlflow"), value="ft.mlflow")
            csv_file = gr.File(label="CSV", visible=False, elem_id="ev-csv")
            mlflow_link = gr.Markdown("", elem_id="ev-mlflow-link")
    summary = tr.add(gr.Dataframe(summary_table(lang0, {}), interactive=False, elem_id="ev-summary",
                                  column_widths=["20%", "7%", "7%", "6%", "9%", "9%", "9%", "8%", "11%", "10%"]),
                     headers=SUMMARY_KEYS)
    tr.add(gr.Markdown(t(lang0, "ev.summary_help"), elem_classes=["ev-help"]), value="ev.summary_help")
    with gr.Row():
        # Its choices are the open evaluation's models: drawn in the page's language with them (view), not relabelled here.
        f_model = tr.add(gr.Dropdown(choices=model_filter_choices(lang0, []), value="all", label=t(lang0, "ev.filter_model"),
                                     elem_id="ev-f-model"), label="ev.filter_model")
        f_outcome = tr.add(gr.Dropdown(choices=choices_for(lang0, OUTCOME_CHOICES), value="all",
                                       label=t(lang0, "ev.filter_outcome"), elem_id="ev-f-outcome"),
                           label="ev.filter_outcome", choices=OUTCOME_CHOICES)
        f_query = tr.add(gr.Textbox(label=t(lang0, "ev.filter_query"), elem_id="ev-f-query"), label="ev.filter_query")
    examples = tr.add(gr.Dataframe(examples_table(lang0, report.empty_frame()), interactive=False, wrap=True, max_height=480,
                                   elem_id="ev-examples", column_widths=["4%", "14%", "27%", "33%", "6%", "5%", "4%", "7%"]),
                      headers=EXAMPLE_KEYS, cells={7: tuple(k for k, _ in OUTCOME_CHOICES)})
    detail = gr.Markdown("", elem_id="ev-detail")
    last_sig = gr.State("")

    # ---- handlers ----------------------------------------------------------------------------------------------
    def show_source(src: str):
        return gr.update(visible=src == "dataset"), gr.update(visible=src == "run"), gr.update(visible=src == "pasted")

    def refresh_choices(selected: list[str] | None, judge_v: str | None, lang: str):
        names = [v for _, v in model_choices(services)]
        keep = [m for m in (selected or []) if m]
        return (gr.update(choices=list(dict.fromkeys([*keep, *names]))),
                gr.update(choices=judge_choices(lang)),
                gr.update(choices=version_choices(lang)), gr.update(choices=run_choices()))

    def submit(models_v, judge_v, src, version_v, split_v, run_v, pasted_v, name_v, temp, mt, conc, limit_v, jmt, lang,
               request: gr.Request):
        if manager is None:
            raise gr.Error(t(lang, "ev.unavailable"))
        try:
            eid, ps = manager.submit_batch(
                actor=actor_of(request), name=name_v or "", models=list(models_v or []), judge=judge_v or None, source=src,
                version_id=version_v, split=split_v, run_id=run_v, pasted=pasted_v or "", limit=int(limit_v or 0),
                params={"temperature": float(temp), "max_tokens": int(mt), "concurrency": int(conc or 1),
                        **({"judge_max_tokens": max(16, int(jmt or 512))} if judge_v else {})})
        except (PromptSetError, EvalError, DataError, DatasetFileError) as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(t(lang, "ev.started", n=len(ps.examples), models=len(models_v)) + (f" ({ps.note})" if ps.note else ""))
        return str(eid), gr.update(choices=eval_choices(lang), value=str(eid))

    def view(eid: str, lang: str, fm: str, fo: str, fq: str, sig: str, force: bool = True):
        """Progress always; tables and plots only when the stored results changed (no flicker on idle ticks)."""
        run = evals.get_eval(int(eid)) if str(eid).isdigit() else None
        prog = manager.progress(run.id) if (manager and run) else None
        bar = progress_html(lang, run, prog)
        if run is None:
            return bar, *([gr.skip()] * 6), sig
        new_sig = f"{run.id}:{run.status}:{run.phase}:{evals.count_results(run.id)}:{prog.done if prog else 0}:{lang}:{fm}:{fo}:{fq}"
        if not force and new_sig == sig:
            return bar, *([gr.skip()] * 6), sig
        frame = report.results_frame(run)
        summ = evals.loads(run.summary, None) or (report.summarise(run, frame) if len(frame) else {})
        model_names = evals.loads(run.models, [])
        shown = filter_examples(frame, fm, fo, fq)
        return (bar, summary_table(lang, summ), score_bars(lang, summ), judge_note_text(lang, summ),
                gr.update(choices=model_filter_choices(lang, model_names), value=fm if fm in model_names else "all"),
                examples_table(lang, shown), gr.update(choices=eval_choices(lang)), new_sig)

    def poll(eid, lang, fm, fo, fq, sig):
        return view(eid, lang, fm, fo, fq, sig, force=False)

    def pick_history(hid: str):
        return hid or ""

    def _owner(eid: str) -> str:
        run = evals.get_eval(int(eid)) if str(eid).isdigit() else None
        return (getattr(run, "owner_name", None) if run else None) or "—"

    def cancel(eid: str, lang: str, request: gr.Request):
        try:
            stopped = bool(manager and str(eid).isdigit() and manager.cancel(int(eid), actor=actor_of(request)))
        except PermissionDenied:
            gr.Warning(t(lang, "own.denied", owner=_owner(eid)))
            return
        if stopped:
            gr.Info(t(lang, "ev.stopping"))
        else:
            gr.Warning(t(lang, "ev.not_running"))

    def do_resume(eid: str, lang: str, request: gr.Request):
        if manager is None or not str(eid).isdigit():
            raise gr.Error(t(lang, "ev.pick_one"))
        try:
            manager.resume(int(eid), actor=actor_of(request))
        except PermissionDenied:
            raise gr.Error(t(lang, "own.denied", owner=_owner(eid))) from None
        except EvalError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(t(lang, "ev.resumed"))

    def ownership(eid: str, lang: str, request: gr.Request):
        """Who owns the open evaluation; Stop/Resume are disabled (with the reason) for someone who may not change it.
        Only a hint: the manager refuses anyway."""
        run = evals.get_eval(int(eid)) if str(eid).isdigit() else None
        if run is None:
            return "", gr.update(interactive=True), gr.update(interactive=True)
        line, may = ownership_hint(request, run, lang)
        return line, gr.update(interactive=may), gr.update(interactive=may)

    def select_example(evt: gr.SelectData, eid: str, lang: str):
        row = evt.row_value
        run = evals.get_eval(int(eid)) if str(eid).isdigit() else None
        if not row or run is None:
            return ""
        example, model = int(row[0]) - 1, str(row[1])
        hit = [r for r in evals.results(run.id) if r.example == example and r.model == model]
        raw = evals.loads(hit[0].judge_detail, {}).get("raw") if hit else None
        return example_detail(lang, report.results_frame(run), example, model, raw)

    def export(eid: str, lang: str):
        run = evals.get_eval(int(eid)) if str(eid).isdigit() else None
        if run is None:
            raise gr.Error(t(lang, "ev.pick_one"))
        path = report.export_csv(run, settings.exports_path)
        return gr.update(value=str(path), visible=True)

    def open_mlflow(eid: str, lang: str):
        run = evals.get_eval(int(eid)) if str(eid).isdigit() else None
        if run is None or not run.mlflow_run_id or services.mlflow_ui is None:
            return t(lang, "ev.no_mlflow")
        try:
            services.mlflow_ui.ensure()
            url = services.mlflow_ui.run_url(run.mlflow_run_id)
        except Exception as exc:  # noqa: BLE001  # the UI says why instead of a stack trace
            return f"⚠ {exc}"
        return f"[{t(lang, 'ft.mlflow_open')} ↗]({url})"

    # ---- API (gradio_client): plain ids in (the pickers check values against the choices this session was sent) ----
    def batch_eval_api(models: list[str], judge: str = "", source: str = "dataset", dataset_version_id: str = "",
                       split: str = "eval", run_id: str = "", pasted: str = "", name: str = "", temperature: float = 0.0,
                       max_tokens: int = 256, concurrency: int = 4, limit: int = 0, lang: str = "",
                       judge_max_tokens: int = 512, request: gr.Request = None) -> str:
        """Start an evaluation (it runs in the background); returns its id."""
        return submit(models, judge, source, dataset_version_id or None, split, run_id or None, pasted, name, temperature,
                      max_tokens, concurrency, limit, judge_max_tokens, lang or settings.ui_language, request)[0]

    def batch_eval_csv_api(eval_id: str, lang: str = "") -> dict[str, Any]:
        """The per-example results as CSV: a file the client downloads."""
        run = evals.get_eval(int(eval_id)) if str(eval_id).isdigit() else None
        if run is None:
            raise gr.Error(t(lang or settings.ui_language, "ev.pick_one"))
        return downloadable(report.export_csv(run, settings.exports_path))

    # ---- wiring ----------------------------------------------------------------------------------------------------
    source.change(show_source, [source], [dataset_row, run_pick, pasted], api_name=False, show_progress="hidden")
    for comp in (models, judge, version, run_pick):
        comp.focus(refresh_choices, [models, judge, lang_state], [models, judge, version, run_pick], api_name=False,
                   show_progress="hidden")
    view_inputs = [eval_id, lang_state, f_model, f_outcome, f_query, last_sig]
    view_outputs = [progress, summary, bars, judge_note, f_model, examples, history, last_sig]
    start.click(submit, [models, judge, source, version, split, run_pick, pasted, name, temperature, max_tokens, concurrency,
                         limit, judge_tokens, lang_state], [eval_id, history], api_name=False)
    gr.api(batch_eval_api, api_name="batch_eval")
    eval_id.change(view, view_inputs, view_outputs, api_name=False, show_progress="hidden")
    eval_id.change(ownership, [eval_id, lang_state], [owner_md, stop, resume], api_name=False, show_progress="hidden")
    history.input(pick_history, [history], [eval_id], api_name=False, show_progress="hidden")
    gr.on([f_model.input, f_outcome.input, f_query.submit], view, view_inputs, view_outputs, api_name=False,
          show_progress="hidden")
    timer = gr.Timer(POLL_S, active=False)  # app.py runs it only while Compare is open
    timer.tick(poll, view_inputs, view_outputs, api_name="poll_batch_eval", api_visibility="private",
                          show_progress="hidden")
    stop.click(cancel, [eval_id, lang_state], None, api_name="batch_eval_stop")
    resume.click(do_resume, [eval_id, lang_state], None, api_name="batch_eval_resume")
    examples.select(select_example, [eval_id, lang_state], [detail], api_name=False)
    export_btn.click(export, [eval_id, lang_state], [csv_file], api_name=False)
    gr.api(batch_eval_csv_api, api_name="batch_eval_csv")
    mlflow_btn.click(open_mlflow, [eval_id, lang_state], [mlflow_link], api_name=False)
    return BatchEvalTab(models=models, source=source, run_pick=run_pick, eval_id=eval_id, timer=timer)
