"""The Fine-tune tab: a spec form with presets, validation and an estimate on the left; runs and live curves on the right."""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from engines.accounts import PermissionDenied
from engines.datasets import DatasetFileError, dataset_choices, save_upload
from engines.datasets.files import TrainingFile, training_files
from engines.training import PRESETS, SpecError, detect, preset, spec_from_yaml, spec_to_yaml, validate_spec
from engines.training.planning import estimate_for, save_spec_yaml
from engines.training.spec import ALL_LINEAR
from storage import runs
from studio.finetune_view import (
    curves,
    errors_markdown,
    estimate_markdown,
    hardware_text,
    progress_html,
    run_header,
    runs_frame,
)
from studio.i18n import Translatable, choices_for, t
from studio.objective_fields import objective_fields, wire_objective_fields
from studio.people import actor_of, ownership_hint
from studio.plots import color_every_series
from studio.services import Services

FIELDS = (
    "base_model", "dataset", "output_name", "method", "lora_r", "lora_alpha", "lora_dropout", "target_modules",
    "learning_rate", "lr_scheduler", "warmup_ratio", "epochs", "max_steps", "batch_size", "grad_accum", "max_seq_len",
    "packing", "train_on_responses_only", "seed", "eval_split", "save_steps", "eval_steps", "early_stop_patience",
    "gradient_checkpointing", "chat_template", "objective", "beta", "orpo_lambda", "sft_adapter",
)
POLL_S = 1.5


@dataclass
class FinetuneTab:
    run_id: gr.Textbox
    preset: gr.Radio
    chat_btn: gr.Button
    compare_btn: gr.Button
    base_model: gr.Dropdown
    dataset: gr.Dropdown
    runs_table: gr.Dataframe
    hardware: gr.HTML
    timer: gr.Timer  # polls the shown run; app.py runs it only while this tab is open
    show: dict  # fn/inputs/outputs that refresh the hardware line and the default run name (page load, tab select)
    relabel: dict  # fn/inputs/outputs that redraw the shown run's owner line in the page's language (language switch)


# A typed name (not empty, not the last one the form made) stays; otherwise the fresh one replaces it. Nor is the
# box replaced while the cursor is in it: someone who has just selected the made name to type over it would
# otherwise type after the new one (the selection is lost when the value changes under it).
TAKE_FRESH_NAME_JS = """(current, auto, fresh) => {
  const box = document.querySelector('#ft-output-name textarea, #ft-output-name input');
  const editing = box !== null && document.activeElement === box;
  return (editing || ((current || '').trim() && current !== auto)) ? [current, auto] : [fresh, fresh];
}"""


def default_name(base_model: str, dataset: str) -> str:
    stem = Path(dataset or "data").stem
    base = Path(base_model or "model").name.split("-Instruct")[0]
    raw = f"{base}-{stem}-{dt.datetime.now():%m%d-%H%M%S}".lower()
    return re.sub(r"[^a-z0-9._-]+", "-", raw)[:64].strip("-.")


def hardware_line(lang: str) -> str:
    """The machine as it is now (free memory changes as servers and runs come and go); `data-checked` says when."""
    text = hardware_text(lang, detect())
    return f"<small id='ft-hardware-line' data-checked='{time.time():.3f}'>{html.escape(text)}</small>"


def base_model_choices(services: Services) -> list[str]:
    names = [services.settings.default_model]
    names += [r.name for r in services.servers.served_models() if r.kind == "base"]
    from storage import catalog

    names += [m.name for m in catalog.list_models("base")]
    return list(dict.fromkeys(names))


PRESET_CHOICES = [(f"ft.preset.{p}", p) for p in PRESETS]
METHOD_CHOICES = [("ft.method.qlora", "qlora"), ("ft.method.lora", "lora")]
TEMPLATE_CHOICES = [("ft.template.auto", "auto"), "chatml", "llama3", "gemma"]  # the named templates are ids


def training_file_label(lang: str, f: TrainingFile) -> str:
    return t(lang, f"ft.file.{f.kind}", name=f.name, rows=f"{f.rows:,}", version=f.version)


def training_file_choices(settings: Any, lang: str) -> list[tuple[str, str]]:
    """(label, value) of every file a run can train on, labelled in `lang`."""
    return [(training_file_label(lang, f), f.value) for f in training_files(settings)]


