"""JobManager: queue, spawn, watch, cancel, resume and reconcile training workers (runs inside the app).

A job is a row in training_runs plus a run dir (spec.json, job.json, events.jsonl, train.log,
checkpoints/, adapter/). Where the worker runs is a job backend (engines/compute): `local` — a subprocess in its
own process group with output to a file, so it outlives the browser and the app — or `ray` (RAY_ADDRESS), a job on
a Ray cluster whose events and log the backend copies into the run dir and whose adapter comes back through the
MLflow artifact store. The row records the backend and the remote job id; a restarted app asks that backend and
adopts a live worker or marks a dead one interrupted. Progress is read from the events file by offset.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from engines.accounts import Actor, require_owner
from engines.compute import ComputeError, JobBackend, JobBundle, JobRef, Submitted, backends_for, process_start_time
from engines.compute.local import LocalBackend, process_alive
from engines.datasets.files import DatasetFileError, file_kind, resolve_dataset, training_file
from engines.events import read_events
from engines.models.folders import base_model_problem  # only MODEL_CACHE_DIR / MODEL_DIRS folders
from engines.models.registry import ModelError, ModelRecord, resolve_base_model, served_name
from engines.paths import OutsideDataFolder, contained, is_inside
from engines.processes import tail
from engines.serving.manager import ServerManager
from engines.settings import Settings
from engines.training.hardware import list_gpus
from engines.training.spec import SpecError, TrainSpec, spec_to_yaml, validate_spec
from storage import catalog, runs
from storage.models import TrainingRun, utcnow

log = structlog.get_logger(__name__)
WORKER = "engines.training.worker"
# The worker's own code, carried by a remote job (a Ray node needs the Python environment, not a studio checkout).
# tests/unit/test_compute.py checks that the worker imports nothing else from the repo.
# A remote job's log is fetched whole by Ray's job-logs API: every tick, on a small head, that is a steady load on the
# dashboard beside the training (a job on the same 2-core machine trained ~13% slower with it at 10 per second). Once
# the first step is seen, it is read this often.
REMOTE_PULL_S = 3.0
WORKER_CODE = ("engines/__init__.py", "engines/events.py", "engines/chat_templates.py", "engines/training")

__all__ = ["History", "JobManager", "process_start_time", "served_base_name", "worker_alive"]


def worker_alive(run: TrainingRun) -> bool:
    """A local run's worker process (not one that reused its pid) is still running."""
    return process_alive(run.pid, run.pid_started)


@dataclass
class History:
    """Curves and log lines of one run, read from its events file by offset (for plots and the log tail)."""

    offset: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, Any] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)


