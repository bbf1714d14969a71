"""Training worker: `python -m engines.training.worker RUN_DIR`, or `… --bundle DIR` on a Ray node.

Reads RUN_DIR/spec.json (the TrainSpec) and RUN_DIR/job.json (paths and tracking settings the app
resolved), trains, and writes RUN_DIR/events.jsonl, checkpoints/, adapter/ and an MLflow run.
SIGTERM = cancel: save a checkpoint at the next step and exit. Runs in its own process group,
started by the app's JobManager (or by hand, for debugging).

`--bundle DIR` (a remote job, no shared file system): DIR is the job's bundle (spec.json, job.json, the dataset
version file, an SFT adapter) — read only. The run happens in a fresh scratch folder (STUDIO_SCRATCH_DIR or the
system's temp folder, removed at the end); events are also printed on stdout for the studio to read through the
job's log; checkpoints and the adapter go to the MLflow artifact store, and a resumed run fetches its last checkpoint
from there. Nothing else is read or written on the node but the base model named in job.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from engines.events import EventWriter
from engines.training.backends import select_backend
from engines.training.spec import TrainSpec
from engines.training.tracking import Tracker

HEARTBEAT_S = 5.0


@dataclass
class Job:
    """What the app resolved for this run (job.json)."""

    model_path: str
    dataset_path: str
    tracking_uri: str
    artifact_root: str | None  # None: the MLflow server's own artifact store (a remote run)
    backend: str = "auto"  # auto | unsloth | transformers
    resume: bool = False
    mlflow_run_id: str | None = None
    sft_adapter_path: str | None = None  # a DPO/ORPO second stage continues from this adapter
    remote: bool = False  # a job with no shared file system: events on stdout, checkpoints + adapter in MLflow


@dataclass
class Context:
    run_dir: Path
    spec: TrainSpec
    job: Job
    events: EventWriter
    tracker: Tracker

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"


def last_checkpoint(checkpoints: Path) -> Path | None:
    found = [p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def choose_backend(requested: str) -> str:
    """unsloth on CUDA when installed, else transformers (+PEFT, +bitsandbytes for qlora); see backends.select_backend."""
    import torch

    return select_backend(requested, cuda=torch.cuda.is_available(),
                          unsloth_installed=importlib.util.find_spec("unsloth") is not None)


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        path.write_text(str(time.time()))
        stop.wait(HEARTBEAT_S)


def run(run_dir: Path) -> int:
    from engines.training.callbacks import StopFlag

    spec = TrainSpec(**json.loads((run_dir / "spec.json").read_text()))
    job = Job(**json.loads((run_dir / "job.json").read_text()))
    events = EventWriter(run_dir / "events.jsonl", echo=sys.stdout if job.remote else None)
    tracker = Tracker(events, job.tracking_uri, Path(job.artifact_root) if job.artifact_root else None, required=job.remote)
    ctx = Context(run_dir, spec, job, events, tracker)
    signal.signal(signal.SIGTERM, lambda *_: setattr(StopFlag, "requested", True))
    beat_stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(run_dir / "heartbeat", beat_stop), daemon=True).start()
    try:
        backend = choose_backend(job.backend)
        run_id = tracker.start(
            spec.output_name, job.mlflow_run_id if job.resume else None, spec.mlflow_params(),
            {"backend": backend, "base_model": spec.base_model, "dataset": spec.dataset, "objective": spec.objective},
        )
        if job.remote and job.resume and job.mlflow_run_id:  # its checkpoints are in the artifact store, not here
            tracker.fetch_last_checkpoint(job.mlflow_run_id, ctx.checkpoints)
        resume_from = last_checkpoint(ctx.checkpoints) if job.resume else None
        events.emit("start", pid=os.getpid(), backend=backend, mlflow_run_id=run_id, host=socket.gethostname(),
                    resume_from=resume_from.name if resume_from else None, **({"run_dir": str(run_dir)} if job.remote else {}))
        if backend == "unsloth" and spec.objective != "sft":
            from engines.training.backend_unsloth import train_preference as train
        elif backend == "unsloth":
            from engines.training.backend_unsloth import train
        elif spec.objective != "sft":
            from engines.training.backend_preference import train
        else:
            from engines.training.backend_hf import train
        summary = train(ctx, resume_from)
        if StopFlag.requested:
            tracker.end("KILLED")
            events.emit("cancelled", step=summary.get("step"))
            return 0
        tracker.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)}, step=summary.get("step", 0))
        (run_dir / "spec.yaml").exists() and tracker.log_artifacts(run_dir / "spec.yaml")
        tracker.log_artifacts(ctx.adapter_dir, "adapter", required=job.remote)
        tracker.end("FINISHED")
        if job.remote:  # the studio fetches it from the run's artifacts
            events.emit("done", adapter_artifact="adapter", **summary)
        else:
            events.emit("done", adapter=str(ctx.adapter_dir), **summary)
        return 0
    except BaseException as exc:  # noqa: BLE001  # every failure becomes an event with its traceback
        tracker.end("FAILED")
        events.emit("error", message=f"{exc.__class__.__name__}: {exc}"[:2000], traceback=traceback.format_exc()[-8000:])
        traceback.print_exc()
        return 1
    finally:
        beat_stop.set()
        events.close()


def run_bundle(bundle: Path) -> int:
    """A remote job: train in a fresh scratch folder from the bundle's files (relative paths in job.json name files
    of the bundle); the scratch folder is removed at the end, after the adapter went to the artifact store."""
    scratch = Path(tempfile.mkdtemp(prefix="chat-studio-run-", dir=os.environ.get("STUDIO_SCRATCH_DIR") or None))
    try:
        job = json.loads((bundle / "job.json").read_text())
        for key in ("dataset_path", "sft_adapter_path"):
            if job.get(key) and not Path(job[key]).is_absolute():
                job[key] = str(bundle / job[key])
        job["remote"] = True
        (scratch / "job.json").write_text(json.dumps(job, indent=2))
        for name in ("spec.json", "spec.yaml"):
            if (bundle / name).is_file():
                shutil.copyfile(bundle / name, scratch / name)
        return run(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--bundle" and (Path(args[1]) / "job.json").is_file():
        return run_bundle(Path(args[1]).resolve())
    if len(args) != 1 or not (Path(args[0]) / "spec.json").is_file():
        print("usage: python -m engines.training.worker RUN_DIR   (RUN_DIR holds spec.json and job.json)\n"
              "       python -m engines.training.worker --bundle DIR   (a remote job's bundle)", file=sys.stderr)
        return 2
    return run(Path(args[0]).resolve())


if __name__ == "__main__":
    sys.exit(main())
