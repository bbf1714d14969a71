"""REST routes: the models being served, the model servers, and model jobs (Hub downloads, merge / GGUF / push).

Anyone may look; starting, stopping and restarting servers, downloads, exports and cancelling them are admin-only
(a member gets 403). Nothing here reveals a server path: job results are shown relative to the studio's folders."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from api.auth import acting_user
from api.rest import deps
from api.rest.errors import ERRORS, NotFound
from api.rest.pages import Timestamp
from engines.accounts import Actor
from engines.models.exports import ExportJob, ExportManager
from engines.paths import shown_path
from engines.serving import metrics
from engines.serving.start import StartRequest, start_model_server, stop_model_server

router = APIRouter(prefix="/models", tags=["models"], responses=ERRORS)

ServerName = Annotated[str, Path(min_length=1, max_length=300, description="The server's model name.")]
JobId = Annotated[str, Path(min_length=1, max_length=200)]


class ServedModel(BaseModel):
    name: str
    kind: Literal["base", "adapter", "external"]
    parent: str | None = Field(None, description="An adapter's base model.")


class ServerMetrics(BaseModel):
    ok: bool
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = Field(None, description="0–1")
    generation_tokens_per_s: float | None = None
    mean_ttft_ms: float | None = None


class Server(BaseModel):
    name: str
    status: Literal["starting", "ready", "crashed", "failed", "stopped"]
    port: int
    gpu: str | None = None
    pid: int | None = None
    restarts: int
    error: str | None = Field(None, description="Why it failed or crashed (first line).")
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    metrics: ServerMetrics | None = Field(None, description="The last /metrics poll, while the Models tab polls.")


class Servers(BaseModel):
    manages_servers: bool = Field(description="False when the studio was started with --no-serve.")
    servers: list[Server]
    external_endpoints: int = Field(description="OpenAI-compatible servers run elsewhere (VLLM_BASE_URL).")
    start_error: str | None = Field(None, description="Why the last background start failed before its server ran.")


class StartServer(BaseModel):
    model: str = Field(min_length=1, max_length=300, description="A base model: a name, a Hub id, or a folder inside "
                                                                  "the model folders.")
    gpu: str | None = Field(None, pattern=r"^\d+(,\d+)*$", description="GPU index(es), e.g. `0` or `0,1`.")
    port: int | None = Field(None, ge=1024, le=65535)
    max_model_len: int | None = Field(None, ge=128)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)


class ServerAction(BaseModel):
    name: str
    status: str = Field(description="starting | ready | stopped")


class Job(BaseModel):
    id: str = Field(description="Stable: the job's folder name.")
    action: Literal["merge", "gguf", "push", "download"]
    model: str
    status: Literal["running", "done", "error", "cancelled", "interrupted"]
    stage: str = ""
    pct: float = 0.0
    result: str | None = Field(None, description="Where the result is (relative to the studio's folders), or the Hub URL.")
    error: str | None = None
    started_at: Timestamp
    progress: dict[str, float] = Field(default_factory=dict, description="A download's bytes/files done and total, rate.")
    compute: Literal["local", "ray"] = Field("local", description="Where it runs: this machine, or the Ray cluster (merges with RAY_ADDRESS).")
    remote_job_id: str | None = Field(None, description="The Ray submission id of a job on the cluster.")


class ExportRequest(BaseModel):
    action: Literal["merge", "gguf", "push"]
    model: str = Field(min_length=1, max_length=300, description="An adapter (merge) or a base/adapter (gguf, push).")
    repo_id: str = Field("", max_length=200, description="For push: owner/name on the Hub.")
    private: bool = True


class DownloadRequest(BaseModel):
    repo_id: str = Field(min_length=3, max_length=200, description="owner/name on the Hub.")
    revision: str = Field("", max_length=100, description="A branch, tag or commit (default: main).")


class Cancelled(BaseModel):
    cancelled: bool = Field(description="False when the job was not running any more.")
    job: Job


def _first_line(text: str | None, n: int = 300) -> str | None:
    return text.strip().splitlines()[0][:n] if text and text.strip() else None


def job_out(job: ExportJob, settings) -> Job:
    result = job.result
    if result and not result.startswith(("http://", "https://")):
        result = shown_path(result, settings.data_roots)
    return Job(id=job.id, action=job.action, model=job.model, status=job.status, stage=job.stage, pct=job.pct, result=result,
               error=job.error, started_at=dt.datetime.fromtimestamp(job.started, dt.UTC),
               progress={k: float(v) for k, v in job.detail.items() if isinstance(v, int | float) and not isinstance(v, bool)},
               compute=job.compute if job.compute in ("local", "ray") else "local", remote_job_id=job.remote_job_id)


@router.get("", response_model=list[ServedModel], summary="The models that can be chatted with now")
def served_models(services=Depends(deps.services)) -> list[ServedModel]:
    """Base models and their loaded adapters on the running servers, plus the models of external endpoints."""
    return [ServedModel(name=r.name, kind=r.kind, parent=r.parent) for r in services.servers.served_models()]


@router.get("/servers", response_model=Servers, summary="The model servers and their health")
def servers(services=Depends(deps.services)) -> Servers:
    out = []
    for st in services.servers.status().values():
        snap = metrics.HISTORY.latest(st.name)
        rates = metrics.HISTORY.rates(st.name)
        out.append(Server(
            name=st.name, status=st.status, port=st.port, gpu=st.gpu or None, pid=st.pid, restarts=len(st.restarts),
            error=_first_line(st.error), max_model_len=st.max_model_len, gpu_memory_utilization=st.gpu_memory_utilization,
            metrics=None if snap is None else ServerMetrics(
                ok=snap.ok, running=snap.running, waiting=snap.waiting, kv_cache_usage=snap.kv_cache_usage,
                generation_tokens_per_s=rates[-1].generation_tps if rates else None,
                mean_ttft_ms=rates[-1].mean_ttft_ms if rates else None)))
    return Servers(manages_servers=not services.no_serve, servers=out,
                   external_endpoints=len(services.servers.external_urls()),
                   start_error=_first_line(services.servers.pending_error()))


@router.post("/servers", response_model=ServerAction, status_code=202, summary="Start a model's server (admins)")
def start_server(body: StartServer, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> ServerAction:
    """Starts in the background (a Hub id is downloaded first, as a job): watch GET /models/servers. A server that is
    already starting or ready is kept (its status is answered)."""
    request = StartRequest(model=body.model.strip(), gpu=body.gpu, port=body.port, max_model_len=body.max_model_len,
                           gpu_memory_utilization=body.gpu_memory_utilization)
    status, _ = start_model_server(services.settings, services.servers, request, actor=actor, no_serve=services.no_serve)
    return ServerAction(name=request.model, status=status)


@router.post("/servers/{name:path}/stop", response_model=ServerAction, summary="Stop a server (admins)")
def stop_server(name: ServerName, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> ServerAction:
    """Stops the server's whole process tree; 404 when no server has that name."""
    try:
        stop_model_server(services.servers, name, actor=actor)
    except KeyError:
        raise NotFound(f"There is no server {name!r}.") from None
    return ServerAction(name=name, status="stopped")