class JobManager:
    def __init__(
        self, settings: Settings, servers: ServerManager | None = None, *, poll_s: float = 1.0, serve_adapters: bool = True
    ) -> None:
        self.settings = settings
        self.servers = servers
        self.serve_adapters = serve_adapters  # False with --no-serve: never start a model server
        self.poll_s = poll_s
        # Job backends by name (local always; ray with RAY_ADDRESS); new runs go to settings.compute's.
        self.backends: dict[str, JobBackend] = backends_for(settings, local_slots=[str(g.index) for g in list_gpus()] or [None])
        self.backend = self.backends[settings.compute]
        self.slots: list[str | None] = self.backend.slots()  # locally one job per GPU, one on CPU
        self._slot_of: dict[int, str | None] = {}
        self._fetching: set[int] = set()  # remote runs whose adapter is being downloaded from the artifact store
        self._kill_at: dict[int, float] = {}
        self._pulled_at: dict[int, float] = {}  # when a remote run's log was last read (monotonic)
        self._history: dict[int, History] = {}
        self._preparing: dict[int, str | None] = {}  # queued runs whose base model is being resolved -> their slot
        self._download: dict[int, dict[str, Any]] = {}  # their download's last progress
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_change: Callable[[int], None] | None = None
        settings.runs_path.mkdir(parents=True, exist_ok=True)

    # ---- planning -------------------------------------------------------------------
    def command(self, run_dir: Path) -> list[str]:
        """The exact argv of a local worker (a list: never a shell string)."""
        return LocalBackend(self.settings).command(WORKER, run_dir)

    def folder(self, run: TrainingRun) -> Path:
        """A run's folder, resolved. The row is not trusted (an archive or a hand edit may have written it): a folder
        that is not below the runs folder raises OutsideDataFolder, and nothing there is read, written or started."""
        path = contained(run.run_dir, (self.settings.runs_path,), what="run's folder")
        if path == self.settings.runs_path:
            raise OutsideDataFolder("The run's folder is not inside the studio's data folders.")
        return path

    def command_preview(self, output_name: str) -> str:
        if self.settings.compute == "ray":  # what the Ray backend submits, as the Ray Jobs CLI would say it
            entry = shlex.join([self.settings.ray_worker_python, "-m", WORKER, "--bundle", "."])
            return f"ray job submit --address {self.settings.ray_address} --working-dir <bundle of {output_name}> -- {entry}"
        return shlex.join(self.command(self.settings.runs_path / output_name))

    # ---- job backends ---------------------------------------------------------------------------------------------
    def backend_of(self, run: TrainingRun) -> JobBackend | None:
        """The backend a run was started on (None: a backend this studio is not configured for, e.g. a Ray run after
        RAY_ADDRESS was removed); a run not started yet goes to the default one."""
        if run.compute is None and run.status == "queued":
            return self.backend
        return self.backends.get(run.compute or "local")

    def job_ref(self, run: TrainingRun, run_dir: Path | None = None) -> JobRef:
        """What the run's backend knows it by (pid and start time, or the remote job id) and its folder."""
        return JobRef(key=run.id, folder=run_dir or Path(run.run_dir), job_id=run.remote_job_id, pid=run.pid,
                      pid_started=run.pid_started)

    def _elsewhere(self, run: TrainingRun) -> str:
        return (f"This run was started on the {run.compute} job backend, which this studio is not configured for"
                + (" (set RAY_ADDRESS to the cluster's dashboard URL)." if run.compute == "ray" else "."))

    def validate(self, data: dict[str, Any]) -> TrainSpec:
        """A spec ready to queue, or SpecError with a message per field (name taken, file missing, rank too big…)."""
        spec = validate_spec(data, max_lora_rank=self.settings.vllm_max_lora_rank)
        problems: dict[str, str] = {}
        if runs.run_by_name(spec.output_name) or catalog.get_model(spec.output_name):
            problems["output_name"] = f"{spec.output_name!r} is taken by another run or model; choose a new name"
        elif (self.settings.runs_path / spec.output_name).exists():
            problems["output_name"] = f"a run folder named {spec.output_name!r} already exists"
        try:
            kind = file_kind(resolve_dataset(self.settings, spec.dataset))
            if spec.objective == "sft" and kind == "preference":
                problems["dataset"] = "a preference dataset (prompt, chosen, rejected) trains with objective dpo or orpo"
            elif spec.objective != "sft" and kind != "preference":
                problems["dataset"] = f"{spec.objective.upper()} trains on a preference dataset (prompt, chosen, rejected)"
        except DatasetFileError as exc:
            problems["dataset"] = str(exc)
        if spec.sft_adapter:
            try:
                self.sft_adapter_path(spec)
            except ValueError as exc:
                problems["sft_adapter"] = str(exc)
        if (base_problem := base_model_problem(self.settings, spec.base_model)) is not None:
            problems["base_model"] = base_problem
        if problems:
            raise SpecError(problems)
        return spec

    def sft_adapter_path(self, spec: TrainSpec) -> Path | None:
        """The adapter folder of the completed run a second stage continues from (same base model, inside
        DATA_DIR/runs); ValueError says what is wrong, in one sentence."""
        if not spec.sft_adapter:
            return None
        run = runs.run_by_name(spec.sft_adapter)
        if run is None or run.status != "completed" or not run.adapter_path:
            raise ValueError(f"no completed fine-tune run named {spec.sft_adapter!r}")
        if run.base_model != spec.base_model:
            raise ValueError(f"{spec.sft_adapter!r} was trained on {run.base_model}, not {spec.base_model}")
        try:
            path = contained(run.adapter_path, (self.settings.runs_path,), what="adapter folder")
        except OutsideDataFolder:
            raise ValueError(f"the adapter of {spec.sft_adapter!r} is not inside the studio's runs folder") from None
        if not (path / "adapter_config.json").is_file():
            raise ValueError(f"the adapter folder of {spec.sft_adapter!r} is gone")
        return path

    def validate_request(self, data: dict[str, Any]) -> tuple[TrainSpec, int | None]:
        """Like `validate`, for a spec whose `dataset` may also be a dataset's id or name (its latest version) and
        which may name a saved version as `dataset_version_id`; returns the spec (with the version's file) and that
        version's id. SpecError carries every bad field, the dataset's included."""
        data = dict(data)
        problem = None
        try:
            data["dataset"], version_id = training_file(self.settings, data.get("dataset") or "", data.pop("dataset_version_id", None))
        except DatasetFileError as exc:
            problem, version_id = str(exc), None
            data["dataset"] = str(data.get("dataset") or "")
        try:
            spec = self.validate(data)
        except SpecError as exc:
            raise SpecError({**exc.fields, **({"dataset": problem} if problem else {})}) from None
        if problem:
            raise SpecError({"dataset": problem})
        return spec, version_id

    # ---- submit / cancel / resume ---------------------------------------------------------
    def submit(self, data: dict[str, Any] | TrainSpec, *, actor: Actor, dataset_version_id: int | None = None) -> int:
        """Queue a run owned by `actor` (runs are visible to the team; only the owner or an admin cancels/resumes it)."""
        spec = self.validate(data.model_dump() if isinstance(data, TrainSpec) else data)
        run_dir = self.settings.runs_path / spec.output_name
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / "spec.json").write_text(spec.model_dump_json(indent=2))
        (run_dir / "spec.yaml").write_text(spec_to_yaml(spec), encoding="utf-8")
        if dataset_version_id is None:  # a saved dataset version picked by its file: keep the lineage
            from storage import datasets as dstore

            found = dstore.version_by_path(str(resolve_dataset(self.settings, spec.dataset)))
            dataset_version_id = found.id if found else None
        row = runs.create_run(
            name=spec.output_name, base_model=spec.base_model, dataset=spec.dataset, method=spec.method,
            spec=spec.model_dump(), run_dir=str(run_dir), dataset_version_id=dataset_version_id, owner_id=actor.id,
        )
        log.info("train.queued", run=row.id, name=spec.output_name, base=spec.base_model, method=spec.method, owner=actor.name)
        self._wake.set()
        return row.id

    def cancel(self, run_id: int, *, actor: Actor) -> str:
        """Queued: cancelled at once. Running: SIGTERM (checkpoint, then exit), SIGKILL after the grace period."""
        with self._lock:
            run = runs.get_run(run_id)
            if run is None:
                raise KeyError(run_id)
            require_owner(actor, run.owner_id, "fine-tune run")
            if run.status == "queued":
                runs.finish_run(run_id, "cancelled")
                return "cancelled"
            if run.status != "running":
                return run.status
            try:
                run_dir = self.folder(run)  # a row pointing elsewhere names no worker of ours: signal nothing
            except OutsideDataFolder as exc:
                raise ValueError(f"{exc} The run cannot be cancelled from here.") from None
            backend = self.backend_of(run)
            if backend is None:
                raise ValueError(f"{self._elsewhere(run)} The run cannot be cancelled from here.")
            try:  # ask the worker to checkpoint and exit (SIGTERM; on Ray: stop the job, which sends SIGTERM)
                backend.stop(self.job_ref(run, run_dir))
            except ComputeError as exc:
                raise ValueError(f"The run could not be cancelled: {exc}") from None
            runs.update_run(run_id, cancel_requested=True)
            self._kill_at[run_id] = time.monotonic() + self.settings.train_cancel_grace
            log.info("train.cancel", run=run_id)
            self._wake.set()
            return "cancelling"

    def resume(self, run_id: int, *, actor: Actor) -> None:
        """Queue an interrupted, failed or cancelled run again; the worker continues from its last checkpoint."""
        run = runs.get_run(run_id)
        if run is None:
            raise KeyError(run_id)
        require_owner(actor, run.owner_id, "fine-tune run")
        if run.status not in runs.RESUMABLE:
            raise ValueError(f"Only {', '.join(runs.RESUMABLE)} runs can be resumed; this one is {run.status}.")
        try:
            self.folder(run)  # refused before queueing: no job.json, log line or worker outside the runs folder
        except OutsideDataFolder as exc:
            raise ValueError(f"{exc} The run cannot be resumed.") from None
        if self.backend_of(run) is None:  # its checkpoints are where it ran: it resumes there
            raise ValueError(f"{self._elsewhere(run)} The run cannot be resumed here.")
        runs.update_run(run_id, status="queued", error=None, cancel_requested=False, finished_at=None)
        self._wake.set()

    # ---- the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        """Reconcile rows left by an earlier app, register saved adapters, then watch in a thread."""
        self.register_saved_adapters()
        self.reconcile()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="train-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching (workers keep running: a later app adopts them)."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001  # the watcher must survive a bad row or a DB hiccup
                log.error("train.loop_error", error=f"{exc.__class__.__name__}: {exc}"[:500])
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def tick(self) -> None:
        """Watch running workers and hand free slots to queued runs. Fast: the lock is never held across a base
        model's resolution (a Hub download can take minutes); that happens in a thread per run (`_prepare`)."""
        with self._lock:
            for run in runs.list_runs(statuses=("running",)):
                self._poll(run)
            busy = {self._slot_of.get(r.id) for r in runs.list_runs(statuses=("running",))} | set(self._preparing.values())
            free = [s for s in self.slots if s not in busy]
            for nxt in reversed(runs.list_runs(statuses=("queued",))):  # oldest first
                if not free:
                    break
                if nxt.id in self._preparing:
                    continue
                try:
                    self.folder(nxt)
                except OutsideDataFolder as exc:  # a row queued by hand: fail it, writing and starting nothing
                    runs.finish_run(nxt.id, "failed", error=str(exc))
                    continue
                slot = free.pop(0)
                self._preparing[nxt.id] = slot
                self._download[nxt.id] = {}
                threading.Thread(target=self._prepare, args=(nxt.id, slot), name=f"train-prepare-{nxt.id}",
                                 daemon=True).start()

    def preparing(self, run_id: int) -> dict[str, Any] | None:
        """A queued run whose base model is being resolved: {} or the download's last progress (stage, pct,
        bytes_done, bytes_total, …); None when the run is not being prepared."""
        with self._lock:
            found = self._download.get(run_id)
            return None if found is None else dict(found)

    def reconcile(self) -> None:
        """Rows marked running by an earlier app: adopt a live worker, read a dead one's last events."""
        with self._lock:
            for run in runs.list_runs(statuses=("running",)):
                backend = self.backend_of(run)
                if backend is None:  # left running: a studio configured for that backend adopts it
                    log.warning("train.backend_missing", run=run.id, compute=run.compute, job=run.remote_job_id)
                    continue
                if backend.status(self.job_ref(run)).alive:
                    log.info("train.adopted", run=run.id, compute=backend.name, pid=run.pid, job=run.remote_job_id)
                    continue
                self._poll(run)

    # ---- spawn and watch ------------------------------------------------------------------------
    def _prepare(self, run_id: int, slot: str | None) -> None:
        """Resolve the run's base model and dataset without the lock (a download reports progress in the run's log),
        then start the worker unless the run was cancelled meanwhile."""
        try:
            run = runs.get_run(run_id)
            if run is None or run.status != "queued":
                return
            spec = TrainSpec(**json.loads(run.spec))
            try:
                run_dir = self.folder(run)
                progress = _DownloadLog(run_dir / "events.jsonl", spec.base_model, self._download.get(run_id, {}))
                model_path = resolve_base_model(self.settings, spec.base_model, progress=progress).source
                dataset_path = str(resolve_dataset(self.settings, spec.dataset))
                self._note_estimate(run, spec)
            except (ModelError, DatasetFileError, OutsideDataFolder) as exc:
                with self._lock:
                    if (now := runs.get_run(run_id)) is not None and now.status == "queued":
                        runs.finish_run(run_id, "failed", error=str(exc))
                        self._changed(run_id)
                return
            with self._lock:
                run = runs.get_run(run_id)
                if run is None or run.status != "queued":  # cancelled while the model was downloading: not started
                    return
                backend = self.backend_of(run)
                if backend is None:
                    runs.finish_run(run_id, "failed", error=self._elsewhere(run))
                    return
                bundle = self._bundle(run, slot, backend, model_path=model_path, dataset_path=dataset_path)
            try:  # outside the lock: sending a job to a cluster uploads its files
                submitted = backend.submit(bundle)
            except ComputeError as exc:
                with self._lock:
                    if (now := runs.get_run(run_id)) is not None and now.status == "queued":
                        runs.finish_run(run_id, "failed", error=f"The job could not be started: {exc}")
                        self._changed(run_id)
                return
            with self._lock:
                run = runs.get_run(run_id)
                if run is None or run.status != "queued":  # cancelled while it was being sent: stop it at once
                    backend.stop(JobRef(key=run_id, folder=bundle.folder, job_id=submitted.job_id, pid=submitted.pid,
                                        pid_started=submitted.pid_started), force=True)
                    return
                self._started(run, slot, backend, submitted)
        except Exception as exc:  # noqa: BLE001  # a thread's error would vanish: fail the run with it
            log.error("train.prepare_error", run=run_id, error=f"{exc.__class__.__name__}: {exc}"[:500])
            with self._lock:
                if (now := runs.get_run(run_id)) is not None and now.status == "queued":
                    runs.finish_run(run_id, "failed", error=f"{exc.__class__.__name__}: {exc}"[:500])
        finally:
            with self._lock:
                self._preparing.pop(run_id, None)
                self._download.pop(run_id, None)
            self._wake.set()

    def _note_estimate(self, run: TrainingRun, spec: TrainSpec) -> None:
        """Keep the FLOP model's time per step in a local run's metrics: once the run completes, its measured time
        corrects the next estimates on this machine (engines/training/calibration.py). Best effort."""
        backend = self.backend_of(run)
        if backend is None or backend.remote:
            return
        try:
            from engines.training.hardware import detect
            from engines.training.planning import estimate_for

            est = estimate_for(self.settings, spec, detect(), calibrate=False)
        except Exception as exc:  # noqa: BLE001  # an estimate is never a reason not to train
            log.warning("train.estimate_failed", run=run.id, error=str(exc)[:300])
            return
        if hasattr(est, "step_seconds"):
            note = {"step_s": round(est.step_seconds, 6), "steps": est.steps, "seconds": round(est.seconds, 1)}
            runs.update_run(run.id, metrics=runs.run_metrics(run) | {"estimate": note})

    def _bundle(self, run: TrainingRun, slot: str | None, backend: JobBackend, *, model_path: str,
                dataset_path: str) -> JobBundle:
        """Write job.json (what the worker is given) and name what a remote job carries (called with the lock held).
        A local worker reads the dataset and an SFT adapter where they are; a remote one gets copies in its bundle,
        named relative to it, and reads the base model where the nodes see it (RAY_MODELS_PATH)."""
        run_dir = self.folder(run)
        sft = self.sft_adapter_path(TrainSpec(**json.loads(run.spec)))
        job: dict[str, Any] = {
            "model_path": model_path, "dataset_path": dataset_path, "tracking_uri": self.settings.mlflow_uri,
            "artifact_root": str(self.settings.mlflow_artifacts_path), "backend": self.settings.train_backend,
            "resume": backend.has_checkpoint(self.job_ref(run, run_dir)), "mlflow_run_id": run.mlflow_run_id,
            "sft_adapter_path": _str_or_none(sft),
        }
        files: dict[str, Path] = {}
        if backend.remote:
            data_name = "dataset" + "".join(Path(dataset_path).suffixes[-2:])
            job.update(model_path=self._node_model_path(model_path), dataset_path=data_name, artifact_root=None, remote=True,
                       sft_adapter_path="sft_adapter" if sft else None)
            files = {"spec.json": run_dir / "spec.json", "job.json": run_dir / "job.json", data_name: Path(dataset_path)}
            if (run_dir / "spec.yaml").is_file():
                files["spec.yaml"] = run_dir / "spec.yaml"
            if sft:
                files["sft_adapter"] = sft
        (run_dir / "job.json").write_text(json.dumps(job, indent=2))
        return JobBundle(key=run.id, name=run.name, folder=run_dir, module=WORKER, files=files, code=WORKER_CODE,
                         slot=slot if not backend.remote else None, grace_s=self.settings.train_cancel_grace)

    def _node_model_path(self, model_path: str) -> str:
        """Where a Ray node reads the base model: the same path, or under RAY_MODELS_PATH for a model in MODEL_CACHE_DIR."""
        mapped = self.settings.ray_models_path
        if mapped and is_inside(model_path, (self.settings.models_path,)):
            rel = Path(model_path).resolve().relative_to(self.settings.models_path)
            return str(Path(mapped) / rel)
        return model_path

    def _started(self, run: TrainingRun, slot: str | None, backend: JobBackend, submitted: Submitted) -> None:
        """Record a worker the backend started (called with the lock held)."""
        self._slot_of[run.id] = slot
        runs.update_run(
            run.id, status="running", pid=submitted.pid, pid_started=submitted.pid_started, compute=backend.name,
            remote_job_id=submitted.job_id, started_at=utcnow(), heartbeat_at=utcnow(), error=None,
        )
        log.info("train.start", run=run.id, compute=backend.name, pid=submitted.pid, job=submitted.job_id, slot=slot)
        self._changed(run.id)

    def _poll(self, run: TrainingRun) -> None:
        backend = self.backend_of(run)
        try:
            run_dir = self.folder(run)
        except OutsideDataFolder as exc:  # never read events or a heartbeat from a folder a row points elsewhere
            if backend is not None:
                backend.forget(self.job_ref(run))
            self._slot_of.pop(run.id, None)
            runs.finish_run(run.id, "failed", error=str(exc))
            return
        if backend is None:  # a run on a backend this studio is not configured for: left as it is (reconcile says so)
            return
        ref = self.job_ref(run, run_dir)
        state = backend.status(ref)
        if not state.reachable:  # nothing is known (a cluster that does not answer): nothing is changed or given up
            log.warning("train.backend_unreachable", run=run.id, compute=backend.name, error=(state.message or "")[:300])
            return
        now_m = time.monotonic()
        # Every tick until its first step is seen (a short log then, and the person waits for the bar to move).
        if (not backend.remote or not state.alive or not run.step
                or now_m - self._pulled_at.get(run.id, 0.0) >= REMOTE_PULL_S):
            self._pulled_at[run.id] = now_m
            backend.pull(ref, final=not state.alive)  # a remote job's new events and log lines into the run dir
        events, offset = read_events(run_dir / "events.jsonl", run.events_offset)
        fields: dict[str, Any] = {"events_offset": offset}
        summary = runs.run_metrics(run)
        terminal: dict[str, Any] | None = None
        for ev in events:
            kind = ev.get("type")
            if kind == "start":
                fields.update(backend=ev.get("backend"), mlflow_run_id=ev.get("mlflow_run_id") or run.mlflow_run_id)
            elif kind == "progress":
                fields["step"] = ev.get("step", 0)
                fields["total_steps"] = ev.get("total_steps")
            elif kind == "metric":
                summary.update({k: v for k, v in ev.items() if k not in ("t", "type")})
            elif kind in ("done", "cancelled", "error"):
                terminal = ev
        beat = run_dir / "heartbeat"
        if beat.is_file():
            fields["heartbeat_at"] = utcnow() - _age(beat)
        elif backend.remote and state.alive:  # the cluster answered that the job runs
            fields["heartbeat_at"] = utcnow()
        fields["metrics"] = summary
        alive = state.alive
        if terminal is not None and alive:
            # The worker said its last word and is exiting (flushing MLflow): finish once the process is gone,
            # re-reading these events then; kill it if it lingers past the grace period.
            deadline = self._kill_at.setdefault(run.id, time.monotonic() + self.settings.train_cancel_grace)
            if time.monotonic() > deadline:
                self._stop(backend, ref, force=True)
            return
        if terminal is None:
            if alive:
                if run.id in self._kill_at and time.monotonic() > self._kill_at[run.id]:
                    log.warning("train.kill", run=run.id)
                    self._stop(backend, ref, force=True)
                runs.update_run(run.id, **fields)
                if events:
                    self._changed(run.id)
                return
            if run.cancel_requested:
                terminal = {"type": "cancelled"}
            elif state.message:
                terminal = {"type": "interrupted", "message": f"{state.message}; resume continues from the last checkpoint"}
            else:
                terminal = {"type": "interrupted", "message": f"the worker stopped without finishing (exit code "
                            f"{state.exit_code}); resume continues from the last checkpoint"}
        self._finish(run, terminal, fields)

    def _stop(self, backend: JobBackend, ref: JobRef, *, force: bool) -> None:
        try:
            backend.stop(ref, force=force)
        except ComputeError as exc:  # retried at the next tick
            log.warning("train.stop_failed", run=ref.key, error=str(exc)[:300])

    def _finish(self, run: TrainingRun, ev: dict[str, Any], fields: dict[str, Any], *, fetched: bool = False) -> None:
        kind = ev["type"]
        backend = self.backend_of(run)
        if kind == "done" and not fetched and backend is not None and backend.remote:
            # The adapter is in the artifact store: download it (not under the lock) before the run is completed.
            if run.id not in self._fetching:
                self._fetching.add(run.id)
                threading.Thread(target=self._fetch_adapter, args=(run.id, ev, fields), name=f"train-fetch-{run.id}",
                                 daemon=True).start()
            return
        if backend is not None:
            backend.forget(self.job_ref(run))
        self._slot_of.pop(run.id, None)
        self._kill_at.pop(run.id, None)
        self._pulled_at.pop(run.id, None)
        if kind == "done":
            fields["metrics"] = {**fields.get("metrics", {}), **{k: v for k, v in ev.items() if k not in ("t", "type", "adapter", "adapter_artifact")}}
            fields["step"] = ev.get("step", fields.get("step", run.step))
            runs.finish_run(run.id, "completed", adapter_path=ev.get("adapter"), **fields)
            log.info("train.done", run=run.id, name=run.name)
            self._register_adapter(runs.get_run(run.id))
        elif kind == "cancelled":
            runs.finish_run(run.id, "cancelled", **fields)
            log.info("train.cancelled", run=run.id)
        elif kind == "error":
            runs.finish_run(run.id, "failed", error=ev.get("message", "failed"), **fields)
            log.error("train.failed", run=run.id, error=str(ev.get("message"))[:300])
        else:
            runs.finish_run(run.id, "interrupted", error=ev.get("message"), **fields)
            log.warning("train.interrupted", run=run.id)
        self._changed(run.id)

    def _fetch_adapter(self, run_id: int, ev: dict[str, Any], fields: dict[str, Any]) -> None:
        """A remote run said done: bring its adapter from the artifact store into the run dir, then complete it."""
        try:
            run = runs.get_run(run_id)
            backend = self.backend_of(run) if run is not None else None
            if run is None or backend is None:
                return
            try:
                path = backend.fetch_adapter(self.job_ref(run), ev, mlflow_run_id=fields.get("mlflow_run_id") or run.mlflow_run_id)
                final = {**ev, "adapter": path}
                log.info("train.adapter_fetched", run=run_id, path=path)
            except (ComputeError, OSError) as exc:
                final = {"type": "error", "message": f"training finished, but its adapter could not be fetched from the "
                                                     f"MLflow artifact store: {exc}"}
            with self._lock:
                now = runs.get_run(run_id)
                if now is not None and now.status == "running":
                    self._finish(now, final, fields, fetched=True)
        finally:
            with self._lock:
                self._fetching.discard(run_id)

    def _changed(self, run_id: int) -> None:
        if self.on_change:
            self.on_change(run_id)

    # ---- serving the result ---------------------------------------------------------------------
    def register_saved_adapters(self) -> None:
        """Adapters from earlier runs join the registry, so a base server starts with them (--lora-modules). Rows an
        older studio wrote with the raw base (a folder, an alias) get the served name first (`served_name`)."""
        for entry in catalog.list_models("adapter"):
            run = runs.get_run(entry.run_id) if entry.run_id else None
            parent = served_name(run.base_model if run is not None else entry.parent, self.settings)
            if entry.parent != parent and (entry.parent or run is not None):
                catalog.set_parent(entry.name, parent)
                log.info("model.parent_normalised", adapter=entry.name, parent=parent, was=entry.parent)
                entry.parent = parent
            if self.servers is not None and entry.path and is_inside(entry.path, (self.settings.runs_path,)) \
                    and Path(entry.path).is_dir():
                self.servers.registry.add(ModelRecord(name=entry.name, kind="adapter", source=entry.path, parent=entry.parent))

    def _register_adapter(self, run: TrainingRun | None) -> None:
        if run is None or not run.adapter_path:
            return
        if not is_inside(run.adapter_path, (self.settings.runs_path,)):  # vLLM would read it: only our run folders
            runs.update_run(run.id, metrics=runs.run_metrics(run) | {
                "served": False, "serve_error": "the adapter is not inside the studio's data folders"})
            return
        entry = catalog.upsert_model(run.name, "adapter", path=run.adapter_path, parent=served_name(run.base_model, self.settings),
                                     run_id=run.id)
        runs.update_run(run.id, model=entry.id)
        if self.servers is not None and not self.serve_adapters:
            runs.update_run(run.id, metrics=runs.run_metrics(run) | {
                "served": False, "serve_error": "the app runs without model servers (--no-serve); restart it without to serve this adapter"})
        elif self.servers is not None:
            threading.Thread(target=self._serve_adapter, args=(run.id,), name="serve-adapter", daemon=True).start()

    def _serve_adapter(self, run_id: int) -> None:
        """Load the adapter into its base model's server; start that server (with the adapter) if none runs."""
        run = runs.get_run(run_id)
        assert run is not None and self.servers is not None
        record = ModelRecord(name=run.name, kind="adapter", source=run.adapter_path, parent=served_name(run.base_model, self.settings))
        self.servers.registry.add(record)
        try:
            base = resolve_base_model(self.settings, run.base_model)
            self.servers.ensure(base)  # reuses the running server; a new one starts with --lora-modules
            if run.name not in {m.name for m in self.servers.served_models(max_age=0)}:
                self.servers.load_adapter(base.name, run.name, run.adapter_path)
            summary = runs.run_metrics(run) | {"served": True}
            runs.update_run(run_id, metrics=summary)
            log.info("train.adapter_served", run=run_id, adapter=run.name, base=base.name)
        except Exception as exc:  # noqa: BLE001  # the run succeeded; serving is retried at the next start
            runs.update_run(run_id, metrics=runs.run_metrics(run) | {"served": False, "serve_error": str(exc)[:500]})
            log.error("train.adapter_serve_failed", run=run_id, error=str(exc)[:500])
        self._changed(run_id)

    # ---- reading --------------------------------------------------------------------------------
    def events(self, run_id: int, since: int = 0) -> tuple[list[dict[str, Any]], int]:
        run = runs.get_run(run_id)
        if run is None:
            raise KeyError(run_id)
        return read_events(self.folder(run) / "events.jsonl", since)

    def history(self, run_id: int) -> History:
        """Metric points, the latest progress and log lines so far (incremental: only new lines are read)."""
        with self._lock:
            h = self._history.setdefault(run_id, History())
            try:
                events, h.offset = self.events(run_id, h.offset)
            except OutsideDataFolder as exc:  # Show run says so instead of reading the folder a row points to
                return History(logs=[f"⚠ {exc}"])
            for ev in events:
                kind = ev.get("type")
                if kind == "metric":
                    h.metrics.append(ev)
                elif kind == "progress":
                    h.progress = ev
                elif kind in ("log", "error", "start", "checkpoint", "done", "cancelled"):
                    h.logs.append(_event_line(ev))
            return h

    def log_tail(self, run_id: int, lines: int = 60) -> str:
        run = runs.get_run(run_id)
        if run is None:
            return ""
        try:
            return tail(self.folder(run) / "train.log", lines)
        except OutsideDataFolder as exc:
            return f"⚠ {exc}"


