"""The default job backend: the worker is a detached subprocess on this machine, writing into the job's folder itself.

`python -m MODULE FOLDER` with the app's (or SERVER_PYTHON's) interpreter, in its own session so it outlives the
browser and the app, output appended to FOLDER/train.log (or the bundle's `log`; never an unread pipe). SIGTERM asks
it to checkpoint and exit; SIGKILL the group once the grace period is over. After an app restart a worker is
recognised by its pid and the kernel's start time of that pid.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from engines.compute.base import JobBundle, JobRef, JobState, Submitted
from engines.processes import pid_alive
from engines.settings import Settings, environment_for_children

REPO = Path(__file__).resolve().parents[2]


def process_start_time(pid: int | None) -> str | None:
    """The kernel's start time of a pid (clock ticks since boot): tells our worker from a reused pid."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int | None, started: str | None) -> bool:
    """That worker (not a process that reused its pid) is still running."""
    return bool(pid) and pid_alive(pid) and process_start_time(pid) == started


class LocalBackend:
    name = "local"
    remote = False

    def __init__(self, settings: Settings, slots: list[str | None] | None = None) -> None:
        self.settings = settings
        self._slots = slots or [None]
        self._procs: dict[int, subprocess.Popen] = {}

    def slots(self) -> list[str | None]:
        return list(self._slots)

    def command(self, module: str, folder: Path) -> list[str]:
        """The exact argv of a worker (a list: never a shell string)."""
        return [self.settings.server_python, "-m", module, str(folder)]

    def submit(self, bundle: JobBundle) -> Submitted:
        argv = self.command(bundle.module, bundle.folder)
        env = environment_for_children(self.settings)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.update(bundle.env)
        if bundle.slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = bundle.slot
        with open(bundle.folder / bundle.log, "ab") as fh:
            fh.write(f"\n=== start {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)}\n".encode())
            fh.flush()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                env=env, cwd=REPO, start_new_session=True,  # own process group: outlives the app, killed as a tree
            )
        self._procs[bundle.key] = proc
        return Submitted(pid=proc.pid, pid_started=process_start_time(proc.pid))

    def status(self, ref: JobRef) -> JobState:
        proc = self._procs.get(ref.key)
        if proc is not None:
            code = proc.poll()
            return JobState(alive=code is None, exit_code=code)
        return JobState(alive=process_alive(ref.pid, ref.pid_started))

    def pull(self, ref: JobRef, *, final: bool = False) -> bool:
        return False  # the worker writes its events file in the job's folder itself

    def stop(self, ref: JobRef, *, force: bool = False) -> None:
        if ref.pid and process_alive(ref.pid, ref.pid_started):
            try:
                os.killpg(ref.pid, signal.SIGKILL if force else signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def forget(self, ref: JobRef) -> None:
        self._procs.pop(ref.key, None)

    def has_checkpoint(self, ref: JobRef) -> bool:
        return (ref.folder / "checkpoints").is_dir()

    def fetch_adapter(self, ref: JobRef, done: dict[str, Any], *, mlflow_run_id: str | None) -> str | None:
        return done.get("adapter")  # written by the worker into the job's folder