def form_data(values: tuple) -> dict[str, Any]:
    return dict(zip(FIELDS, values, strict=True))


def build_finetune_tab(services: Services, tr: Translatable, lang_state: Any) -> FinetuneTab:
    settings = services.settings
    jobs = services.jobs
    lang0 = settings.ui_language
    hw = detect()
    start = preset("quick", hw)
    samples = training_file_choices(settings, lang0)
    first_dataset = samples[0][1] if samples else None

    def label(field: str, comp: Any, info: bool = False, **more: Any) -> Any:
        props = {"label": f"ft.field.{field}"}
        if info:
            props["info"] = f"ft.info.{field}"
        return tr.add(comp, **props, **more)

    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=360, elem_id="ft-form"):
            tr.add(gr.Markdown(f"### {t(lang0, 'ft.new_run')}"), value="ft.new_run_md")
            hardware = tr.add(gr.HTML(hardware_line(lang0), elem_id="ft-hardware", padding=False),  # HTML: Markdown drops data-checked
                              render=hardware_line)
            base_model = label("base_model", gr.Dropdown(
                choices=base_model_choices(services), value=settings.default_model, allow_custom_value=True,
                label=t(lang0, "ft.field.base_model"), info=t(lang0, "ft.info.base_model"), elem_id="ft-base-model"), info=True)
            with gr.Row(equal_height=True):
                dataset = label("dataset", gr.Dropdown(
                    choices=samples, value=first_dataset, label=t(lang0, "ft.field.dataset"), scale=4, elem_id="ft-dataset"),
                    choices=lambda lang: training_file_choices(settings, lang))
                upload = tr.add(gr.UploadButton(
                    t(lang0, "ft.upload"), file_types=[".jsonl", ".json", ".csv", ".tsv", ".parquet"], size="sm", scale=1, min_width=110,
                    elem_id="ft-upload"), label="ft.upload")
            upload_msg = gr.Markdown("", elem_id="ft-upload-msg")
            preset_radio = tr.add(gr.Radio(
                choices=choices_for(lang0, PRESET_CHOICES), value="quick", label=t(lang0, "ft.preset"),
                elem_id="ft-preset"), label="ft.preset", choices=PRESET_CHOICES)
            with gr.Row():
                method = label("method", gr.Radio(
                    choices=choices_for(lang0, METHOD_CHOICES), value=start["method"],
                    label=t(lang0, "ft.field.method"), elem_id="ft-method"), choices=METHOD_CHOICES)
                name0 = default_name(settings.default_model, first_dataset or "")
                output_name = label("output_name", gr.Textbox(
                    value=name0, label=t(lang0, "ft.field.output_name"),
                    info=t(lang0, "ft.info.output_name"), elem_id="ft-output-name"), info=True)
                # The name the form made itself: it follows the model, dataset and time; a name the user typed stays.
                # Both live in the page (hidden textboxes, not State) so the browser decides when a fresh name
                # arrives: a name typed while the server was making one is never overwritten.
                auto_name = gr.Textbox(name0, visible=False, elem_id="ft-auto-name")
                fresh_name = gr.Textbox(name0, visible=False, elem_id="ft-fresh-name")
            pref_row, objective, beta, orpo_lambda, sft_adapter = objective_fields(tr, lang0)
            with tr.add(gr.Accordion(t(lang0, "ft.section.lora"), open=False, elem_id="ft-lora"), label="ft.section.lora"):
                with gr.Row():
                    lora_r = label("lora_r", gr.Number(start["lora_r"], precision=0, label=t(lang0, "ft.field.lora_r"), elem_id="ft-lora-r"))
                    lora_alpha = label("lora_alpha", gr.Number(start["lora_alpha"], precision=0, label=t(lang0, "ft.field.lora_alpha")))
                    lora_dropout = label("lora_dropout", gr.Number(start["lora_dropout"], label=t(lang0, "ft.field.lora_dropout"), step=0.01))
                target_modules = label("target_modules", gr.CheckboxGroup(
                    choices=ALL_LINEAR, value=list(ALL_LINEAR), label=t(lang0, "ft.field.target_modules")))
            with tr.add(gr.Accordion(t(lang0, "ft.section.training"), open=True, elem_id="ft-training"), label="ft.section.training"):
                with gr.Row():
                    learning_rate = label("learning_rate", gr.Number(start["learning_rate"], label=t(lang0, "ft.field.learning_rate"), elem_id="ft-lr"))
                    lr_scheduler = label("lr_scheduler", gr.Dropdown(
                        ["linear", "cosine", "constant", "constant_with_warmup"], value=start["lr_scheduler"],
                        label=t(lang0, "ft.field.lr_scheduler")))
                    warmup_ratio = label("warmup_ratio", gr.Number(start["warmup_ratio"], label=t(lang0, "ft.field.warmup_ratio"), step=0.01))
                with gr.Row():
                    epochs = label("epochs", gr.Number(start["epochs"], label=t(lang0, "ft.field.epochs"), step=0.5))
                    max_steps = label("max_steps", gr.Number(start["max_steps"], precision=0, label=t(lang0, "ft.field.max_steps"),
                                                             info=t(lang0, "ft.info.max_steps"), elem_id="ft-max-steps"), info=True)
                    seed = label("seed", gr.Number(start["seed"], precision=0, label=t(lang0, "ft.field.seed")))
                with gr.Row():
                    batch_size = label("batch_size", gr.Number(start["batch_size"], precision=0, label=t(lang0, "ft.field.batch_size"), elem_id="ft-batch"))
                    grad_accum = label("grad_accum", gr.Number(start["grad_accum"], precision=0, label=t(lang0, "ft.field.grad_accum")))
                    max_seq_len = label("max_seq_len", gr.Number(start["max_seq_len"], precision=0, label=t(lang0, "ft.field.max_seq_len")))
                with gr.Row():
                    packing = label("packing", gr.Checkbox(start["packing"], label=t(lang0, "ft.field.packing")))
                    responses_only = label("train_on_responses_only", gr.Checkbox(True, label=t(lang0, "ft.field.train_on_responses_only")))
                    grad_ckpt = label("gradient_checkpointing", gr.Checkbox(start["gradient_checkpointing"], label=t(lang0, "ft.field.gradient_checkpointing")))
            with tr.add(gr.Accordion(t(lang0, "ft.section.eval"), open=False, elem_id="ft-eval"), label="ft.section.eval"):
                with gr.Row():
                    eval_split = label("eval_split", gr.Number(start["eval_split"], label=t(lang0, "ft.field.eval_split"), step=0.05))
                    eval_steps = label("eval_steps", gr.Number(start["eval_steps"], precision=0, label=t(lang0, "ft.field.eval_steps")))
                    save_steps = label("save_steps", gr.Number(start["save_steps"], precision=0, label=t(lang0, "ft.field.save_steps")))
                    patience = label("early_stop_patience", gr.Number(start["early_stop_patience"], precision=0, label=t(lang0, "ft.field.early_stop_patience")))
                chat_template = label("chat_template", gr.Dropdown(
                    choices_for(lang0, TEMPLATE_CHOICES), value="auto", label=t(lang0, "ft.field.chat_template")),
                    choices=TEMPLATE_CHOICES)
            errors = gr.Markdown("", elem_id="ft-errors-box")
            estimate_md = gr.Markdown("", elem_id="ft-estimate")
            with tr.add(gr.Accordion(t(lang0, "ft.section.spec"), open=False, elem_id="ft-spec"), label="ft.section.spec"):
                command = tr.add(gr.Code(language="shell", label=t(lang0, "ft.command"), interactive=False, elem_id="ft-command"), label="ft.command")
                spec_yaml = tr.add(gr.Code(language="yaml", label="spec.yaml", interactive=False, elem_id="ft-yaml", max_lines=20), label="ft.yaml")
                with gr.Row():
                    save_yaml_btn = tr.add(gr.Button(t(lang0, "ft.save_yaml"), size="sm", elem_id="ft-save-yaml"), value="ft.save_yaml")
                    load_yaml_btn = tr.add(gr.UploadButton(t(lang0, "ft.load_yaml"), file_types=[".yaml", ".yml"], size="sm", elem_id="ft-load-yaml"), label="ft.load_yaml")
                yaml_file = tr.add(gr.File(label=t(lang0, "ft.yaml_file"), interactive=False, elem_id="ft-yaml-file"), label="ft.yaml_file")
            start_btn = tr.add(gr.Button(t(lang0, "ft.start"), variant="primary", elem_id="ft-start"), value="ft.start")

        with gr.Column(scale=3, min_width=420, elem_id="ft-runs"):
            tr.add(gr.Markdown(f"### {t(lang0, 'ft.runs')}"), value="ft.runs_md")
            # Drawn again on a language switch: the status column is words too.
            runs_table = tr.add(gr.Dataframe(
                value=runs_frame(lang0, runs.list_runs(50)), interactive=False, max_height=220, elem_id="ft-runs-table",
                wrap=True, column_widths=["6%", "26%", "17%", "14%", "9%", "9%", "10%", "9%"],
            ), render=lambda lang: runs_frame(lang, runs.list_runs(50)))
            run_id = gr.Textbox(value="", visible=False, elem_id="ft-run-id")
            progress = gr.HTML(progress_html(lang0, None, None), elem_id="ft-progress-box", padding=False)
            owner_md = gr.Markdown("", elem_id="ft-owner")
            with gr.Row():
                cancel_btn = tr.add(gr.Button(t(lang0, "ft.cancel"), variant="stop", size="sm", visible=False, elem_id="ft-cancel"), value="ft.cancel")
                resume_btn = tr.add(gr.Button(t(lang0, "ft.resume"), size="sm", visible=False, elem_id="ft-resume"), value="ft.resume")
                chat_btn = tr.add(gr.Button(t(lang0, "ft.chat_with"), variant="primary", size="sm", visible=False, elem_id="ft-chat-with"), value="ft.chat_with")
                compare_btn = tr.add(gr.Button(t(lang0, "ft.compare"), size="sm", visible=False, elem_id="ft-compare"), value="ft.compare")
                mlflow_btn = tr.add(gr.Button(t(lang0, "ft.mlflow"), size="sm", visible=False, elem_id="ft-mlflow"), value="ft.mlflow")
            mlflow_link = gr.Markdown("", elem_id="ft-mlflow-link")
            with gr.Row():
                loss_plot = tr.add(gr.LinePlot(
                    x="step", y="loss", color="series", label=t(lang0, "ft.loss_plot"), elem_id="ft-loss-plot",
                    x_title=t(lang0, "ft.step"), y_title=t(lang0, "ft.axis.loss"), color_title=t(lang0, "ft.series")),
                    label="ft.loss_plot", x_title="ft.step", y_title="ft.axis.loss", color_title="ft.series")
                lr_plot = tr.add(gr.LinePlot(
                    x="step", y="learning_rate", label=t(lang0, "ft.lr_plot"), elem_id="ft-lr-plot",
                    x_title=t(lang0, "ft.step"), y_title=t(lang0, "ft.axis.lr")), label="ft.lr_plot", x_title="ft.step",
                    y_title="ft.axis.lr")
            log_box = tr.add(gr.Code(label=t(lang0, "ft.log"), language=None, interactive=False, max_lines=14, elem_id="ft-log"), label="ft.log")
            timer = gr.Timer(POLL_S, active=False)  # app.py runs it only while this tab is open

    form = [base_model, dataset, output_name, method, lora_r, lora_alpha, lora_dropout, target_modules, learning_rate,
            lr_scheduler, warmup_ratio, epochs, max_steps, batch_size, grad_accum, max_seq_len, packing, responses_only,
            seed, eval_split, save_steps, eval_steps, patience, grad_ckpt, chat_template, objective, beta, orpo_lambda, sft_adapter]

    # ---- form: validation, estimate, command, YAML ------------------------------------------------
    def check(lang: str, *values: Any):
        """Validate as the user types: field messages, the estimate, the exact command and the spec as YAML."""
        data = form_data(values)
        try:
            spec = jobs.validate_request(data)[0] if jobs else validate_spec(data, max_lora_rank=settings.vllm_max_lora_rank)
        except SpecError as exc:
            return errors_markdown(lang, exc.fields), "", "", "", gr.update(interactive=False)
        est = estimate_for(settings, spec, hw)
        cmd = jobs.command_preview(spec.output_name) if jobs else ""
        return "", estimate_markdown(lang, est, hw), cmd, spec_to_yaml(spec), gr.update(interactive=jobs is not None)

    def apply_preset(name: str):
        p = preset(name, hw)
        order = ("method", "lora_r", "lora_alpha", "lora_dropout", "learning_rate", "lr_scheduler", "warmup_ratio", "epochs",
                 "max_steps", "batch_size", "grad_accum", "max_seq_len", "packing", "seed", "eval_split", "save_steps",
                 "eval_steps", "early_stop_patience", "gradient_checkpointing")
        return [p[k] for k in order]

    preset_targets = [method, lora_r, lora_alpha, lora_dropout, learning_rate, lr_scheduler, warmup_ratio, epochs, max_steps,
                      batch_size, grad_accum, max_seq_len, packing, seed, eval_split, save_steps, eval_steps, patience, grad_ckpt]

    def on_upload(file: Any, lang: str, current: str | None):
        if file is None:
            return gr.skip(), ""
        try:
            dest = save_upload(settings, file if isinstance(file, str) else file.name)
        except (DatasetFileError, OSError) as exc:
            return gr.update(value=current), f"<span class='ft-fit no'>✗ {t(lang, 'ft.upload_failed')}</span>: {exc}"
        from engines.datasets.files import display_path

        value = display_path(dest)
        return (gr.update(choices=training_file_choices(settings, lang), value=value),
                f"<span class='ft-fit ok'>✓ {t(lang, 'ft.uploaded')}</span>: `{dest.name}`")

    def save_yaml(*values: Any):
        data = form_data(values)
        try:
            spec = validate_spec(data, max_lora_rank=settings.vllm_max_lora_rank)
        except SpecError as exc:
            raise gr.Error(str(exc)) from None
        return str(save_spec_yaml(settings, spec))

    def load_yaml(file: Any, lang: str):
        text = Path(file if isinstance(file, str) else file.name).read_text(encoding="utf-8", errors="replace")
        try:
            spec = spec_from_yaml(text, max_lora_rank=settings.vllm_max_lora_rank)
        except SpecError as exc:
            gr.Warning(f"{t(lang, 'ft.yaml_invalid')}: {exc}")
            return [gr.skip()] * len(FIELDS)
        data = spec.model_dump()
        data["output_name"] = default_name(spec.base_model, spec.dataset) if runs.run_by_name(spec.output_name) else spec.output_name
        return [data[f] for f in FIELDS]

    def renew_name(base: str | None, ds: str | None) -> str:
        """A fresh default name (model, dataset, now); the page takes it only if the user has not typed their own."""
        return default_name(base or "", ds or "")

    def show(lang: str, base: str | None, ds: str | None):
        """Page load and tab select: the page was built at the app's start, with that moment's free memory and time."""
        return hardware_line(lang), renew_name(base, ds)

    # ---- runs --------------------------------------------------------------------------------------
    def submit(request: gr.Request, lang: str, *values: Any):  # the request first: Gradio injects it only before *values
        if jobs is None:
            raise gr.Error(t(lang, "ft.no_jobs"))
        data = form_data(values)
        try:
            spec, version_id = jobs.validate_request(data)  # as the REST API checks a spec: the dataset named any way
            rid = jobs.submit(spec, actor=actor_of(request), dataset_version_id=version_id)
        except SpecError as exc:
            return gr.skip(), errors_markdown(lang, exc.fields), gr.skip(), gr.skip(), gr.skip()
        gr.Info(t(lang, "ft.queued", name=data["output_name"]))
        name = default_name(data["base_model"], data["dataset"])
        return str(rid), "", runs_frame(lang, runs.list_runs(50)), name, name

    def show_run(rid_value: str, lang: str):
        """Everything the right column shows for one run (called on select and on every timer tick)."""
        run = runs.get_run(int(rid_value)) if str(rid_value).isdigit() else None
        h = jobs.history(run.id) if (run and jobs) else None
        loss, lr = curves(h, lang)
        flags = run_header(lang, run)
        log_text = "\n".join(h.logs[-30:]) if h else ""
        if run and run.status in ("failed", "interrupted") and jobs:
            log_text += "\n--- train.log ---\n" + jobs.log_tail(run.id, 25)
        return (
            progress_html(lang, run, h), loss, lr, log_text,
            gr.update(visible=flags["cancel"]), gr.update(visible=flags["resume"]), gr.update(visible=flags["chat"]),
            gr.update(visible=flags["chat"]), gr.update(visible=flags["mlflow"]),
        )

    run_outputs = [progress, loss_plot, lr_plot, log_box, cancel_btn, resume_btn, chat_btn, compare_btn, mlflow_btn]

    def poll(rid_value: str, lang: str, last: str, last_curves: str):
        """Timer tick: send only what changed (re-sending an unchanged plot makes it redraw and flicker)."""
        table = runs_frame(lang, runs.list_runs(50))
        sig = table.to_json()
        view = list(show_run(rid_value, lang))
        n_points = len(jobs.history(int(rid_value)).metrics) if (jobs and str(rid_value).isdigit()) else 0
        curve_sig = f"{rid_value}:{n_points}:{lang}"
        if curve_sig == last_curves:
            view[1] = view[2] = gr.skip()
        return (table if sig != last else gr.skip(), sig, curve_sig, *view)

    def select_run(evt: gr.SelectData, lang: str):
        row = evt.row_value if evt.row_value else None
        return str(row[0]) if row else gr.skip()

    def _denied(rid_value: str, lang: str) -> gr.Error:
        run = runs.get_run(int(rid_value)) if str(rid_value).isdigit() else None
        return gr.Error(t(lang, "own.denied", owner=(getattr(run, "owner_name", None) if run else None) or "—"))

    def cancel(rid_value: str, lang: str, request: gr.Request):
        if jobs and str(rid_value).isdigit():
            try:
                state = jobs.cancel(int(rid_value), actor=actor_of(request))
            except PermissionDenied:
                raise _denied(rid_value, lang) from None
            except ValueError as exc:  # e.g. a run folder outside the studio's data (a hand-edited row): nothing signalled
                raise gr.Error(str(exc)) from None
            gr.Info(t(lang, f"ft.cancel_{'done' if state == 'cancelled' else 'sent'}"))
        return show_run(rid_value, lang)

    def resume(rid_value: str, lang: str, request: gr.Request):
        if jobs and str(rid_value).isdigit():
            try:
                jobs.resume(int(rid_value), actor=actor_of(request))
            except PermissionDenied:
                raise _denied(rid_value, lang) from None
            except ValueError as exc:
                raise gr.Error(str(exc)) from None
            gr.Info(t(lang, "ft.resumed"))
        return show_run(rid_value, lang)

    def ownership(rid_value: str, lang: str, request: gr.Request):
        """Who owns the selected run; Cancel/Resume are disabled (with the reason) for someone who may not change it.
        Only a hint: the job manager refuses anyway."""
        run = runs.get_run(int(rid_value)) if str(rid_value).isdigit() else None
        if run is None:
            return "", gr.update(interactive=True), gr.update(interactive=True)
        line, may = ownership_hint(request, run, lang)
        return line, gr.update(interactive=may), gr.update(interactive=may)

    def open_mlflow(rid_value: str, lang: str):
        run = runs.get_run(int(rid_value)) if str(rid_value).isdigit() else None
        if run is None or not run.mlflow_run_id or services.mlflow_ui is None:
            return t(lang, "ft.no_mlflow")
        try:
            url = services.mlflow_ui.run_url(run.mlflow_run_id)
        except RuntimeError as exc:
            return f"<span class='ft-fit no'>✗</span> {exc}"
        return f"<a href='{url}' target='_blank' rel='noopener' id='ft-mlflow-url'>{t(lang, 'ft.mlflow_open')} ↗</a> <small>({url})</small>"

    def list_runs_api() -> list[dict[str, Any]]:
        return [
            {"id": r.id, "name": r.name, "owner": r.owner_name, "status": r.status, "step": r.step, "total_steps": r.total_steps,
             "base_model": r.base_model, "mlflow_run_id": r.mlflow_run_id, "metrics": runs.run_metrics(r)}
            for r in runs.list_runs(200)
        ]

    # ---- API (gradio_client): the spec as one dict ---------------------------------------------------------
    # The form's pickers check their values against the choices this session was sent (a dataset version saved later
    # would be refused); the API takes a spec dict ({field: value}, FIELDS; missing fields take their defaults).
    def training_datasets() -> list[dict[str, str]]:
        """Every file a run can train on (samples, saved dataset versions, uploads): {"label", "dataset"} (the spec's value)."""
        return [{"label": label_, "dataset": value} for label_, value in dataset_choices(settings)]

    def validate_spec_api(spec: dict[str, Any], lang: str = "") -> dict[str, Any]:
        """Check a spec: {"ok", "errors": {field: message}, "estimate", "command", "yaml"}."""
        lang = lang or lang0
        try:
            checked = (jobs.validate_request(dict(spec or {}))[0] if jobs
                       else validate_spec(dict(spec or {}), max_lora_rank=settings.vllm_max_lora_rank))
        except SpecError as exc:
            return {"ok": False, "errors": dict(exc.fields), "estimate": "", "command": "", "yaml": ""}
        est = estimate_for(settings, checked, hw)
        return {"ok": True, "errors": {}, "estimate": estimate_markdown(lang, est, hw),
                "command": jobs.command_preview(checked.output_name) if jobs else "", "yaml": spec_to_yaml(checked)}

    def start_training_api(spec: dict[str, Any], lang: str = "", request: gr.Request = None) -> dict[str, Any]:
        """Queue a run of the spec, owned by you: {"run_id", "name"}, or an error naming each bad field."""
        lang = lang or lang0
        if jobs is None:
            raise gr.Error(t(lang, "ft.no_jobs"))
        try:
            checked, version_id = jobs.validate_request(dict(spec or {}))
            rid = jobs.submit(checked, actor=actor_of(request), dataset_version_id=version_id)
        except SpecError as exc:
            raise gr.Error("; ".join(f"{k}: {v}" for k, v in exc.fields.items())) from None
        return {"run_id": rid, "name": runs.get_run(rid).name}

    # ---- wiring ------------------------------------------------------------------------------------------
    gr.on(None, check, [lang_state, *form], [errors, estimate_md, command, spec_yaml, start_btn],
          api_name=False, show_progress="hidden", trigger_mode="always_last")
    preset_radio.input(apply_preset, [preset_radio], preset_targets, api_name="apply_preset", show_progress="hidden")
    upload.upload(on_upload, [upload, lang_state, dataset], [dataset, upload_msg], api_name="upload_dataset")
    save_yaml_btn.click(save_yaml, form, [yaml_file], api_name=False)
    load_yaml_btn.upload(load_yaml, [load_yaml_btn, lang_state], form, api_name=False)
    start_btn.click(submit, [lang_state, *form], [run_id, errors, runs_table, output_name, auto_name], api_name=False)
    name_inputs = [base_model, dataset]
    gr.on([base_model.change, dataset.change], renew_name, name_inputs, [fresh_name], api_name=False,
          show_progress="hidden", trigger_mode="always_last")
    # Decided in the browser when the fresh name arrives, with what the box holds then (not when it was asked for).
    fresh_name.change(None, [output_name, auto_name, fresh_name], [output_name, auto_name], js=TAKE_FRESH_NAME_JS,
                      api_name=False, show_progress="hidden")
    show_spec = {"fn": show, "inputs": [lang_state, *name_inputs], "outputs": [hardware, fresh_name],
                 "show_progress": "hidden", "concurrency_limit": None}
    last_sig, last_curves = gr.State(""), gr.State("")
    runs_table.select(select_run, [lang_state], [run_id], api_name="select_run", api_visibility="private")
    run_id.change(show_run, [run_id, lang_state], run_outputs, api_name="show_run", show_progress="hidden")
    run_id.change(ownership, [run_id, lang_state], [owner_md, cancel_btn, resume_btn], api_name=False, show_progress="hidden")
    timer.tick(poll, [run_id, lang_state, last_sig, last_curves], [runs_table, last_sig, last_curves, *run_outputs], api_name="poll_training",
               api_visibility="private", show_progress="hidden", concurrency_limit=None)
    cancel_btn.click(cancel, [run_id, lang_state], run_outputs, api_name="cancel_training")
    resume_btn.click(resume, [run_id, lang_state], run_outputs, api_name="resume_training")
    mlflow_btn.click(open_mlflow, [run_id, lang_state], [mlflow_link], api_name="open_mlflow")
    wire_objective_fields(pref_row, objective, beta, orpo_lambda, sft_adapter)
    color_every_series(loss_plot)  # the first loss points, then "eval", would otherwise be drawn without a line
    gr.api(list_runs_api, api_name="list_training_runs")
    gr.api(training_datasets, api_name="training_datasets")
    gr.api(validate_spec_api, api_name="validate_spec")
    gr.api(start_training_api, api_name="start_training")
    return FinetuneTab(run_id=run_id, preset=preset_radio, chat_btn=chat_btn, compare_btn=compare_btn, base_model=base_model, dataset=dataset,
                       runs_table=runs_table, hardware=hardware, timer=timer, show=show_spec,
                       relabel={"fn": ownership, "inputs": [run_id, lang_state], "outputs": [owner_md, cancel_btn, resume_btn],
                                "show_progress": "hidden"})

