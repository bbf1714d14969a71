"""Start, watch, reuse and stop local vLLM OpenAI-compatible servers, one per base model."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import structlog

from engines.accounts import Actor, require_admin
from engines.endpoints import Endpoint, Router
from engines.models.registry import ModelRecord, Registry
from engines.processes import pid_alive, spawn_detached, start_time, stop_tree, tail
from engines.serving import fleet_file, metrics
from engines.serving.fleet import Fleet
from engines.serving.targets import write_scrape_targets
from engines.settings import Settings, endpoint_root, environment_for_children, parse_fleet

log = structlog.get_logger(__name__)

Status = Literal["starting", "ready", "crashed", "failed", "stopped"]
MAX_RESTARTS = 3
RESTART_WINDOW_S = 600.0
# The watcher also reads every ready server's /metrics this often, so the Models tab's plots show the traffic of
# before it was opened (its own timer polls every 2 s while it is open; a poll of less than 1.5 s ago is skipped).
BACKGROUND_METRICS_S = 3
SERVERS_ACTION = "start or stop model servers"

__all__ = ["Endpoint", "Router", "ServerError", "ServerManager", "ServerState", "ServerStopped", "free_port", "pid_alive", "tail"]


class ServerError(RuntimeError):
    """A model server did not start or is not usable; the message carries its log tail."""


class ServerStopped(ServerError):
    """A server was stopped on request while it was starting (not a failure)."""


@dataclass
class ServerState:
    name: str
    source: str
    port: int
    gpu: str | None = None
    max_model_len: int | None = None  # per-server overrides of the settings (None: the setting)
    gpu_memory_utilization: float | None = None
    status: Status = "starting"
    pid: int | None = None
    started: int | None = None  # the leader's start time: its pid may be reused once it is gone
    error: str | None = None
    owned: bool = True  # started (or adopted from a dead owner) by this app: stopped at exit
    wanted: bool = True  # False once stopped on request: the watcher does not restart it
    restarts: list[float] = field(default_factory=list)
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_cuda_gpu() -> bool:
    """True when an NVIDIA GPU is visible (checked without importing torch)."""
    smi = shutil.which("nvidia-smi")
    if not smi or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def cpu_has_bf16() -> bool:
    """bf16 matmuls are fast only with AVX512-BF16 or AMX; elsewhere vLLM falls back to slow kernels."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120]


# How old a cached list of served models may be and still be answered while it is refreshed in the background.
MODELS_STALE_S = 30.0


