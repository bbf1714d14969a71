"""A run's artifacts on an MLflow tracking server, over its REST API (httpx; the studio process never imports mlflow).

Used for remote jobs: the worker logs checkpoints and the finished adapter to its MLflow run; the studio lists and
downloads them through the server (`mlflow server` proxies the artifact store by default, so the studio needs no S3
credentials of its own). Credentials for the server itself come from MLflow's own variables
(MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME + MLFLOW_TRACKING_PASSWORD).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

import httpx

from engines.compute.base import ComputeError


def _auth() -> dict[str, object]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"headers": {"Authorization": f"Bearer {token}"}}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    return {"auth": (user, password)} if user and password else {}


def _client(tracking_uri: str, timeout: float) -> httpx.Client:
    if not tracking_uri.startswith(("http://", "https://")):
        raise ComputeError(f"MLFLOW_TRACKING_URI must be an http(s) MLflow server for remote jobs, not {tracking_uri[:40]!r}")
    return httpx.Client(base_url=tracking_uri.rstrip("/"), timeout=timeout, **_auth())  # type: ignore[arg-type]


def _safe(path: str) -> PurePosixPath:
    """An artifact path from the server, refused when it could leave the destination folder."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ComputeError(f"the artifact store listed an unsafe path {path[:80]!r}")
    return p


def list_files(tracking_uri: str, run_id: str, path: str, *, timeout: float = 30.0) -> list[tuple[str, int | None]]:
    """Every file under `path` of a run's artifacts, recursively: (artifact path, size)."""
    out: list[tuple[str, int | None]] = []
    with _client(tracking_uri, timeout) as client:
        todo = [path]
        while todo:
            here = todo.pop()
            try:
                r = client.get("/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": here})
            except httpx.HTTPError as exc:
                raise ComputeError(f"the MLflow server at {tracking_uri} cannot be reached: {exc}") from None
            if r.status_code != 200:
                raise ComputeError(f"the MLflow server refused to list {here!r} of run {run_id}: {r.status_code} {r.text[:200]}")
            for f in r.json().get("files", []):
                _safe(f["path"])
                if f.get("is_dir"):
                    todo.append(f["path"])
                else:
                    out.append((f["path"], f.get("file_size")))
    return sorted(out)


def list_dirs(tracking_uri: str, run_id: str, path: str, *, timeout: float = 30.0) -> list[str]:
    """The folders directly under `path` (e.g. a run's `checkpoints/checkpoint-N`)."""
    with _client(tracking_uri, timeout) as client:
        try:
            r = client.get("/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": path})
        except httpx.HTTPError as exc:
            raise ComputeError(f"the MLflow server at {tracking_uri} cannot be reached: {exc}") from None
        if r.status_code != 200:
            raise ComputeError(f"the MLflow server refused to list {path!r} of run {run_id}: {r.status_code} {r.text[:200]}")
        return sorted(f["path"] for f in r.json().get("files", []) if f.get("is_dir"))


def download(tracking_uri: str, run_id: str, path: str, dest: Path, *, timeout: float = 60.0) -> Path:
    """Download the artifact folder `path` of a run into `dest` (replaced whole, never half-written); returns `dest`."""
    files = list_files(tracking_uri, run_id, path, timeout=timeout)
    if not files:
        raise ComputeError(f"run {run_id} has no artifacts under {path!r} in the MLflow store")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        with _client(tracking_uri, timeout) as client:
            for artifact, _size in files:
                rel = _safe(artifact).relative_to(PurePosixPath(path))
                target = tmp.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with client.stream("GET", "/get-artifact", params={"run_id": run_id, "path": artifact}) as r:
                        if r.status_code != 200:
                            raise ComputeError(f"the MLflow server refused {artifact!r}: {r.status_code}")
                        with open(target, "wb") as fh:
                            for chunk in r.iter_bytes(1 << 20):
                                fh.write(chunk)
                except httpx.HTTPError as exc:
                    raise ComputeError(f"downloading {artifact!r} from the MLflow server failed: {exc}") from None
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

