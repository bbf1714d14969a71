"""The job-backend protocol: what a job manager needs from wherever its workers run.

A job is a worker module run on a bundle: `python -m MODULE FOLDER` on this machine, or the same module on a Ray
node with the bundle's files as its working directory. Whatever the backend, the job's events and log arrive in the
studio's own folder for the job (events.jsonl, and train.log or the bundle's `log`), so everything that reads them
works unchanged, and the finished artifact (a LoRA adapter, a merged model) is put in the studio's folders before
the studio uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class ComputeError(RuntimeError):
    """The backend could not do what was asked (the cluster cannot be reached, a job was refused…); one sentence."""


@dataclass(frozen=True)
class JobBundle:
    """Everything one job needs, named by what it is rather than where it will run."""

    key: int  # the studio's id for the job (a training run's id)
    name: str  # readable, unique among the studio's jobs (a run's output name): part of a remote job's id
    folder: Path  # the studio's folder for the job: the events and the log arrive here, the artifact is put here
    module: str  # the worker: `python -m MODULE FOLDER` locally, `python -m MODULE --bundle DIR` elsewhere
    files: dict[str, Path] = field(default_factory=dict)  # what travels with a remote job: name in the bundle → file/folder
    code: tuple[str, ...] = ()  # the worker's Python code a remote job carries: repo-relative files and folders
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the worker
    slot: str | None = None  # a local GPU index (CUDA_VISIBLE_DEVICES); None on CPU or on a cluster
    grace_s: float = 30.0  # how long a stopped worker may take to save a checkpoint before it is killed
    log: str = "train.log"  # the file in `folder` the worker's output (other than its events) goes to


@dataclass(frozen=True)
class Submitted:
    """What identifies a started job again later (stored in the run's row)."""

    job_id: str | None = None  # the remote job's id (a Ray submission id); None for a local process
    pid: int | None = None  # a local worker's process (group leader)
    pid_started: str | None = None  # its start time, which tells it from a reused pid


@dataclass(frozen=True)
class JobRef:
    """A job as the studio knows it from its row: enough to find it again after an app restart."""

    key: int
    folder: Path
    job_id: str | None = None
    pid: int | None = None
    pid_started: str | None = None
    log: str = "train.log"  # as in its JobBundle


@dataclass(frozen=True)
class JobState:
    alive: bool  # queued or running on the backend; False once it has ended (or is gone)
    exit_code: int | None = None
    message: str | None = None  # the backend's own word on how it ended or why it waits
    reachable: bool = True  # False: the backend did not answer; nothing is known (the job is not given up)
    pending: bool = False  # accepted but not started yet (waiting for the cluster's resources)


@runtime_checkable
class JobBackend(Protocol):
    """Where workers run. `local` (subprocesses, the default) and `ray` (the Ray Jobs REST API) implement it."""

    name: str
    remote: bool  # True: no shared file system; the files of the bundle travel with the job

    def slots(self) -> list[str | None]:
        """How many jobs run at once: one entry per concurrent job (a GPU index locally)."""

    def submit(self, bundle: JobBundle) -> Submitted:
        """Start the job; returns at once (never waits for the job)."""

    def status(self, ref: JobRef) -> JobState: ...

    def pull(self, ref: JobRef, *, final: bool = False) -> bool:
        """Bring the job's new events and log lines into its folder; True when anything new arrived. `final`: the job
        has ended, so a last line without its newline is complete too."""

    def stop(self, ref: JobRef, *, force: bool = False) -> None:
        """Ask the worker to checkpoint and exit (force: kill it now)."""

    def forget(self, ref: JobRef) -> None:
        """The job has ended and its row is final: drop what was kept about it."""

    def has_checkpoint(self, ref: JobRef) -> bool:
        """Whether a resumed job would find a checkpoint to continue from."""

    def fetch_adapter(self, ref: JobRef, done: dict[str, Any], *, mlflow_run_id: str | None) -> str | None:
        """The finished adapter's folder inside `ref.folder` (fetched from the artifact store for a remote job)."""
