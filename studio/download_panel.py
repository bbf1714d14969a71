"""Hub downloads (in the Models tab): a Hub id in, a progress bar with bytes, files, rate and ETA, Cancel; the finished
model is registered as a base model and shows up in Start."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import gradio as gr
import pandas as pd

from engines.accounts import PermissionDenied
from engines.models.exports import ExportError, ExportJob, ExportManager
from studio.i18n import Translatable, t
from studio.people import actor_of, admin_controls
from studio.services import Services

POLL_S = 1.0


def human_bytes(n: float | None) -> str:
    if not n:
        return "0 B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def _eta(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60:02d}s"


def download_progress_html(lang: str, job: ExportJob | None) -> str:
    """The newest download: a bar with bytes, files, rate and ETA while it runs; how it ended afterwards."""
    if job is None:
        return f"<div class='ft-progress empty' id='dl-progress' data-status='none'>{html.escape(t(lang, 'dl.none'))}</div>"
    d = job.detail
    done, total = int(d.get("bytes_done", 0)), int(d.get("bytes_total", 0))
    css = {"done": "completed", "error": "failed", "cancelled": "failed", "interrupted": "interrupted"}.get(job.status, "running")
    pct = 100.0 if job.status == "done" else job.pct
    if job.status == "running" and job.stage == "downloading":
        rate = float(d.get("rate", 0))
        detail = t(lang, "dl.detail", done=human_bytes(done), total=human_bytes(total), files=d.get("files_done", 0),
                   files_total=d.get("files_total", 0), rate=human_bytes(rate) + "/s",
                   eta=_eta((total - done) / rate) if rate > 0 and total > done else "–")
        label = t(lang, "dl.downloading", model=job.model)
    elif job.status == "running":
        detail, label = "", t(lang, "dl.preparing", model=job.model)
    elif job.status == "done":
        detail = t(lang, "dl.done_detail", size=human_bytes(total))
        label = t(lang, "dl.done", model=job.model)
    else:
        detail, label = "", t(lang, f"dl.{job.status}", model=job.model)
    error = f"<div class='ev-error'>{html.escape(job.error)}</div>" if job.error and job.status == "error" else ""
    return (f"<div class='ft-progress {css}' id='dl-progress' data-status='{job.status}' data-job='{html.escape(job.id)}' "
            f"data-done='{done}' data-total='{total}'>"
            f"<div class='ft-progress-head'><b>{html.escape(label)}</b><span>{html.escape(detail)}</span></div>"
            f"<div class='ft-bar'><div class='ft-bar-fill' style='width:{pct:.1f}%'></div></div>{error}</div>")


def downloads_frame(lang: str, jobs: list[ExportJob]) -> pd.DataFrame:
    cols = [t(lang, f"dl.col.{c}") for c in ("started", "model", "status", "size", "result")]
    rows = [[dt.datetime.fromtimestamp(j.started).strftime("%Y-%m-%d %H:%M"), j.model, t(lang, f"exp.status.{j.status}"),
             human_bytes(j.detail.get("bytes_total")) if j.detail.get("bytes_total") else "",
             j.result or j.error or ""] for j in jobs]
    return pd.DataFrame(rows, columns=cols)


def build_download_panel(services: Services, tr: Translatable, lang_state: Any, models_refresh: dict) -> gr.Timer:
    """Build the panel; returns its poll timer (inactive: app.py runs it only while the Models tab is open).
    `models_refresh` (the Models tab's refresh spec) is re-run when a download finishes, so Start offers the model."""
    settings = services.settings
    lang0 = settings.ui_language
    manager = ExportManager(settings)

    def downloads() -> list[ExportJob]:
        return [j for j in manager.jobs() if j.action == "download"]

    def current(jobs: list[ExportJob], job_id: str | None) -> ExportJob | None:
        return next((j for j in jobs if j.id == job_id), None) or next((j for j in jobs if j.status == "running"),
                                                                         jobs[0] if jobs else None)

    jobs0 = downloads()
    offline = settings.offline_mode
    with tr.add(gr.Accordion(t(lang0, "dl.title"), open=any(j.status == "running" for j in jobs0), elem_id="dl-panel"),
                label="dl.title"):
        tr.add(gr.Markdown(t(lang0, "dl.offline" if offline else "dl.help")), value="dl.offline" if offline else "dl.help")
        admin_note = tr.add(gr.Markdown(t(lang0, "models.admin_only"), visible=False, elem_id="dl-admin-only"),
                            value="models.admin_only")
        with gr.Row(equal_height=True):
            repo = tr.add(gr.Textbox(label=t(lang0, "dl.repo"), placeholder="Qwen/Qwen2.5-0.5B-Instruct", scale=3,
                                     elem_id="dl-repo", interactive=not offline), label="dl.repo")
            revision = tr.add(gr.Textbox(label=t(lang0, "dl.revision"), placeholder="main", scale=1, elem_id="dl-revision",
                                         interactive=not offline), label="dl.revision")
        with gr.Row():
            start = tr.add(gr.Button(t(lang0, "dl.start"), variant="primary", elem_id="dl-start", interactive=not offline),
                           value="dl.start")
            cancel = tr.add(gr.Button(t(lang0, "dl.cancel"), variant="stop", elem_id="dl-cancel"), value="dl.cancel")
        progress = gr.HTML(download_progress_html(lang0, current(jobs0, None)), elem_id="dl-progress-box", padding=False)
        table = tr.add(gr.Dataframe(downloads_frame(lang0, jobs0), interactive=False, wrap=True, max_height=220, elem_id="dl-jobs"),
                       render=lambda lang: downloads_frame(lang, downloads()))
    job_state = gr.State("")
    last = gr.State("")

    def submit(repo_v: str, revision_v: str, lang: str, request: gr.Request | None = None):
        try:
            job_id = manager.submit_download(repo_v, revision_v, actor=actor_of(request))
        except PermissionDenied:
            raise gr.Error(t(lang, "models.admin_only")) from None
        except ExportError as exc:
            raise gr.Error(str(exc)) from None
        jobs = downloads()
        return job_id, download_progress_html(lang, current(jobs, job_id)), downloads_frame(lang, jobs)

    def stop(job_id: str, lang: str, request: gr.Request | None = None):
        actor = actor_of(request)
        jobs = downloads()
        job = current(jobs, job_id)
        try:
            cancelled = job is not None and job.status == "running" and manager.cancel(job.id, actor=actor)
        except PermissionDenied:
            raise gr.Error(t(lang, "models.admin_only")) from None
        if not cancelled:
            raise gr.Error(t(lang, "dl.nothing_to_cancel"))
        gr.Info(t(lang, "dl.cancelled", model=job.model))
        jobs = downloads()
        return download_progress_html(lang, current(jobs, job.id)), downloads_frame(lang, jobs)

    # The UI keeps the job it started in session state; the API hands its id back and takes it in.
    def download_model_api(repo: str, revision: str = "", lang: str = "", request: gr.Request = None) -> str:
        """Start a Hub download (admins only); returns the job id (watch it in /list_downloads)."""
        return submit(repo, revision, lang or lang0, request)[0]

    def cancel_download_api(job_id: str, lang: str = "", request: gr.Request = None) -> str:
        """Cancel a running download by its job id (its partial files are removed)."""
        lang = lang or lang0
        job = next((j for j in downloads() if j.id == job_id), None)
        if job is None or job.status != "running":
            raise gr.Error(t(lang, "dl.nothing_to_cancel"))
        stop(job.id, lang, request)
        return t(lang, "dl.cancelled", model=job.model)

    def list_downloads_api() -> list[dict[str, Any]]:
        """Every download job: id, model, status, percent done, result or error."""
        return [{"id": j.id, "model": j.model, "status": j.status, "pct": j.pct, "result": j.result, "error": j.error}
                for j in downloads()]

    def poll(job_id: str, lang: str, sig: str):
        jobs = downloads()
        job = current(jobs, job_id)
        new = f"{lang}|" + "|".join(f"{j.id}:{j.status}:{j.pct}:{j.detail.get('bytes_done')}" for j in jobs)
        if new == sig:
            return gr.skip(), gr.skip(), sig, gr.skip(), gr.skip()
        # A download that just finished is registered by manager.jobs(): refresh the models table and Start's choices.
        finished = job is not None and job.status == "done" and f"{job.id}:done" not in sig
        models = models_refresh["fn"](lang) if finished else (gr.skip(), gr.skip())
        return download_progress_html(lang, job), downloads_frame(lang, jobs), new, *models

    def access(request: gr.Request | None = None):
        """On page load: a member sees the download form disabled, with the reason."""
        return admin_controls(actor_of(request).is_admin, 4, enabled=not offline)

    gr.on(None, access, None, [admin_note, repo, revision, start, cancel], api_name="download_access",
          api_visibility="private", show_progress="hidden")
    start.click(submit, [repo, revision, lang_state], [job_state, progress, table], api_name=False)
    cancel.click(stop, [job_state, lang_state], [progress, table], api_name=False)
    gr.api(download_model_api, api_name="download_model")
    gr.api(cancel_download_api, api_name="cancel_download")
    gr.api(list_downloads_api, api_name="list_downloads")
    timer = gr.Timer(POLL_S, active=False)
    timer.tick(poll, [job_state, lang_state, last], [progress, table, last, *models_refresh["outputs"]], api_name=False,
               show_progress="hidden")
    return timer
