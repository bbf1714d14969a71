"""Starting a model's server for a person: resolve the name (registry, catalogue, a local folder inside the model
roots, or a Hub id downloaded as an admin's job) and start its vLLM server in the background. The Models tab and the
REST API both call `start_model_server`."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engines.accounts import Actor, require_admin
from engines.models import resolve_base_model
from engines.models.exports import ExportManager
from engines.models.folders import base_model_problem
from engines.models.registry import ModelError, ModelRecord, local_model_folder, looks_like_hub_id, model_roots
from engines.paths import is_inside
from engines.serving.manager import SERVERS_ACTION, ServerManager
from engines.settings import Settings
from storage import catalog

DOWNLOAD_WAIT_S = 24 * 3600.0  # a start that needs a download waits for it (a 70B model takes hours)


@dataclass(frozen=True)
class StartRequest:
    """What a person asked to start (None: the setting, or a free port)."""

    model: str
    gpu: str | None = None
    port: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None


def resolve_record(settings: Settings, servers: ServerManager, name: str, *, actor: Actor) -> ModelRecord:
    """A servable record for a base model name: the registry's, the catalogue's folder, else resolve it (bundled,
    local folder inside MODEL_CACHE_DIR / MODEL_DIRS, or hub id; may convert or download, so call this off the UI
    thread). A hub id is downloaded as a job started by `actor`, so its progress shows with the other downloads."""
    rec = servers.registry.get(name)
    if rec is not None and rec.kind == "base":
        return rec
    for entry in catalog.list_models():
        if entry.name == name and entry.kind == "base" and entry.path:  # a row's path is checked like a typed one
            return ModelRecord(name=name, kind="base", source=str(local_model_folder(settings, entry.path)))
    # An org/name that is no folder inside the model roots is a hub id (nothing outside the roots is looked at).
    if looks_like_hub_id(name) and not is_inside(name, model_roots(settings)) and not settings.offline_mode:
        jobs = ExportManager(settings)
        running = jobs.running_download(name)
        job = jobs.wait(running.id if running else jobs.submit_download(name, actor=actor), timeout=DOWNLOAD_WAIT_S)
        if job is None or job.status != "done":
            raise ModelError(job.error if job and job.error else f"The download of {name} ended: {job.status if job else 'lost'}.")
        return ModelRecord(name=name, kind="base", source=job.result)
    return resolve_base_model(settings, name)


def start_model_server(settings: Settings, servers: ServerManager, request: StartRequest, *, actor: Actor,
                       no_serve: bool = False) -> tuple[str, threading.Thread | None]:
    """Start (or keep) the server of a base model in the background, for an admin: ("starting", thread), or
    (its status, None) when it is already starting or ready. ValueError when the studio manages no servers
    (`no_serve`) or the name is a folder outside the model roots (said now, not later in the server's state)."""
    require_admin(actor, SERVERS_ACTION)
    if no_serve:
        raise ValueError("This studio manages no model servers (it was started with --no-serve).")
    name = (request.model or "").strip()
    if not name:
        raise ValueError("Name the model to serve.")
    current = servers.status().get(name)
    if current is not None and current.status in ("starting", "ready"):
        return current.status, None
    if servers.registry.get(name) is None and (problem := base_model_problem(settings, name)):
        raise ValueError(problem)
    thread = servers.start_server(
        lambda: resolve_record(settings, servers, name, actor=actor), actor=actor, gpu=request.gpu, port=request.port,
        max_model_len=request.max_model_len, gpu_memory_utilization=request.gpu_memory_utilization,
    )
    return "starting", thread


def stop_model_server(servers: ServerManager, name: str, *, actor: Actor) -> None:
    """Stop a server and its whole process tree, for an admin; KeyError when no server has that name."""
    require_admin(actor, SERVERS_ACTION)
    if name not in servers.status():
        raise KeyError(name)
    servers.stop_server(name, actor=actor)
