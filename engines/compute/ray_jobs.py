"""Jobs on a Ray cluster, through the Ray Jobs REST API of the head's dashboard (httpx: this process never imports ray).

Submit: the bundle's files (spec, job, dataset version …) are zipped into the job's `working_dir` and the worker's
Python code into a `py_modules` package, both uploaded to the cluster (`PUT /api/packages/gcs/…`, content-addressed:
unchanged code is uploaded once); then `POST /api/jobs/` runs `RAY_WORKER_PYTHON -m MODULE --bundle .` on a node
that has the CPUs/GPUs asked for. No shared file system: the worker prints its events on stdout behind EVENT_MARK,
and `pull` reads them back from `GET /api/jobs/{id}/logs` into the studio's own events file (the other lines go to
train.log); checkpoints and the adapter go to the MLflow artifact store, from where `fetch_adapter` downloads the
adapter. Stop: `POST /api/jobs/{id}/stop` sends SIGTERM (the worker checkpoints and exits), then SIGKILL after the
job's RAY_JOB_STOP_WAIT_TIME_S (set to the studio's cancel grace period at submit).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import shlex
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import structlog

from engines.compute import mlflow_store
from engines.compute.base import ComputeError, JobBundle, JobRef, JobState, Submitted
from engines.events import split_output
from engines.settings import Settings

log = structlog.get_logger(__name__)
REPO = Path(__file__).resolve().parents[2]
STATE_FILE = "ray-job.json"  # in the job's folder: the Ray job's id and how much of its log was read
SLOTS = 8  # runs handed to the cluster at once; the cluster itself queues what it cannot place yet
PACKAGE_LIMIT = 500 * 2**20  # Ray keeps uploaded packages in its GCS (512 MiB gRPC limit by default)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def zip_bytes(entries: list[tuple[str, Path]]) -> bytes:
    """A zip of files and folders (name inside the zip → local path) that is the same bytes for the same content:
    sorted, fixed timestamps and modes, no bytecode caches. Its hash is the package's name."""
    items: list[tuple[str, Path]] = []
    for name, path in entries:
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                    items.append((f"{name}/{f.relative_to(path).as_posix()}", f))
        elif path.is_file():
            items.append((name, path))
        else:
            raise ComputeError(f"{name} is missing; the job cannot be sent without it")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, f in sorted(items):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, f.read_bytes())
    return buf.getvalue()


def package_uri(data: bytes) -> str:
    """Ray's name for an uploaded package: content-addressed, in the GCS."""
    return f"gcs://_ray_pkg_{hashlib.sha1(data).hexdigest()}.zip"  # noqa: S324  # a content name, not a secret