def served_base_name(base_model: str) -> str:
    """The name a base model is served under (what an adapter's `parent` is); see `engines.models.served_name`."""
    return served_name(base_model)


class _DownloadLog:
    """Hears a base model's download (`resolve_base_model(progress=…)`): keeps its last numbers in `state` and writes
    a log event to the run's events file at each 10 % step, so the Fine-tune tab shows it while the run is queued."""

    STEP_PCT = 10.0

    def __init__(self, events_path: Path, model: str, state: dict[str, Any]) -> None:
        self.events_path, self.model, self.state = events_path, model, state
        self._logged = -self.STEP_PCT

    def __call__(self, **fields: Any) -> None:
        self.state.update(fields)
        pct = float(fields.get("pct") or 0.0)
        if pct < self._logged + self.STEP_PCT and pct < 100.0:
            return
        self._logged = pct - pct % self.STEP_PCT
        done, total = fields.get("bytes_done") or 0, fields.get("bytes_total") or 0
        message = f"downloading the base model {self.model}: {pct:.0f}% of {total / 2**20:.0f} MiB" if total else (
            f"downloading the base model {self.model}: {done / 2**20:.0f} MiB")
        line = json.dumps({"t": round(time.time(), 3), "type": "log", "level": "info", "message": message})
        with open(self.events_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _str_or_none(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _age(path: Path) -> Any:
    import datetime as dt

    return dt.timedelta(seconds=max(0.0, time.time() - path.stat().st_mtime))


def _event_line(ev: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(ev.get("t", 0)))
    kind = ev.get("type")
    if kind == "log":
        return f"{stamp} {ev.get('level', 'info')}: {ev.get('message', '')}"
    if kind == "start":
        where = f" on {ev['host']}" if ev.get("run_dir") and ev.get("host") else ""  # a remote job's node
        return f"{stamp} started (backend {ev.get('backend')}, pid {ev.get('pid')}{where}" + (
            f", resuming from {ev['resume_from']})" if ev.get("resume_from") else ")")
    if kind == "checkpoint":
        return f"{stamp} checkpoint at step {ev.get('step')}"
    if kind == "done":
        return f"{stamp} done: step {ev.get('step')}, loss {ev.get('train_loss')}"
    if kind == "error":
        return f"{stamp} error: {ev.get('message')}"
    return f"{stamp} {kind}"
