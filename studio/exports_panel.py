"""Model exports (in the Models tab): merge an adapter, GGUF, push to the Hub — background jobs with progress."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from engines.accounts import PermissionDenied
from engines.models.exports import ExportError, ExportJob, ExportManager
from engines.settings import BUNDLED_MODEL
from storage import catalog
from studio.i18n import Translatable, choices_for, t
from studio.people import actor_of, admin_controls
from studio.services import Services


def export_choices() -> list[tuple[str, str]]:
    out = [(f"{m.name} ← {m.parent}" if m.kind == "adapter" else m.name, m.name)
           for m in catalog.list_models() if m.kind in ("adapter", "base")]
    if BUNDLED_MODEL not in {v for _, v in out}:
        out.append((BUNDLED_MODEL, BUNDLED_MODEL))
    return out


ACTION_CHOICES = [(f"exp.action.{a}", a) for a in ("merge", "gguf", "push")]


def jobs_frame(lang: str, jobs: list[ExportJob]) -> pd.DataFrame:
    cols = [t(lang, f"exp.col.{c}") for c in ("started", "action", "model", "status", "progress", "result")]
    rows = [[dt.datetime.fromtimestamp(j.started).strftime("%Y-%m-%d %H:%M"), t(lang, f"exp.action.{j.action}"), j.model,
             t(lang, f"exp.status.{j.status}") + (f" · {t(lang, 'exp.where.ray')}" if j.compute == "ray" else ""),
             f"{j.pct:.0f}% {j.stage}".strip(), j.result or j.error or ""] for j in jobs]
    return pd.DataFrame(rows, columns=cols)


@dataclass
class ExportsPanel:
    timer: gr.Timer  # inactive: app.py runs it only while the Models tab is open
    refresh: dict  # fn/inputs/outputs that re-read the model picker's choices (for the page's load and the tab's select)


def build_exports_panel(services: Services, tr: Translatable, lang_state: Any) -> ExportsPanel:
    """Build the panel; returns its poll timer and the refresh of its model picker."""
    settings = services.settings
    lang0 = settings.ui_language
    manager = ExportManager(settings)

    def exports() -> list[ExportJob]:
        return [j for j in manager.jobs() if j.action != "download"]  # downloads have their own panel
    with tr.add(gr.Accordion(t(lang0, "exp.title"), open=False, elem_id="exp-panel"), label="exp.title"):
        tr.add(gr.Markdown(t(lang0, "exp.help")), value="exp.help")
        admin_note = tr.add(gr.Markdown(t(lang0, "models.admin_only"), visible=False, elem_id="exp-admin-only"),
                            value="models.admin_only")
        with gr.Row(equal_height=True):
            model = tr.add(gr.Dropdown(choices=export_choices(), value=None, label=t(lang0, "exp.model"), elem_id="exp-model",
                                       scale=2), label="exp.model")
            action = tr.add(gr.Radio(choices_for(lang0, ACTION_CHOICES), value="merge",
                                     label=t(lang0, "exp.action"), elem_id="exp-action", scale=3), label="exp.action",
                            choices=ACTION_CHOICES)
        with gr.Row(visible=False, equal_height=True) as push_row:
            repo = tr.add(gr.Textbox(label=t(lang0, "exp.repo"), placeholder="your-name/my-adapter", elem_id="exp-repo", scale=3),
                          label="exp.repo")
            private = tr.add(gr.Checkbox(True, label=t(lang0, "exp.private"), scale=1), label="exp.private")
        with gr.Row():
            start = tr.add(gr.Button(t(lang0, "exp.start"), variant="primary", elem_id="exp-start"), value="exp.start")
            cancel = tr.add(gr.Button(t(lang0, "exp.cancel"), variant="stop", elem_id="exp-cancel"), value="exp.cancel")
        table = tr.add(gr.Dataframe(jobs_frame(lang0, exports()), interactive=False, wrap=True, elem_id="exp-jobs"),
                       render=lambda lang: jobs_frame(lang, exports()))
    last = gr.State("")

    def submit(model_v: str, action_v: str, repo_v: str, private_v: bool, lang: str, request: gr.Request | None = None):
        actor = actor_of(request)
        if not model_v:
            raise gr.Error(t(lang, "exp.pick_model"))
        try:
            manager.submit(action_v, model_v, actor=actor, repo_id=(repo_v or "").strip(), private=bool(private_v))
        except PermissionDenied:
            raise gr.Error(t(lang, "models.admin_only")) from None
        except ExportError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(t(lang, "exp.started", action=t(lang, f"exp.action.{action_v}"), model=model_v))
        return jobs_frame(lang, exports())

    def stop(lang: str, request: gr.Request | None = None):
        """Cancel the newest running export (its partial output is removed)."""
        actor = actor_of(request)
        job = next((j for j in exports() if j.status == "running"), None)
        try:
            cancelled = job is not None and manager.cancel(job.id, actor=actor)
        except PermissionDenied:
            raise gr.Error(t(lang, "models.admin_only")) from None
        if not cancelled:
            raise gr.Error(t(lang, "exp.nothing_to_cancel"))
        gr.Info(t(lang, "exp.cancelled", action=t(lang, f"exp.action.{job.action}"), model=job.model))
        return jobs_frame(lang, exports())

    # The model picker checks its value against the choices this session was sent (an adapter trained later would be
    # refused); the API takes any model name and the export manager checks it.
    def export_model_api(model: str, action: str, repo_id: str = "", private: bool = True, lang: str = "",
                         request: gr.Request = None) -> list[dict[str, Any]]:
        """Start a merge / GGUF / push job (admins only); returns every export job: id, action, model, status, pct."""
        submit(model, action, repo_id, private, lang or lang0, request)
        return [{"id": j.id, "action": j.action, "model": j.model, "status": j.status, "pct": j.pct, "error": j.error}
                for j in exports()]

    def poll(lang: str, sig: str):
        jobs = exports()
        new = f"{lang}|" + "|".join(f"{j.id}:{j.status}:{j.pct}" for j in jobs)
        return (jobs_frame(lang, jobs) if new != sig else gr.skip()), new

    def show(lang: str, sig: str):
        """The picker's choices and the jobs as they are now (the page was built with those of the app's start)."""
        return gr.update(choices=export_choices()), *poll(lang, sig)

    def access(request: gr.Request | None = None):
        """On page load: a member sees the export form disabled, with the reason."""
        return admin_controls(actor_of(request).is_admin, 6)

    gr.on(None, access, None, [admin_note, model, action, repo, private, start, cancel], api_name="exports_access",
          api_visibility="private", show_progress="hidden")
    action.change(lambda a: gr.update(visible=a == "push"), [action], [push_row], api_name=False, show_progress="hidden")
    start.click(submit, [model, action, repo, private, lang_state], [table], api_name=False)
    gr.api(export_model_api, api_name="export_model")
    cancel.click(stop, [lang_state], [table], api_name="cancel_export")
    timer = gr.Timer(2.0, active=False)
    timer.tick(poll, [lang_state, last], [table, last], api_name=False, show_progress="hidden")
    # The choices are read when the tab opens, not when the picker gets focus: new choices sent to an open
    # dropdown close it under the user's pointer.
    refresh = {"fn": show, "inputs": [lang_state, last], "outputs": [model, table, last], "show_progress": "hidden"}
    return ExportsPanel(timer=timer, refresh=refresh)