@router.post("/servers/{name:path}/restart", response_model=ServerAction, status_code=202,
             summary="Restart a server with the same settings (admins)")
def restart_server(name: ServerName, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> ServerAction:
    try:
        services.servers.restart_server(name, actor=actor)
    except KeyError:
        raise NotFound(f"There is no server {name!r}.") from None
    return ServerAction(name=name, status="starting")


class FleetEndpoint(BaseModel):
    base: str = Field(description="The base model this endpoint serves (its adapters are routed with it).")
    url: str = Field(description="The endpoint's root URL.")
    managed: bool = Field(description="True for the studio's own vLLM server of that base.")
    health: Literal["up", "unknown", "down"]
    running: float | None = Field(None, description="Requests the server is running now (its /metrics).")
    waiting: float | None = Field(None, description="Requests waiting in its queue.")
    in_flight: int = Field(description="This studio's requests on it now.")
    error: str | None = Field(None, description="Why its last /metrics read failed.")


class FleetEndpointIn(BaseModel):
    base: str = Field(min_length=1, max_length=300, description="The base model the endpoint serves.")
    url: str = Field(min_length=8, max_length=500, description="A vLLM server or router: http(s)://host:port (or …/v1).")


class FleetEndpointAdded(BaseModel):
    base: str
    url: str = Field(description="The root URL it was registered as.")
    adapter_error: str | None = Field(None, description="A saved adapter of the base that could not be loaded there.")


class FleetEndpointRemoved(BaseModel):
    removed: bool


def fleet_out(services) -> list[FleetEndpoint]:
    return [FleetEndpoint(base=v.base, url=v.url, managed=v.managed, health=v.health, running=v.running,
                          waiting=v.waiting, in_flight=v.in_flight, error=v.error) for v in services.servers.fleet.view()]


@router.get("/fleet", response_model=list[FleetEndpoint], summary="Every endpoint of each base that has several")
def fleet(services=Depends(deps.services)) -> list[FleetEndpoint]:
    """Chats with such a base (or its adapters) go to the healthy endpoint running the fewest requests."""
    return fleet_out(services)


@router.post("/fleet", response_model=FleetEndpointAdded, status_code=201,
             summary="Add a vLLM server run elsewhere as an endpoint of a base (admins)")
def add_fleet_endpoint(body: FleetEndpointIn, actor: Actor = Depends(acting_user),
                       services=Depends(deps.services)) -> FleetEndpointAdded:
    """The base's saved adapters are loaded there too (the server needs `--enable-lora` and
    `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`). Kept across restarts in DATA_DIR/fleet.json."""
    result = services.servers.add_fleet_endpoint(body.base, body.url.strip(), actor=actor)
    (root, why), = result.items()
    return FleetEndpointAdded(base=body.base.strip(), url=root, adapter_error=why)


@router.delete("/fleet", response_model=FleetEndpointRemoved, summary="Stop routing to an endpoint (admins)")
def remove_fleet_endpoint(base: Annotated[str, Query(min_length=1, max_length=300)],
                          url: Annotated[str, Query(min_length=8, max_length=500)],
                          actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> FleetEndpointRemoved:
    """The server itself is not touched. 404 when that URL is not an added endpoint of the base."""
    if not services.servers.remove_fleet_endpoint(base, url.strip(), actor=actor):
        raise NotFound(f"{url!r} is not an endpoint of {base!r}.")
    return FleetEndpointRemoved(removed=True)


@router.get("/jobs", response_model=list[Job], summary="Model jobs: downloads and exports, newest first")
def jobs(action: Annotated[Literal["merge", "gguf", "push", "download"] | None, Query()] = None,
         limit: Annotated[int, Query(ge=1, le=200)] = 50, services=Depends(deps.services)) -> list[Job]:
    manager = ExportManager(services.settings)
    return [job_out(j, services.settings) for j in manager.jobs(limit) if action is None or j.action == action]


@router.get("/jobs/{job_id}", response_model=Job, summary="One model job")
def job(job_id: JobId, services=Depends(deps.services)) -> Job:
    found = ExportManager(services.settings).job(job_id)
    if found is None:
        raise NotFound(f"There is no model job {job_id!r}.")
    return job_out(found, services.settings)


@router.post("/exports", response_model=Job, status_code=202, summary="Merge, convert to GGUF or push a model (admins)")
def export(body: ExportRequest, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> Job:
    manager = ExportManager(services.settings)
    job_id = manager.submit(body.action, body.model, actor=actor, repo_id=body.repo_id.strip(), private=body.private)
    return job_out(manager.job(job_id), services.settings)


@router.post("/downloads", response_model=Job, status_code=202, summary="Download a model from the Hub (admins)")
def download(body: DownloadRequest, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> Job:
    """Into the model cache; the finished model is registered as a base model (then POST /models/servers serves it)."""
    manager = ExportManager(services.settings)
    job_id = manager.submit_download(body.repo_id, body.revision, actor=actor)
    return job_out(manager.job(job_id), services.settings)


@router.post("/jobs/{job_id}/cancel", response_model=Cancelled, summary="Cancel a running model job (admins)")
def cancel(job_id: JobId, actor: Actor = Depends(acting_user), services=Depends(deps.services)) -> Cancelled:
    manager = ExportManager(services.settings)
    done = manager.cancel(job_id, actor=actor)
    found = manager.job(job_id)
    if found is None:
        raise NotFound(f"There is no model job {job_id!r}.")
    return Cancelled(cancelled=done, job=job_out(found, services.settings))
