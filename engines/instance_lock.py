"""One studio per DATA_DIR: an exclusive lock on DATA_DIR/studio.lock, held for the life of the process.

Two studios on one data folder would both adopt the same training workers and resume the same evaluations
(each request sent twice). `flock` is released by the kernel when the holder dies, even by `kill -9`, so a
crash never leaves a stale lock; the file itself only says who holds it (pid and port) for the refusal message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "studio.lock"


class AlreadyRunning(RuntimeError):
    """Another studio holds the lock; the message names its pid and port."""


class InstanceLock:
    """The held lock; keep a reference for as long as the studio runs (dropping it closes the file and frees it)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def update(self, *, port: int) -> None:
        """Record the port actually served (the refusal message of a second studio names it)."""
        _write(self._fd, port)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown frees it anyway
        try:
            self.release()
        except OSError:
            pass


def _write(fd: int, port: int | None) -> None:
    data = f"pid={os.getpid()} port={port if port is not None else '?'}\n".encode()
    os.pwrite(fd, data, 0)  # overwrite, then cut: a reader never sees an empty file
    os.ftruncate(fd, len(data))


def _holder(path: Path) -> str:
    """'pid N, port P' from the lock file (best effort: the holder may be writing it right now)."""
    try:
        fields = dict(part.split("=", 1) for part in path.read_text().split() if "=" in part)
    except OSError:
        fields = {}
    return f"pid {fields.get('pid', '?')}, port {fields.get('port', '?')}"


def acquire(data_dir: Path, *, port: int | None) -> InstanceLock:
    """Take DATA_DIR's lock without waiting, or raise AlreadyRunning naming the holder's pid and port."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir.resolve() / LOCK_NAME
    # O_CLOEXEC (Python's default): servers and workers started later never inherit the lock, so a worker that
    # outlives the app (and is adopted by the next start) does not keep the next start out.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"another Chat Studio already uses {data_dir} ({_holder(path)}); stop it or set another DATA_DIR.") from None
    _write(fd, port)
    return InstanceLock(path, fd)
