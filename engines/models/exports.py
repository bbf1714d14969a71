"""Model jobs (merge, GGUF, push to the Hub, download from the Hub) as detached subprocesses whose state lives in files.

Each job is a folder under exports/jobs with job.json, events.jsonl, export.log and pid: closing the browser or
restarting the app loses nothing (the job keeps running, and its folder says how it ended). A finished download is
registered in the model catalogue the first time the app reads its job, so it is there even if nobody was watching.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from engines.accounts import Actor, require_admin
from engines.events import read_events
from engines.models.download import remove_partial_files
from engines.models.folders import model_folder
from engines.paths import is_inside
from engines.processes import pid_alive, spawn_detached, stop_tree
from engines.settings import Settings, environment_for_children
from storage import catalog

REPO = Path(__file__).resolve().parents[2]
ACTIONS = ("merge", "gguf", "push", "download")
REVISION = re.compile(r"^[\w./-]{1,100}$")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
JOB_ID = re.compile(r"^\d{8}-\d{6}-[a-z]+-[\w.-]{1,80}$")  # as _spawn names them: never '..' or a '/'
DOWNLOAD_ACTION = "download models"  # PermissionDenied says "Only an admin can download models."
EXPORT_ACTION = "export models"


class ExportError(ValueError):
    """The export cannot start; the message is for the user."""


@dataclass
class ExportJob:
    id: str
    action: str
    model: str
    status: str  # running | done | error | cancelled | interrupted
    stage: str = ""
    pct: float = 0.0
    result: str | None = None
    error: str | None = None
    started: float = 0.0
    detail: dict = field(default_factory=dict)  # the last progress event (bytes and files for a download)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-")[:80] or "model"


class ExportManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.exports_path / "jobs"

    def _sources(self, model: str) -> tuple[Path | None, Path | None]:
        """(adapter folder, base model folder) for a catalogue name (a base has no adapter)."""
        entry = catalog.get_model(model)
        if entry is not None and entry.kind == "adapter":
            adapter = Path(entry.path) if entry.path else None
            if adapter is not None and not is_inside(adapter, self.settings.data_roots):  # a row never makes us read outside
                raise ExportError(f"The adapter folder of {model} is not inside the studio's data folders.")
            return adapter, model_folder(self.settings, entry.parent or "")
        return None, model_folder(self.settings, model)

    def submit(self, action: str, model: str, *, actor: Actor, repo_id: str = "", private: bool = True,
               dtype: str = "bfloat16") -> str:
        """Start a merge / GGUF / push job (admins only); returns its id."""
        require_admin(actor, EXPORT_ACTION)
        if action not in ACTIONS or action == "download":
            raise ExportError(f"Unknown export {action!r}.")
        adapter, base = self._sources(model)
        if adapter is not None and not (adapter / "adapter_config.json").is_file():
            raise ExportError(f"The adapter folder of {model} is missing ({adapter}).")
        if base is None:
            raise ExportError(f"No local folder for the base model of {model}: it must be on disk to export.")
        name = _safe(model)
        job: dict = {"action": action, "model": model, "adapter": str(adapter) if adapter else None, "base": str(base)}
        if action == "merge":
            if adapter is None:
                raise ExportError(f"{model} is a base model: merging needs an adapter.")
            job |= {"out": str(self.settings.exports_path / "merged" / f"{name}-merged"), "dtype": dtype}
        elif action == "gguf":
            job |= {"out": str(self.settings.exports_path / "gguf" / f"{name}.gguf")}
        else:
            if not REPO_ID.match(repo_id or ""):
                raise ExportError("Give the Hub repository as owner/name (letters, digits, '-', '_', '.').")
            if not self.settings.huggingface_token:
                raise ExportError("Pushing needs HUGGINGFACE_TOKEN in .env (then restart the studio).")
            job |= {"repo_id": repo_id, "private": bool(private), "folder": str(adapter or base)}
        return self._spawn(action, name, job)

    def submit_download(self, repo_id: str, revision: str = "", *, actor: Actor) -> str:
        """Download a Hub model into the hub cache (admins only; resumes what an earlier, stopped download left)."""
        require_admin(actor, DOWNLOAD_ACTION)
        repo_id, revision = (repo_id or "").strip(), (revision or "").strip()
        if not REPO_ID.match(repo_id):
            raise ExportError("Give the Hub model as owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct.")
        if revision and (not REVISION.match(revision) or ".." in revision):
            raise ExportError("A revision is a branch, tag or commit hash (letters, digits, '.', '_', '-', '/').")
        if self.settings.offline_mode:
            raise ExportError("The studio is offline (OFFLINE_MODE=true): downloads are off.")
        if self.running_download(repo_id) is not None:
            raise ExportError(f"{repo_id} is already downloading.")
        job = {"action": "download", "model": repo_id, "repo_id": repo_id, "revision": revision,
               "cache_dir": str(self.settings.models_path / "hub")}
        return self._spawn("download", _safe(repo_id), job)

    def running_download(self, repo_id: str) -> ExportJob | None:
        """The download of `repo_id` that is running now, if any."""
        return next((j for j in self.jobs() if j.action == "download" and j.model == repo_id and j.status == "running"), None)

    def cancel(self, job_id: str, *, actor: Actor) -> bool:
        """Stop a running job (its whole process tree; admins only); False when it was not running."""
        j = self.job(job_id)
        require_admin(actor, DOWNLOAD_ACTION if j is not None and j.action == "download" else EXPORT_ACTION)
        folder = self.root / job_id
        if j is None or j.status != "running" or not (folder / "pid").is_file():
            return False
        (folder / "cancelled").touch()
        pid = int((folder / "pid").read_text())
        if stop_tree(pid, grace=10.0):  # nothing half-written is left to be mistaken for a result
            spec = json.loads((folder / "job.json").read_text(encoding="utf-8"))
            if j.action == "download":
                remove_partial_files(Path(spec["cache_dir"]), spec["repo_id"])
            elif j.action == "merge":
                shutil.rmtree(Path(spec["out"] + ".partial"), ignore_errors=True)
            elif j.action == "gguf":
                Path(spec["out"]).unlink(missing_ok=True)
        return True

    def _spawn(self, action: str, name: str, job: dict) -> str:
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{action}-{name}"
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=False)
        (folder / "job.json").write_text(json.dumps(job, indent=2), encoding="utf-8")
        # Its own session: it outlives a closed app, and Cancel stops its whole tree. Merge and GGUF need torch and
        # transformers, which the UI's own environment does not have in the Docker layout: run in SERVER_PYTHON's.
        proc = spawn_detached([self.settings.server_python, "-m", "engines.models.export", str(folder)],
                              log_path=folder / "export.log",
                              env=environment_for_children(self.settings), cwd=REPO)
        (folder / "pid").write_text(str(proc.pid))
        return job_id

    def job(self, job_id: str) -> ExportJob | None:
        """A job by its id (its folder's name); None for an unknown id or one that is not a plain folder name."""
        if not JOB_ID.match(job_id or ""):
            return None
        folder = self.root / job_id
        if not (folder / "job.json").is_file():
            return None
        spec = json.loads((folder / "job.json").read_text(encoding="utf-8"))
        events, _ = read_events(folder / "events.jsonl") if (folder / "events.jsonl").exists() else ([], 0)
        j = ExportJob(job_id, spec["action"], spec["model"], "running", started=(folder / "job.json").stat().st_mtime)
        for ev in events:
            if ev["type"] == "progress":
                j.stage, j.pct = ev.get("stage", ""), float(ev.get("pct", 0))
                j.detail = {k: v for k, v in ev.items() if k not in ("t", "type", "stage", "pct")}
            elif ev["type"] == "done":
                j.status, j.result, j.pct = "done", ev.get("result"), 100.0
            elif ev["type"] == "error":
                j.status, j.error = "error", ev.get("message")
        if j.status == "running":
            pid = int((folder / "pid").read_text()) if (folder / "pid").is_file() else None
            if (folder / "cancelled").exists():
                j.status = "cancelled"
            elif pid is None and time.time() - j.started < 30:
                pass  # spawned a moment ago: its pid file is being written
            elif not pid_alive(pid):
                j.status, j.error = "interrupted", "The job's process ended without a result (see export.log)."
        if j.status == "done" and j.action == "download" and not (folder / "registered").exists():
            catalog.upsert_model(j.model, "base", path=j.result)
            (folder / "registered").touch()
        return j

    def jobs(self, limit: int = 50) -> list[ExportJob]:
        if not self.root.is_dir():
            return []
        folders = sorted((p for p in self.root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)[:limit]
        return [j for p in folders if (j := self.job(p.name))]

    def wait(self, job_id: str, timeout: float = 600.0) -> ExportJob | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            j = self.job(job_id)
            if j is None or j.status != "running":
                return j
            time.sleep(0.5)
        return self.job(job_id)