def job_id_for(bundle: JobBundle) -> str:
    """A new submission id: readable (the studio's job id and name) and unique (a resumed run is a new Ray job)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", bundle.name)[:40].strip("-") or "job"
    return f"chat-studio-{bundle.key}-{slug}-{secrets.token_hex(4)}"


class RayBackend:
    name = "ray"
    remote = True

    def __init__(self, settings: Settings, *, timeout: float = 15.0) -> None:
        if not settings.ray_address:
            raise ComputeError("RAY_ADDRESS is not set")
        self.settings = settings
        self.address = settings.ray_address
        headers = {"Authorization": f"Bearer {settings.ray_auth_token.get_secret_value()}"} if settings.ray_auth_token else {}
        self.client = httpx.Client(base_url=self.address, timeout=timeout, headers=headers)
        self._gpus: tuple[float, float] | None = None  # (when asked, GPUs in the cluster)

    # ---- HTTP ---------------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ComputeError(f"the Ray cluster at {self.address} cannot be reached: {exc.__class__.__name__}: {exc}") from None
        if r.status_code in (401, 403):
            raise ComputeError(f"the Ray cluster at {self.address} refused the studio's token ({r.status_code}): "
                               "set RAY_AUTH_TOKEN to the cluster's token")
        return r

    def upload(self, data: bytes) -> str:
        """Upload a package unless the cluster has it already; returns its gcs:// URI."""
        uri = package_uri(data)
        path = f"/api/packages/gcs/{uri.removeprefix('gcs://')}"
        if self._request("GET", path).status_code == 200:
            return uri
        r = self._request("PUT", path, content=data, timeout=max(60.0, len(data) / 2**20))
        if r.status_code != 200:
            raise ComputeError(f"the Ray cluster refused the job's files ({r.status_code}): {r.text[-300:]}")
        return uri

    def cluster_gpus(self) -> float:
        """GPUs in the cluster (from the dashboard's cluster status; asked at most once a minute), 0 when unknown."""
        if self._gpus is not None and time.monotonic() - self._gpus[0] < 60:
            return self._gpus[1]
        gpus = 0.0
        try:
            r = self._request("GET", "/api/cluster_status")
            usage = r.json()["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
            gpus = float(usage.get("GPU", [0.0, 0.0])[1])
        except (ComputeError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("ray.cluster_status_unknown", error=str(exc)[:300])
        self._gpus = (time.monotonic(), gpus)
        return gpus

    # ---- the protocol ---------------------------------------------------------------------------------------------------
    def slots(self) -> list[str | None]:
        return [f"ray-{i}" for i in range(SLOTS)]

    def entrypoint(self, module: str) -> str:
        return shlex.join([self.settings.ray_worker_python, "-m", module, "--bundle", "."])

    def environment(self, bundle: JobBundle) -> dict[str, str]:
        """What the job's processes get on top of the node's own environment. Never the studio's secrets: a job's
        runtime_env is visible to anyone who can read the cluster's dashboard."""
        env = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
               "RAY_JOB_STOP_WAIT_TIME_S": str(max(1, int(bundle.grace_s)))}
        if self.settings.hf_endpoint:
            env["HF_ENDPOINT"] = self.settings.hf_endpoint.rstrip("/")
        if self.settings.offline_mode:
            env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        return env | bundle.env

    def submit(self, bundle: JobBundle) -> Submitted:
        files = zip_bytes(sorted(bundle.files.items()))
        code = zip_bytes([(rel, REPO / rel) for rel in bundle.code])
        for what, data in (("the job's files", files), ("the worker's code", code)):
            if len(data) > PACKAGE_LIMIT:
                raise ComputeError(f"{what} take {len(data) / 2**20:.0f} MiB zipped, more than a Ray job carries "
                                   f"({PACKAGE_LIMIT / 2**20:.0f} MiB)")
        gpus = self.settings.ray_num_gpus
        if gpus is None:
            gpus = 1.0 if self.cluster_gpus() > 0 else 0.0
        job_id = job_id_for(bundle)
        body = {
            "entrypoint": self.entrypoint(bundle.module),
            "submission_id": job_id,
            "runtime_env": {"working_dir": self.upload(files), "py_modules": [self.upload(code)],
                            "env_vars": self.environment(bundle)},
            "metadata": {"chat_studio_job": bundle.name, "chat_studio_key": str(bundle.key)},
            "entrypoint_num_cpus": self.settings.ray_num_cpus,
            "entrypoint_num_gpus": gpus,
        }
        r = self._request("POST", "/api/jobs/", json=body)
        if r.status_code != 200:
            raise ComputeError(f"the Ray cluster refused the job ({r.status_code}): {r.text[-300:]}")
        _write_state(bundle.folder, {"address": self.address, "job_id": job_id, "log_offset": 0})
        with open(bundle.folder / bundle.log, "a", encoding="utf-8") as fh:
            fh.write(f"\n=== submitted {time.strftime('%Y-%m-%d %H:%M:%S')} to the Ray cluster at {self.address} as {job_id}"
                     f" ({self.settings.ray_num_cpus:g} CPU, {gpus:g} GPU): {body['entrypoint']}\n")
        log.info("ray.submitted", job=job_id, name=bundle.name, gpus=gpus, files_bytes=len(files), code_bytes=len(code))
        return Submitted(job_id=job_id)

    def status(self, ref: JobRef) -> JobState:
        if not ref.job_id:
            return JobState(alive=False, message="no Ray job was recorded for this run")
        try:
            r = self._request("GET", f"/api/jobs/{ref.job_id}")
        except ComputeError as exc:
            return JobState(alive=True, reachable=False, message=str(exc))
        if r.status_code == 404:
            return JobState(alive=False, message=f"the Ray cluster at {self.address} no longer knows job {ref.job_id} "
                                                 "(jobs end with their cluster)")
        if r.status_code != 200:
            return JobState(alive=True, reachable=False, message=f"the Ray cluster answered {r.status_code}: {r.text[:200]}")
        job = r.json()
        state, message = job.get("status"), job.get("message")
        if state in ("PENDING", "RUNNING"):
            return JobState(alive=True, pending=state == "PENDING", message=message)
        code = job.get("driver_exit_code")
        return JobState(alive=False, exit_code=0 if state == "SUCCEEDED" and code is None else code,
                        message=f"Ray job {ref.job_id} {str(state).lower()}: {message}" if message else None)

    def pull(self, ref: JobRef, *, final: bool = False) -> bool:
        """Read the job's log from where the last pull stopped: marked event lines go to events.jsonl, the rest to
        train.log (`ref.log`). A last line without its newline waits, unless the job has ended (`final`)."""
        state = _read_state(ref.folder)
        if not ref.job_id:
            return False
        try:
            r = self._request("GET", f"/api/jobs/{ref.job_id}/logs")
        except ComputeError as exc:
            log.warning("ray.logs_unreachable", job=ref.job_id, error=str(exc)[:300])
            return False
        if r.status_code != 200:
            return False
        text = r.json().get("logs") or ""
        offset = int(state.get("log_offset") or 0) if state.get("job_id") == ref.job_id else 0  # a resumed run: a new job
        offset = min(offset, len(text))
        new = text[offset:]
        end = len(new) if final else new.rfind("\n") + 1
        if end <= 0:
            return False
        events, other = split_output(new[:end])
        good = []
        for raw in events:
            try:
                json.loads(raw)
                good.append(raw)
            except ValueError:
                other.append(raw)  # a marked line garbled by interleaved output: kept in the log, not an event
        if good:
            with open(ref.folder / "events.jsonl", "a", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in good))
        if other:
            with open(ref.folder / ref.log, "a", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in other))
        _write_state(ref.folder, state | {"job_id": ref.job_id, "log_offset": offset + end})
        return bool(good or other)

    def stop(self, ref: JobRef, *, force: bool = False) -> None:
        """SIGTERM now (the worker saves a checkpoint), SIGKILL after the job's stop wait; `force` asks again."""
        if not ref.job_id:
            return
        r = self._request("POST", f"/api/jobs/{ref.job_id}/stop")
        if r.status_code not in (200, 404):
            raise ComputeError(f"the Ray cluster did not stop job {ref.job_id} ({r.status_code}): {r.text[:200]}")

    def forget(self, ref: JobRef) -> None:
        pass

    def has_checkpoint(self, ref: JobRef) -> bool:
        """A checkpoint the worker stored in the artifact store (its `checkpoint` event says so)."""
        try:
            with open(ref.folder / "events.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    if '"checkpoint"' in line and '"stored"' in line:
                        ev = json.loads(line)
                        if ev.get("type") == "checkpoint" and ev.get("stored"):
                            return True
        except (OSError, ValueError):
            return False
        return False

    def fetch_adapter(self, ref: JobRef, done: dict[str, Any], *, mlflow_run_id: str | None) -> str | None:
        """Download the adapter the worker logged to its MLflow run into the job's folder (`adapter/`)."""
        if not mlflow_run_id:
            raise ComputeError("the worker reported no MLflow run, so its adapter cannot be fetched")
        uri = self.settings.mlflow_tracking_uri or ""
        path = mlflow_store.download(uri, mlflow_run_id, str(done.get("adapter_artifact") or "adapter"), ref.folder / "adapter")
        return str(path)


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state))
    tmp.replace(folder / STATE_FILE)
