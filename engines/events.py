"""The events file a subprocess appends and the app reads by offset: one JSON object per line.

Written by the training worker and the model jobs (merge, GGUF, push, download); read by the job managers and by
lineage. Types: start, log, progress, metric, checkpoint, done, cancelled, error.

A worker with no shared file system (a Ray job) also prints each event on stdout behind EVENT_MARK; the studio reads
those lines back from the job's log (`split_output`) and appends them to its own copy of the events file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, TextIO

TERMINAL = ("done", "cancelled", "error")
# Starts an event line in a job's output (the rest of the line is the event's JSON).
EVENT_MARK = "@@chat-studio-event@@ "


class EventWriter:
    """Append-only, one flushed line per event, safe to call from the trainer's callbacks and signal handlers."""

    def __init__(self, path: Path, *, echo: TextIO | None = None) -> None:
        self.path = path
        self.echo = echo  # also print each event there behind EVENT_MARK (a remote job's stdout)
        self._lock = threading.Lock()
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115  # kept open for the worker's lifetime

    def emit(self, type_: str, **fields: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "type": type_, **fields}, ensure_ascii=False, default=str)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno()) if type_ in TERMINAL or type_ == "checkpoint" else None
            if self.echo is not None:
                self.echo.write(EVENT_MARK + line + "\n")
                self.echo.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete lines after `offset`, and the offset to ask from next time (a half-written line waits)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for raw in data[: end + 1].splitlines():
        try:
            events.append(json.loads(raw))
        except ValueError:
            continue  # a torn line from a killed writer: skip it, keep reading
    return events, offset + end + 1


def split_output(text: str) -> tuple[list[str], list[str]]:
    """A job's output (complete lines) → (the JSON of each marked event, the other lines). A marked event may follow
    other output on its line (a progress bar drawn with carriage returns); that output stays a log line."""
    events, other = [], []
    for raw in text.removesuffix("\n").split("\n") if text else []:  # "\n" only: a progress bar's "\r" stays in its line
        at = raw.find(EVENT_MARK)
        if at < 0:
            other.append(raw)
            continue
        before = raw[:at].rstrip()
        if before.strip():
            other.append(before)
        events.append(raw[at + len(EVENT_MARK):].strip())
    return events, other
