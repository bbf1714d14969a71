"""Hub downloads into the studio's hub cache (MODEL_CACHE_DIR/hub), with byte progress and a disk-space check.

`download` runs inside the model-job subprocess (`python -m engines.models.export JOB_DIR`, action `download`); the
cache is the one `resolve_base_model` reads, so a downloaded model starts without the network. A stopped download
keeps its finished files (weights are sharded), and downloading again fetches only the rest.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path
from typing import Any

# Weights, configs and tokenizers; no *.bin/*.pt duplicates of safetensors, no ONNX/GGUF side files.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
SPACE_MARGIN = 512 * 1024**2  # keep this much free after the download
PROGRESS_EVERY_S = 0.5


def hub_error_message(exc: BaseException, repo_id: str) -> str:
    """A sentence for the user for any error `snapshot_download` raises (gated, missing, offline, no disk...)."""
    from huggingface_hub.errors import (
        DryRunError,
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # A dry run or a cache miss wraps the Hub's answer (gated, missing...): the most specific error in the chain wins.
    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    specific = (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, OfflineModeIsEnabled)
    exc = next((e for e in chain if isinstance(e, specific)), exc)
    if isinstance(exc, GatedRepoError):
        return f"{repo_id} is gated: accept its licence on the Hub and set HUGGINGFACE_TOKEN in .env."
    if isinstance(exc, RepositoryNotFoundError):
        return f"{repo_id} was not found on the Hub (or HUGGINGFACE_TOKEN cannot see it)."
    if isinstance(exc, RevisionNotFoundError):
        return f"{repo_id} has no such revision (branch, tag or commit)."
    if isinstance(exc, OfflineModeIsEnabled):
        return "The studio is offline (OFFLINE_MODE=true): downloads are off."
    if isinstance(exc, (LocalEntryNotFoundError, DryRunError)):
        return (f"The Hub could not be reached to download {repo_id}, and it is not in the local cache. "
                "Check the network (or HF_ENDPOINT), or pass a local model folder.")
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == errno.ENOSPC:
        return "The disk is full: free space under MODEL_CACHE_DIR and download again (finished files are kept)."
    return f"Could not download {repo_id}: {exc.__class__.__name__}: {exc}"


def remove_partial_files(cache_dir: Path, repo_id: str) -> int:
    """Delete the `*.incomplete` files a killed download left in this repo's cache (huggingface_hub names them per
    process, so no later download reuses them); returns how many. Only call it when no download of it runs."""
    blobs = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}" / "blobs"
    removed = 0
    for partial in blobs.glob("*.incomplete"):
        partial.unlink(missing_ok=True)
        removed += 1
    return removed


def free_bytes(path: Path) -> int:
    """Free space on the disk that holds `path` (or its nearest existing parent)."""
    for p in (path, *path.parents):
        if p.exists():
            return shutil.disk_usage(p).free
    return shutil.disk_usage("/").free


def space_problem(needed: int, free: int, margin: int = SPACE_MARGIN) -> str | None:
    """Why a download of `needed` bytes does not fit in `free`, or None."""
    if needed + margin <= free:
        return None
    gib = 1024**3
    return (f"Not enough disk space: the download needs {needed / gib:.2f} GiB (+{margin / gib:.1f} GiB to spare) "
            f"and {free / gib:.2f} GiB is free under MODEL_CACHE_DIR.")


def _progress_class(emit: Any, total: int, files_total: int) -> type:
    """A tqdm class for `snapshot_download` that turns its byte and file bars into throttled progress events."""
    from tqdm.auto import tqdm

    state = {"bytes": 0, "files": 0, "t": 0.0, "start": time.monotonic()}
    sink = open(os.devnull, "w")  # noqa: SIM115  # the bars draw here (one handle for the job's life); events are the output

    class EventTqdm(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["file"] = sink
            kwargs["mininterval"] = 3600  # never redraw: only update() matters
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if self.unit == "B":
                state["bytes"] = max(state["bytes"], int(self.n))
            else:
                state["files"] = max(state["files"], int(self.n))
            now = time.monotonic()
            if now - state["t"] >= PROGRESS_EVERY_S:
                state["t"] = now
                _report(state, emit, total, files_total)
            return out

    return EventTqdm


def _report(state: dict[str, Any], emit: Any, total: int, files_total: int) -> None:
    done = min(state["bytes"], total) if total else state["bytes"]
    elapsed = max(1e-6, time.monotonic() - state["start"])
    emit(stage="downloading", pct=round(100.0 * done / total, 1) if total else 0.0, bytes_done=done, bytes_total=total,
         files_done=state["files"], files_total=files_total, rate=round(done / elapsed))


def download(job: dict[str, Any], emit: Any) -> str:
    """Download `job["repo_id"]` at `job["revision"]` into `job["cache_dir"]`; returns the snapshot folder."""
    from huggingface_hub import snapshot_download

    from engines.models.export import JobError

    repo_id, revision, cache = job["repo_id"], job.get("revision") or None, Path(job["cache_dir"])
    kwargs = {"repo_id": repo_id, "revision": revision, "cache_dir": cache, "token": os.environ.get("HF_TOKEN") or None,
              "allow_patterns": ALLOW_PATTERNS}
    emit(stage="listing files", pct=0.0)
    remove_partial_files(cache, repo_id)  # from an earlier run that was killed (a crash, a reboot)
    try:
        plan = snapshot_download(**kwargs, dry_run=True)
    except Exception as exc:  # noqa: BLE001  # every hub error becomes one sentence
        raise JobError(hub_error_message(exc, repo_id)) from None
    if not plan:
        raise JobError(f"{repo_id} has no model files (safetensors, config, tokenizer) to download.")
    total = sum(f.file_size or 0 for f in plan if f.will_download)
    if problem := space_problem(total, free_bytes(cache)):
        raise JobError(problem)
    cached = sum(f.file_size or 0 for f in plan if not f.will_download)
    emit(stage="downloading", pct=0.0, bytes_done=0, bytes_total=total, files_done=0, files_total=len(plan), cached=cached)
    cls = _progress_class(emit, total, len(plan))
    try:
        path = snapshot_download(**kwargs, tqdm_class=cls)
    except Exception as exc:  # noqa: BLE001
        raise JobError(hub_error_message(exc, repo_id)) from None
    if not (Path(path) / "config.json").is_file():
        raise JobError(f"{repo_id} has no config.json: it is not a Transformers model the studio can serve.")
    emit(stage="downloaded", pct=100.0, bytes_done=total, bytes_total=total, files_done=len(plan), files_total=len(plan))
    return str(path)
