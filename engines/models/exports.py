"""Model jobs (merge, GGUF, push to the Hub, download from the Hub) as detached subprocesses whose state lives in files.

Each job is a folder under exports/jobs with job.json, events.jsonl, export.log and pid: closing the browser or
restarting the app loses nothing (the job keeps running, and its folder says how it ended). A finished download is
registered in the model catalogue the first time the app reads its job, so it is there even if nobody was watching.

With RAY_ADDRESS (the setting that sends fine-tunes to Ray), a merge runs as a Ray job through the `ray` job backend
instead (engines/compute; GGUF, push and download stay local). Its job.json says `"compute": "ray"` and remote.json
holds the Ray submission id instead of a pid. The bundle carries the adapter; the node reads the base model where it
sees MODEL_CACHE_DIR (RAY_MODELS_PATH, as for fine-tunes). Reading the job pulls the worker's new events and log lines
from the Ray job's log into events.jsonl and export.log; the worker's `done` names the merged folder in the MLflow
artifact store, and the studio then downloads it into the job's folder and moves it, whole, to the same `out` a local
merge writes, before it appends its own `done`. Status comes from the cluster (not a pid), so an app restart sees
the job as it is.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from engines.accounts import Actor, require_admin
from engines.compute import ComputeError, JobBackend, JobBundle, JobRef, JobState, mlflow_store
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
log = structlog.get_logger(__name__)

# A merge on Ray. The worker's code it carries: export.py imports nothing else of the repo at its top (merge needs
# torch/transformers/peft, storing needs mlflow: the node's environment). engines/models/__init__.py is left out on
# purpose: it imports the registry; without it engines.models is a namespace package on the node.
WORKER = "engines.models.export"
EXPORT_CODE = ("engines/__init__.py", "engines/events.py", "engines/models/export.py")
REMOTE_FILE = "remote.json"  # where a remote job runs: {"compute": "ray", "job_id": …, "address": …}
BUNDLE_JOB = "bundle-job.json"  # the job.json a remote worker gets (paths relative to its bundle or on its node)
FETCHED = "merged"  # in the job's folder: the download from the artifact store, moved to `out` once whole
SUBMIT_GRACE_S = 180.0  # a remote job with no submission id yet is still being sent (its files uploaded)
READ_TIMEOUT_S = 5.0  # each call to the Ray cluster for a merge (the upload at submit takes as long as it needs)
STOP_GRACE_S = 10.0  # Ray's SIGKILL follows its SIGTERM after this (a merge has nothing to save)
_fetching: set[str] = set()  # remote merges whose result this process is downloading
_fetching_lock = threading.Lock()


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
    compute: str = "local"  # where it runs: local (a subprocess here) or ray (a Ray job)
    remote_job_id: str | None = None  # the Ray submission id of a remote job


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-")[:80] or "model"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _append_event(folder: Path, type_: str, **fields: Any) -> None:
    """An event the studio itself adds to a remote job's events file (its final `done`, an error of its own)."""
    line = json.dumps({"t": round(time.time(), 3), "type": type_, **fields}, ensure_ascii=False)
    with open(folder / "events.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


@contextmanager
def _locked(path: Path, *, wait: bool) -> Iterator[bool]:
    """An advisory lock on a file in a job's folder, across threads and processes (gone with a dead process);
    yields False when `wait` is off and someone else holds it."""
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def node_model_path(settings: Settings, path: str) -> str:
    """Where a Ray node reads a base model: the same path, or under RAY_MODELS_PATH for one in MODEL_CACHE_DIR
    (as for fine-tunes)."""
    mapped = settings.ray_models_path
    if mapped and is_inside(path, (settings.models_path,)):
        return str(Path(mapped) / Path(path).resolve().relative_to(settings.models_path))
    return path


class ExportManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.exports_path / "jobs"
        self._ray_backend: JobBackend | None = None

    def _ray(self) -> JobBackend | None:
        """The Ray job backend (made when first needed); None when RAY_ADDRESS is not set."""
        if self._ray_backend is None and self.settings.ray_address:
            from engines.compute.ray_jobs import RayBackend

            # Read on every refresh of the exports table: a cluster that does not answer must not hold it for 2 × 15 s.
            self._ray_backend = RayBackend(self.settings, timeout=READ_TIMEOUT_S)
        return self._ray_backend

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
        if action == "merge" and self.settings.compute == "ray":  # only merges: GGUF, push and download stay here
            return self._submit_remote(name, job)
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
        """Stop a running job (its whole process tree, or its Ray job; admins only); False when it was not running."""
        j = self.job(job_id)
        require_admin(actor, DOWNLOAD_ACTION if j is not None and j.action == "download" else EXPORT_ACTION)
        folder = self.root / job_id
        if j is not None and j.compute == "ray":
            return j.status == "running" and self._cancel_remote(job_id, folder)
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

    def _new_folder(self, action: str, name: str, job: dict) -> tuple[str, Path]:
        """A new job's id and folder, with its job.json."""
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{action}-{name}"
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=False)
        (folder / "job.json").write_text(json.dumps(job, indent=2), encoding="utf-8")
        return job_id, folder

    def _spawn(self, action: str, name: str, job: dict) -> str:
        job_id, folder = self._new_folder(action, name, job)
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
        if spec.get("compute") == "ray":
            return self._remote_job(job_id, folder, spec)
        j, _ = self._read(job_id, folder, spec)
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

    def _read(self, job_id: str, folder: Path, spec: dict) -> tuple[ExportJob, dict | None]:
        """The job as its events file tells it, and a remote worker's `done` whose result is still in the artifact
        store (not fetched yet: the job still runs)."""
        events, _ = read_events(folder / "events.jsonl") if (folder / "events.jsonl").exists() else ([], 0)
        j = ExportJob(job_id, spec["action"], spec["model"], "running", started=(folder / "job.json").stat().st_mtime,
                      compute=spec.get("compute") or "local")
        stored = None
        for ev in events:
            if ev["type"] == "progress":
                j.stage, j.pct = ev.get("stage", ""), float(ev.get("pct", 0))
                j.detail = {k: v for k, v in ev.items() if k not in ("t", "type", "stage", "pct")}
            elif ev["type"] == "done" and ev.get("artifact"):
                stored = ev
                j.stage, j.pct = "downloading the merged model from the MLflow artifact store", 95.0
            elif ev["type"] == "done":
                j.status, j.result, j.pct = "done", ev.get("result"), 100.0
            elif ev["type"] == "error":
                j.status, j.error = "error", ev.get("message")
            elif ev["type"] == "cancelled":  # a remote worker that was stopped (by Cancel, or on the cluster)
                j.status = "cancelled"
        return j, stored

    # ---- merges on Ray ----------------------------------------------------------------------------------------------
    def _submit_remote(self, name: str, job: dict) -> str:
        """Send a merge to the Ray cluster as a job; returns its id at once. A refused or unreachable cluster makes it
        an error job with one sentence, as a local worker's failure would."""
        job_id, folder = self._new_folder("merge", name, job | {"compute": "ray"})
        remote_job = {"action": "merge", "model": job["model"], "name": job_id, "adapter": "adapter",
                      "base": node_model_path(self.settings, job["base"]), "dtype": job["dtype"],
                      "tracking_uri": self.settings.mlflow_tracking_uri}
        (folder / BUNDLE_JOB).write_text(json.dumps(remote_job, indent=2), encoding="utf-8")
        bundle = JobBundle(key=0, name=job_id, folder=folder, module=WORKER, code=EXPORT_CODE, grace_s=STOP_GRACE_S,
                           files={"job.json": folder / BUNDLE_JOB, "adapter": Path(job["adapter"])}, log="export.log")
        backend = self._ray()
        assert backend is not None  # settings.compute is "ray" only with RAY_ADDRESS
        try:
            submitted = backend.submit(bundle)
        except ComputeError as exc:
            _append_event(folder, "error", message=f"The merge could not be sent to the Ray cluster: {exc}")
            return job_id
        (folder / REMOTE_FILE).write_text(json.dumps({"compute": backend.name, "job_id": submitted.job_id,
                                                      "address": self.settings.ray_address}), encoding="utf-8")
        log.info("export.submitted", job=job_id, compute=backend.name, remote_job=submitted.job_id)
        if (folder / "cancelled").exists():  # cancelled while its files were being sent: stop it at once
            self._stop_remote(folder, backend)
        return job_id

    def _ref(self, folder: Path) -> JobRef | None:
        """What the Ray backend knows a remote job by; None before it was accepted."""
        job_id = _read_json(folder / REMOTE_FILE).get("job_id")
        return JobRef(key=0, folder=folder, job_id=job_id, log="export.log") if job_id else None

    def _remote_job(self, job_id: str, folder: Path, spec: dict) -> ExportJob:
        """A merge on Ray: its events so far, then (while it runs) the cluster's word on it and the new lines of its
        log; a stored result starts its download."""
        j, stored = self._read(job_id, folder, spec)
        ref = self._ref(folder)
        j.remote_job_id = ref.job_id if ref else None
        if j.status != "running":
            return j
        if (folder / "cancelled").exists():
            j.status = "cancelled"
            return j
        if stored is not None:
            self._start_fetch(job_id, folder, spec, stored)
            return j
        if ref is None:
            if time.time() - j.started > SUBMIT_GRACE_S:
                j.status, j.error = "interrupted", "The merge was never accepted by the Ray cluster."
            else:
                j.stage = "sending to the Ray cluster"
            return j
        backend = self._ray()
        if backend is None:
            j.status, j.error = "interrupted", ("This merge was sent to a Ray cluster, which this studio is not configured "
                                                "for now (set RAY_ADDRESS to the cluster's dashboard URL).")
            return j
        state = self._sync(backend, ref)
        if state is None or not state.reachable:  # another thread is reading its log, or the cluster does not answer
            if state is not None:
                j.stage = "the Ray cluster does not answer"
            return j
        now, stored = self._read(job_id, folder, spec)
        now.remote_job_id = j.remote_job_id
        if now.status != "running":
            return now
        if stored is not None:
            self._start_fetch(job_id, folder, spec, stored)
        elif state.pending:
            now.stage = now.stage or "waiting for the Ray cluster's resources"
        elif not state.alive:
            now.status = "interrupted"
            now.error = state.message or f"The Ray job ended without a result (exit code {state.exit_code}; see export.log)."
        return now

    def _sync(self, backend: JobBackend, ref: JobRef) -> JobState | None:
        """Ask the cluster about the job and bring its new events and log lines into its folder (one reader at a time:
        None when another thread or process is at it)."""
        with _locked(ref.folder / ".sync.lock", wait=False) as mine:
            if not mine:
                return None
            state = backend.status(ref)
            if state.reachable:
                backend.pull(ref, final=not state.alive)
            return state

    def _start_fetch(self, job_id: str, folder: Path, spec: dict, stored: dict) -> None:
        """Download a finished remote merge in a thread of its own (once per process; the lock in `_fetch` makes it
        once across processes), so reading the job never waits for it."""
        with _fetching_lock:
            if job_id in _fetching:
                return
            _fetching.add(job_id)
        threading.Thread(target=self._fetch, args=(job_id, folder, spec, stored), name=f"export-fetch-{job_id}",
                         daemon=True).start()

    def _fetch(self, job_id: str, folder: Path, spec: dict, stored: dict) -> None:
        """Bring the merged folder from the MLflow artifact store into the job's folder, then move it whole to `out`
        and say `done` (unless the job was cancelled meanwhile: then nothing is left)."""
        try:
            with _locked(folder / ".fetch.lock", wait=False) as mine:
                if not mine:
                    return
                j, _ = self._read(job_id, folder, spec)
                if j.status != "running" or (folder / "cancelled").exists():
                    return
                out = Path(spec["out"])
                if not is_inside(out, ((self.settings.exports_path / "merged"),)):  # job.json is a file: checked
                    _append_event(folder, "error", message="The merge's output folder is not inside the studio's exports.")
                    return
                try:
                    got = mlflow_store.download(self.settings.mlflow_tracking_uri or "", str(stored.get("mlflow_run_id")),
                                                str(stored["artifact"]), folder / FETCHED)
                except (ComputeError, OSError) as exc:
                    _append_event(folder, "error", message="The merge finished on the Ray cluster, but the merged model "
                                                           f"could not be fetched from the MLflow artifact store: {exc}")
                    return
                with _locked(folder / ".cancel.lock", wait=True):
                    if (folder / "cancelled").exists():
                        shutil.rmtree(got, ignore_errors=True)
                        return
                    out.parent.mkdir(parents=True, exist_ok=True)
                    if out.exists():
                        shutil.rmtree(out)
                    got.replace(out)  # same file system (both under exports): the folder appears whole
                    _append_event(folder, "done", result=str(out))
                log.info("export.fetched", job=job_id, out=str(out))
        except Exception as exc:  # noqa: BLE001  # a thread's error would vanish: the job says it instead
            log.error("export.fetch_failed", job=job_id, error=f"{exc.__class__.__name__}: {exc}"[:500])
            _append_event(folder, "error", message=f"Fetching the merged model failed: {exc.__class__.__name__}: {exc}")
        finally:
            with _fetching_lock:
                _fetching.discard(job_id)

    def _cancel_remote(self, job_id: str, folder: Path) -> bool:
        """Stop a merge's Ray job and wait (briefly) until the cluster says it ended; a result already in the artifact
        store is never fetched. False when it had finished meanwhile."""
        backend = self._ray()
        with _locked(folder / ".cancel.lock", wait=True):  # not while a fetched result is being moved into place
            j = self.job(job_id)
            if j is None or j.status != "running":
                return False
            (folder / "cancelled").touch()
        if backend is not None:
            self._stop_remote(folder, backend)
        shutil.rmtree(folder / FETCHED, ignore_errors=True)  # a finished download not moved into place (a crash)
        log.info("export.cancelled", job=job_id, remote_job=j.remote_job_id)
        return True

    def _stop_remote(self, folder: Path, backend: JobBackend) -> None:
        """Stop the Ray job (SIGTERM: the worker removes its scratch folder; SIGKILL after STOP_GRACE_S), wait until it
        has ended, and read its last log lines."""
        ref = self._ref(folder)
        if ref is None:
            return  # not accepted yet: `_submit_remote` stops it once it is
        try:
            backend.stop(ref)
        except ComputeError as exc:  # cancelled all the same: its result will never be fetched
            log.warning("export.stop_failed", folder=folder.name, error=str(exc)[:300])
            return
        deadline = time.monotonic() + STOP_GRACE_S + 10
        state = backend.status(ref)
        while state.alive and state.reachable and time.monotonic() < deadline:
            time.sleep(0.3)
            state = backend.status(ref)
        with _locked(folder / ".sync.lock", wait=True):
            backend.pull(ref, final=not state.alive)

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