class ServerManager:
    """One vLLM server subprocess per base model, plus external OpenAI-compatible endpoints."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or Registry()
        self.gpu = has_cuda_gpu()
        self._servers: dict[str, ServerState] = {}
        self._lock = threading.RLock()
        self._external: dict[str, str | None] = {}  # base URL -> api key
        self._models_cache: tuple[float, list[ModelRecord]] = (0.0, [])
        self._models_refreshing = threading.Lock()  # held while a background refresh of that list runs
        self._models_http: httpx.Client | None = None  # one pool for the listings: no new client per request
        self._watcher: threading.Thread | None = None
        self._stop_event = threading.Event()
        self.metrics_history = metrics.HISTORY  # what the Models tab plots
        self.metrics_every_s = BACKGROUND_METRICS_S  # 0: no background polling
        self._pending_error: str | None = None  # why a background start failed (shown in the badge)
        key = settings.fleet_api_key.get_secret_value() if settings.fleet_api_key else None
        # More endpoints per base (FLEET_ENDPOINTS, or added by an admin): endpoint_for routes over them.
        self._fleet_configured = parse_fleet(settings.fleet_endpoints)
        self._fleet_file = settings.data_dir.resolve() / fleet_file.FILE_NAME
        self.fleet = Fleet(fleet_file.effective(self._fleet_configured, self._fleet_file), managed=self._ready_root,
                           api_key=key)
        settings.servers_path.mkdir(parents=True, exist_ok=True)

    # ---- command and environment -------------------------------------------------
    def command(
        self, record: ModelRecord, port: int, *, max_model_len: int | None = None, gpu_memory_utilization: float | None = None
    ) -> list[str]:
        """The exact argv for one server (a list: never a shell string); None overrides keep the settings."""
        s = self.settings
        cmd = [
            s.server_python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", record.source,
            "--served-model-name", record.name,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--max-model-len", str(max_model_len or s.vllm_max_model_len),
            "--enable-lora",
            "--max-lora-rank", str(s.vllm_max_lora_rank),
            "--max-loras", str(s.vllm_max_loras),
            "--disable-uvicorn-access-log",
        ]
        adapters = self.saved_adapters(record.name)
        if adapters:  # adapters trained earlier come back with their base server
            cmd += ["--lora-modules", *(f"{a.name}={a.source}" for a in adapters)]
        eager = s.vllm_enforce_eager if s.vllm_enforce_eager is not None else not self.gpu
        if eager:
            cmd.append("--enforce-eager")
        extra = shlex.split(s.vllm_extra_args)
        if self.gpu:
            cmd += ["--gpu-memory-utilization", str(gpu_memory_utilization or s.vllm_gpu_memory_utilization)]
        elif "--dtype" not in extra and not cpu_has_bf16():
            # Measured here (AVX2, no bf16): float32 gave TTFT 231 ms vs 1124 ms and 2.5x the batched tok/s.
            cmd += ["--dtype", "float32"]
        cmd += extra
        return cmd

    def saved_adapters(self, base: str) -> list[ModelRecord]:
        """Registered adapters of a base whose folder still exists and whose rank this server accepts."""
        out = []
        for rec in self.registry.all():
            if rec.kind != "adapter" or rec.parent != base:
                continue
            cfg = Path(rec.source) / "adapter_config.json"
            try:
                rank = int(json.loads(cfg.read_text()).get("r", 0))
            except (OSError, ValueError):
                continue
            if 0 < rank <= self.settings.vllm_max_lora_rank and "=" not in rec.name:
                out.append(rec)
        return out

    def environment(self, gpu: str | None) -> dict[str, str]:
        env = environment_for_children(self.settings)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.settings.vllm_cpu_kvcache_space))
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        if gpu is not None and gpu != "":
            env["CUDA_VISIBLE_DEVICES"] = gpu
        return env

    # ---- state files: let a later app instance find a healthy server ------------
    def _state_file(self, name: str) -> Path:
        return self.settings.servers_path / f"{safe_name(name)}.json"

    def _write_state(self, st: ServerState) -> None:
        data = {"name": st.name, "source": st.source, "port": st.port, "pid": st.pid, "started": st.started,
                "owner_pid": os.getpid()}
        self._state_file(st.name).write_text(json.dumps(data))

    def _adopt(self, record: ModelRecord) -> ServerState | None:
        """Reuse a healthy server for this model left by this or an earlier app instance. What is left of a crashed
        one (its EngineCore and workers outlive a killed API process) is stopped first, so a replacement never runs
        beside it; so is an unhealthy one whose app is gone."""
        path = self._state_file(record.name)
        try:
            data = json.loads(path.read_text())
            pid, started = data.get("pid"), data.get("started")
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(pid, int) or not isinstance(started, (int, type(None))):
            return None
        if not pid_alive(pid, started):
            self._clear_tree(record.name, pid, started)  # orphans of a crashed server: nobody can use them
            return None
        if data.get("source") != record.source:
            return None
        st = ServerState(name=record.name, source=record.source, port=int(data["port"]), pid=pid,
                         started=started if started is not None else start_time(pid))
        st.log_path = self.settings.servers_path / f"{safe_name(record.name)}.log"
        owner_gone = not pid_alive(data.get("owner_pid"))
        if not self._healthy(st) or record.name not in self._model_ids(st):
            if owner_gone and started is not None:  # left broken (or half started) by its app: replaced, not kept beside
                self._clear_tree(record.name, pid, started)
            return None
        st.status = "ready"
        st.owned = owner_gone  # its app is gone: this one takes it over
        if st.owned:
            self._write_state(st)
        log.info("server.reused", model=record.name, port=st.port, pid=st.pid, owned=st.owned)
        return st

    # ---- lifecycle ----------------------------------------------------------------
    def ensure(
        self, record: ModelRecord, *, gpu: str | None = None, port: int | None = None, timeout: float | None = None,
        max_model_len: int | None = None, gpu_memory_utilization: float | None = None,
    ) -> Endpoint:
        """Return a healthy endpoint for a base model, starting (or reusing) its server if needed.

        `max_model_len` / `gpu_memory_utilization` override the settings for a server started here (kept for its
        crash restarts); a server already running or reused keeps what it was started with.
        """
        self.registry.add(record)
        with self._lock:
            st = self._servers.get(record.name)
            if st and st.status == "ready" and self._alive(st) and self._healthy(st):
                return self.endpoint_of(st)
            if not st or not self._alive(st):
                if st is not None:  # a dead server of ours: its children may still run
                    self._clear_tree(st.name, st.pid, st.started, st.proc)
                st = self._adopt(record)
                if st is None:
                    st = ServerState(name=record.name, source=record.source, port=port or free_port(), gpu=gpu,
                                     max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization)
                    self._servers[record.name] = st
                    self._spawn(st)
                else:
                    self._servers[record.name] = st
            st.wanted = True
        self._wait_healthy(st, timeout or self.settings.vllm_start_timeout)
        self._ensure_watcher()
        return self.endpoint_of(st)

    def start_in_background(
        self, resolve: Callable[[], ModelRecord], *, gpu: str | None = None, port: int | None = None,
        max_model_len: int | None = None, gpu_memory_utilization: float | None = None,
    ) -> threading.Thread:
        """Resolve a model (may convert or download) and start its server without blocking the UI."""

        def run() -> None:
            try:
                self.ensure(resolve(), gpu=gpu, port=port, max_model_len=max_model_len,
                            gpu_memory_utilization=gpu_memory_utilization)
            except ServerStopped as exc:
                log.info("server.start_cancelled", reason=str(exc))
            except Exception as exc:  # shown in the status badge; the app keeps running
                log.error("server.background_start_failed", error=str(exc)[:2000])
                with self._lock:
                    self._pending_error = str(exc)

        t = threading.Thread(target=run, name="server-start", daemon=True)
        t.start()
        return t

    # ---- what a person may do: the UI and the API call these, never the internal methods above ----------------
    def start_server(
        self, resolve: Callable[[], ModelRecord], *, actor: Actor, gpu: str | None = None, port: int | None = None,
        max_model_len: int | None = None, gpu_memory_utilization: float | None = None,
    ) -> threading.Thread:
        """`start_in_background` for an admin (PermissionDenied for anyone else)."""
        require_admin(actor, SERVERS_ACTION)
        log.info("server.start_requested", by=actor.name)
        return self.start_in_background(resolve, gpu=gpu, port=port, max_model_len=max_model_len,
                                        gpu_memory_utilization=gpu_memory_utilization)

    def stop_server(self, name: str, *, actor: Actor) -> None:
        """Stop a server (its whole process tree), for an admin."""
        require_admin(actor, SERVERS_ACTION)
        log.info("server.stop_requested", model=name, by=actor.name)
        self.stop(name)

    def restart_server(self, name: str, *, actor: Actor) -> threading.Thread:
        """Stop a server and start it again with the same model, GPU, port and overrides, for an admin. The old tree
        is gone before the new server starts. KeyError when no server has that name."""
        require_admin(actor, SERVERS_ACTION)
        st = self.status().get(name)
        if st is None:
            raise KeyError(name)
        record = self.registry.get(name)
        record = record if record is not None and record.kind == "base" else ModelRecord(name=name, kind="base", source=st.source)
        log.info("server.restart_requested", model=name, by=actor.name)
        self.stop(name)
        return self.start_in_background(lambda: record, gpu=st.gpu, port=st.port, max_model_len=st.max_model_len,
                                        gpu_memory_utilization=st.gpu_memory_utilization)

    def _clear_tree(self, name: str, pid: int | None, started: int | None, proc: subprocess.Popen | None = None) -> None:
        """Make sure nothing of an old server's process tree runs (API process, EngineCore, workers), or refuse."""
        if not pid:
            return
        if not stop_tree(pid, started=started, proc=proc):
            raise ServerError(f"The old server of {name} (pid {pid}) could not be stopped; not starting another beside it.")

    def _spawn(self, st: ServerState) -> None:
        # A replacement never starts beside what is left of the previous server (a restart after a crash included).
        self._clear_tree(st.name, st.pid, st.started, st.proc)
        record = self.registry.get(st.name) or ModelRecord(name=st.name, kind="base", source=st.source)
        st.log_path = self.settings.servers_path / f"{safe_name(st.name)}.log"
        cmd = self.command(record, st.port, max_model_len=st.max_model_len, gpu_memory_utilization=st.gpu_memory_utilization)
        # Its own session: stop_tree finds the whole tree through it, even children whose parent was killed.
        st.proc = spawn_detached(cmd, log_path=st.log_path, env=self.environment(st.gpu), cwd=self.settings.servers_path,
                                 header=f"\n=== start {time.strftime('%Y-%m-%d %H:%M:%S')} port {st.port}\n")
        st.pid, st.status, st.error, st.owned = st.proc.pid, "starting", None, True
        st.started = start_time(st.pid)
        self._write_state(st)
        log.info("server.start", model=st.name, port=st.port, pid=st.pid, gpu=st.gpu)

    def _alive(self, st: ServerState) -> bool:
        if st.proc is not None:
            return st.proc.poll() is None
        return pid_alive(st.pid, st.started)

    def _healthy(self, st: ServerState) -> bool:
        try:
            return httpx.get(f"{st.root_url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _model_ids(self, st: ServerState) -> list[str]:
        try:
            data = httpx.get(f"{st.root_url}/v1/models", timeout=3.0).json()
            return [m["id"] for m in data.get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError):
            return []

    def _wait_healthy(self, st: ServerState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive(st):
                if not st.wanted:  # stopped on request while it was starting: not a failure
                    st.status, st.error = "stopped", None
                    raise ServerStopped(f"The server for {st.name} was stopped while it was starting.")
                code = st.proc.poll() if st.proc else None
                st.status, st.error = "failed", f"exited with code {code}"
                raise ServerError(f"Model server for {st.name} exited (code {code}). Log tail:\n{tail(st.log_path)}")
            if self._healthy(st):
                st.status = "ready"
                self._models_cache = (0.0, [])  # the next served_models() lists it (fetched, not a background refresh)
                log.info("server.ready", model=st.name, port=st.port)
                return
            time.sleep(0.5)
        self._terminate(st)
        st.status, st.error = "failed", f"not healthy after {timeout:.0f}s"
        raise ServerError(f"Model server for {st.name} was not healthy after {timeout:.0f}s. Log tail:\n{tail(st.log_path)}")

    def _terminate(self, st: ServerState, grace: float = 15.0) -> None:
        """Stop the server's whole tree, even when its API process is already gone (its EngineCore may not be)."""
        if st.pid and not stop_tree(st.pid, started=st.started, grace=grace, proc=st.proc):
            log.error("server.stop_incomplete", model=st.name, pid=st.pid)

    def stop(self, name: str) -> None:
        with self._lock:
            st = self._servers.get(name)
        if not st:
            return
        st.wanted = False
        self._terminate(st)
        st.status = "stopped"
        self._models_cache = (0.0, [])
        self._state_file(name).unlink(missing_ok=True)
        write_scrape_targets(self)
        log.info("server.stopped", model=name)

    def stop_all(self) -> None:
        """Stop every server this app owns (called at exit and on Ctrl-C)."""
        self._stop_event.set()
        self.fleet.close()
        with self._lock:
            owned = [st.name for st in self._servers.values() if st.owned]
        for name in owned:
            self.stop(name)

    # ---- crash watching ----------------------------------------------------------
    def _ensure_watcher(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._stop_event.clear()
            self._watcher = threading.Thread(target=self._watch, name="server-watch", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        ticks = 0
        while not self._stop_event.wait(1.0):
            with self._lock:
                states = list(self._servers.values())
            for st in states:
                if st.wanted and st.status == "ready" and not self._alive(st):
                    self._restart(st)
            write_scrape_targets(self)  # Prometheus's list of vLLM servers (only when it changed)
            ticks += 1
            if self.metrics_every_s and ticks % self.metrics_every_s == 0:
                metrics.poll(self, self.metrics_history, min_interval=1.5)  # never raises

    def _restart(self, st: ServerState) -> None:
        now = time.monotonic()
        st.restarts = [t for t in st.restarts if now - t < RESTART_WINDOW_S]
        code = st.proc.poll() if st.proc else None
        log.warning("server.crashed", model=st.name, exit_code=code, restarts=len(st.restarts))
        if len(st.restarts) >= MAX_RESTARTS or not st.owned:
            st.status, st.error = "crashed", f"exited with code {code}; not restarted"
            return
        st.restarts.append(now)
        st.status = "crashed"
        try:
            # What is left of the crashed tree (EngineCore, workers) is stopped outside the lock: it may take seconds.
            self._clear_tree(st.name, st.pid, st.started, st.proc)
            with self._lock:
                self._spawn(st)
            self._wait_healthy(st, self.settings.vllm_start_timeout)
        except ServerError as exc:
            st.status, st.error = "failed", str(exc)[:500]
            log.error("server.restart_failed", model=st.name, error=str(exc)[:500])

    # ---- what is served ----------------------------------------------------------
    def add_external(self, base_url: str, api_key: str | None = None) -> None:
        """Use an OpenAI-compatible server run elsewhere (VLLM_BASE_URL); its models join the pickers."""
        self._external[base_url.rstrip("/")] = api_key

    def external_urls(self) -> list[str]:
        return list(self._external)

    def endpoint_of(self, st: ServerState) -> Endpoint:
        return Endpoint(base_url=f"{st.root_url}/v1", model=st.name)

    def _ready_root(self, base: str) -> str | None:
        """The root URL of the managed server of `base` when it is ready (the fleet's local endpoint)."""
        with self._lock:
            st = self._servers.get(base)
        return st.root_url if st is not None and st.status == "ready" else None

    # ---- the fleet: more endpoints per base -----------------------------------------
    def add_fleet_endpoint(self, base: str, url: str, *, actor: Actor) -> dict[str, str | None]:
        """Register a vLLM server (or a production-stack router) run elsewhere as an endpoint of `base`, for an admin;
        the base's saved adapters are loaded there too. Returns {root URL: None, or why an adapter failed}."""
        require_admin(actor, SERVERS_ACTION)
        root = self.fleet.add(base, url)
        fleet_file.record(self._fleet_file, self._fleet_configured, base.strip(), root, added=True)
        log.info("fleet.add_requested", base=base, url=root, by=actor.name)
        failures: dict[str, str | None] = {root: None}
        for rec in self.saved_adapters(base):
            why = self.fleet.load_adapter(base, rec.name, rec.source, urls=[root])[root]
            failures[root] = failures[root] or (f"{rec.name}: {why}" if why else None)
        self._models_cache = (0.0, [])
        return failures

    def remove_fleet_endpoint(self, base: str, url: str, *, actor: Actor) -> bool:
        """Stop routing to a registered endpoint of `base`, for an admin (the server itself is not touched)."""
        require_admin(actor, SERVERS_ACTION)
        log.info("fleet.remove_requested", base=base, url=url, by=actor.name)
        self._models_cache = (0.0, [])
        removed = self.fleet.remove(base, url)
        if removed:
            fleet_file.record(self._fleet_file, self._fleet_configured, base, endpoint_root(url), added=False)
        return removed

    def endpoint_for(self, model: str) -> Endpoint | None:
        """Endpoint for a model name: a base, an adapter of a running base, or an external model. A base with fleet
        endpoints gets one that routes each request to the least busy healthy endpoint."""
        rec = self.registry.get(model)
        if rec and rec.kind == "external":
            return Endpoint(base_url=rec.source, model=model, api_key=rec.api_key or "EMPTY")
        base = rec.parent if rec and rec.kind == "adapter" else model
        if base and self.fleet.has(base):  # several endpoints: each request is routed (engines/serving/fleet.py)
            return self.fleet.endpoint(base, model)
        with self._lock:
            st = self._servers.get(base or "")
        if st:
            return Endpoint(base_url=f"{st.root_url}/v1", model=model)
        return None

    def status(self) -> dict[str, ServerState]:
        with self._lock:
            return dict(self._servers)

    def pending_error(self) -> str | None:
        return self._pending_error

    def logs(self, name: str, lines: int = 200) -> str:
        with self._lock:
            st = self._servers.get(name)
        return tail(st.log_path if st else self.settings.servers_path / f"{safe_name(name)}.log", lines)

    def served_models(self, max_age: float = 2.0) -> list[ModelRecord]:
        """Base models and adapters the running servers report, plus external endpoints' models.

        A list older than `max_age` (but younger than MODELS_STALE_S) is answered at once and refreshed in the
        background: a chat request must not wait on an HTTP call to every server per message. max_age=0, no list yet,
        or a list invalidated by an adapter change is fetched now."""
        stamp, cached = self._models_cache
        age = time.monotonic() - stamp
        if age < max_age:
            return cached
        if stamp and max_age > 0 and age < MODELS_STALE_S:
            if self._models_refreshing.acquire(blocking=False):
                threading.Thread(target=self._refresh_models, name="served-models", daemon=True).start()
            return cached
        return self._fetch_served_models()

    def _refresh_models(self) -> None:
        try:
            self._fetch_served_models()
        except Exception as exc:  # noqa: BLE001 - a failed background refresh keeps the last list
            log.warning("server.models_refresh_failed", error=str(exc)[:300])
        finally:
            self._models_refreshing.release()

    def _fetch_served_models(self) -> list[ModelRecord]:
        invalidated_before = self._models_cache[0] == 0.0
        http = self._models_http
        if http is None:
            http = self._models_http = httpx.Client(timeout=3.0)
        found: list[ModelRecord] = []
        with self._lock:
            states = [st for st in self._servers.values() if st.status == "ready"]
        for st in states:
            try:
                data = http.get(f"{st.root_url}/v1/models").json().get("data", [])
            except (httpx.HTTPError, ValueError):
                continue
            for m in data:
                parent = m.get("parent")
                rec = ModelRecord(
                    name=m["id"], kind="adapter" if parent and parent != m["id"] else "base",
                    source=m.get("root") or st.source, parent=parent if parent != m["id"] else None,
                )
                found.append(rec)
                if rec.kind == "adapter":
                    self.registry.add(rec)
        seen = {r.name for r in found}
        for _base, url, data in self.fleet.served():  # a base served only by its fleet is listed too
            for m in data:
                parent = m.get("parent")
                if m["id"] in seen:
                    continue
                seen.add(m["id"])
                rec = ModelRecord(name=m["id"], kind="adapter" if parent and parent != m["id"] else "base",
                                  source=m.get("root") or url, parent=parent if parent != m["id"] else None)
                found.append(rec)
                if rec.kind == "adapter":
                    self.registry.add(rec)
        for url, key in self._external.items():
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            try:
                data = http.get(f"{url}/models", headers=headers).json().get("data", [])
            except (httpx.HTTPError, ValueError):
                continue
            for m in data:
                found.append(self.registry.add(ModelRecord(name=m["id"], kind="external", source=url, api_key=key)))
        found += [r for r in self.registry.all() if r.kind == "external" and r.name not in {f.name for f in found}]
        if invalidated_before or self._models_cache[0] != 0.0:  # an adapter change during the fetch wins
            self._models_cache = (time.monotonic(), found)
        return found

    # ---- LoRA adapters -----------------------------------------------------------
    def load_adapter(self, base: str, name: str, path: str | Path) -> ModelRecord:
        """Load a PEFT adapter into the running server of its base model (no restart)."""
        with self._lock:
            st = self._servers.get(base)
        managed = st is not None and st.status == "ready"
        if not managed and not self.fleet.has(base):
            raise ServerError(f"No running server for {base}; start it before loading {name}.")
        if managed:
            r = httpx.post(
                f"{st.root_url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)}, timeout=120.0
            )
            if r.status_code != 200:
                raise ServerError(f"Loading adapter {name} into {base} failed: {r.text[:500]}")
            log.info("server.adapter_loaded", base=base, adapter=name)
        # Every other endpoint of the base too; one that fails is only skipped for this adapter (its 404 fails over).
        failed = {url: why for url, why in self.fleet.load_adapter(base, name, str(path)).items() if why}
        if not managed and failed and len(failed) == len(self.fleet.external(base)):
            raise ServerError(f"Loading adapter {name} failed on every endpoint of {base}: " + "; ".join(failed.values()))
        self._models_cache = (0.0, [])
        return self.registry.add(ModelRecord(name=name, kind="adapter", source=str(path), parent=base))

    def unload_adapter(self, base: str, name: str) -> None:
        with self._lock:
            st = self._servers.get(base)
        if st:
            httpx.post(f"{st.root_url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=30.0)
        self.fleet.unload_adapter(base, name)
        self.registry.remove(name)
        self._models_cache = (0.0, [])
