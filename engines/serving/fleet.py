"""The fleet: several vLLM endpoints for one base model — the managed local server plus servers (or a vLLM
production-stack router) run elsewhere — with health and load read from each one's `/metrics`.

A base with no extra endpoint never reaches this module: `ServerManager.endpoint_for` hands out its local server as
before. For a fleet base it hands out an `Endpoint` carrying a `FleetRoute`; `stream_chat` / `complete_chat` ask that
route, per request, for the endpoints best first (healthy, then fewest running + waiting requests), count the request
in flight while it runs (vLLM's `/metrics` lags behind a burst), and move on to the next endpoint when one fails
before any text came back. A background thread polls `/metrics` about once a second while the fleet has endpoints.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Literal

import httpx
import structlog

from engines.endpoints import Endpoint
from engines.serving.metrics import UNREACHABLE, MetricsSnapshot, fetch_metrics
from engines.settings import endpoint_root

log = structlog.get_logger(__name__)

Health = Literal["up", "unknown", "down"]
POLL_INTERVAL_S = 1.0
DOWN_FOR_S = 15.0  # a server a request could not reach is skipped this long, unless a poll finds it sooner
# Not polled yet ranks with the healthy ones: a just-added endpoint takes its share at once (if it is dead, the
# request fails over in milliseconds and the endpoint is marked down).
_HEALTH_ORDER = {"up": 0, "unknown": 0, "down": 1}


@dataclass(frozen=True)
class EndpointLoad:
    """What routing knows about one endpoint of a base (times are `time.time()`)."""

    url: str  # root URL: /metrics and /v1 hang under it
    snapshot: MetricsSnapshot | None = None  # the last `/metrics` poll; None: not polled yet
    in_flight: int = 0  # this studio's requests running there now
    started_since_poll: int = 0  # of those, the ones sent after the snapshot (not in its numbers yet)
    down_until: float = 0.0
    last_pick: float = 0.0
    managed: bool = False

    def health(self, now: float) -> Health:
        if self.down_until > now or (self.snapshot is not None and self.snapshot.error == UNREACHABLE):
            return "down"
        # A server that answers but has no vLLM metrics (a router, an HTTP error) is up; its load is our own count.
        return "unknown" if self.snapshot is None else "up"

    def load(self) -> float:
        """Requests queued or running there: the server's own count plus ours it has not seen yet."""
        snap = self.snapshot
        if snap is not None and snap.ok and snap.running is not None:
            return snap.running + (snap.waiting or 0.0) + self.started_since_poll
        return float(self.in_flight)


def rank(loads: Sequence[EndpointLoad], *, now: float | None = None) -> list[EndpointLoad]:
    """Best first: up (or not polled yet) before down; then the lightest load; then the one picked longest ago
    (equal loads take turns). Down endpoints stay at the end, a last resort."""
    now = time.time() if now is None else now
    return sorted(loads, key=lambda e: (_HEALTH_ORDER[e.health(now)], e.load(), e.last_pick))


@dataclass(frozen=True)
class FleetEndpointView:
    """One endpoint of a base as the Models tab shows it."""

    base: str
    url: str
    managed: bool
    health: Health
    running: float | None
    waiting: float | None
    in_flight: int
    error: str | None


class FleetRoute:
    """The `Router` of a fleet base's endpoints (what `Endpoint.router` holds)."""

    def __init__(self, fleet: Fleet, base: str) -> None:
        self.fleet, self.base = fleet, base

    def targets(self, endpoint: Endpoint) -> list[Endpoint]:
        return self.fleet.targets(self.base, endpoint.model)

    def track(self, target: Endpoint) -> AbstractContextManager[None]:
        return self.fleet.track(endpoint_root(target.base_url))

    def failed(self, target: Endpoint, reason: str, *, down: bool) -> None:
        self.fleet.failed(endpoint_root(target.base_url), reason, down=down)


class Fleet:
    """Extra endpoints per base model, their last `/metrics`, this studio's requests in flight on each."""

    def __init__(self, endpoints: dict[str, list[str]] | None = None, *, managed: Callable[[str], str | None] | None = None,
                 api_key: str | None = None, poll_interval: float = POLL_INTERVAL_S, poll: bool = True) -> None:
        self._external = {b: list(u) for b, u in (endpoints or {}).items() if u}
        self._managed = managed or (lambda base: None)
        self._api_key = api_key
        self.poll_interval = poll_interval
        self.poll = poll  # False: no background thread (the caller polls with poll_once: scripts, tests)
        self._lock = threading.Lock()
        self._snapshots: dict[str, MetricsSnapshot] = {}
        self._in_flight: dict[str, list[float]] = {}  # root URL -> start times of our live requests
        self._down_until: dict[str, float] = {}
        self._last_pick: dict[str, float] = {}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    # ---- membership ---------------------------------------------------------------
    def has(self, base: str) -> bool:
        """True when `base` has endpoints besides the managed one (only then does routing happen)."""
        with self._lock:
            return bool(self._external.get(base))

    def bases(self) -> list[str]:
        with self._lock:
            return [b for b, urls in self._external.items() if urls]

    def external(self, base: str) -> list[str]:
        with self._lock:
            return list(self._external.get(base, ()))

    def add(self, base: str, url: str) -> str:
        """Register an endpoint (root or /v1 URL) for a base; returns its root URL. ValueError for a bad URL."""
        if not base.strip():
            raise ValueError("Name the base model the endpoint serves.")
        root = endpoint_root(url)
        with self._lock:
            urls = self._external.setdefault(base.strip(), [])
            if root not in urls:
                urls.append(root)
        snap = fetch_metrics(root)  # known at once: routing does not wait for the poller's next round
        with self._lock:
            self._snapshots[root] = snap
        log.info("fleet.endpoint_added", base=base, url=root, reachable=snap.error != UNREACHABLE)
        self.start()
        return root

    def remove(self, base: str, url: str) -> bool:
        root = endpoint_root(url)
        with self._lock:
            urls = self._external.get(base, [])
            if root not in urls:
                return False
            urls.remove(root)
            if not urls:
                self._external.pop(base, None)
            self._snapshots.pop(root, None)
        log.info("fleet.endpoint_removed", base=base, url=root)
        return True

    def urls(self, base: str) -> list[str]:
        """Every endpoint of a base: the managed server (when ready) first, then the registered ones."""
        managed = self._managed(base)
        return ([managed] if managed else []) + [u for u in self.external(base) if u != managed]

    # ---- routing ------------------------------------------------------------------
    def loads(self, base: str, *, now: float | None = None) -> list[EndpointLoad]:
        managed = self._managed(base)
        members = self.urls(base)
        out = []
        with self._lock:
            for url in members:
                snap = self._snapshots.get(url)
                starts = self._in_flight.get(url, [])
                since = sum(1 for t in starts if snap is None or t > snap.t)
                out.append(EndpointLoad(url=url, snapshot=snap, in_flight=len(starts), started_since_poll=since,
                                        down_until=self._down_until.get(url, 0.0), last_pick=self._last_pick.get(url, 0.0),
                                        managed=url == managed))
        return out

    def _endpoint(self, load: EndpointLoad, model: str) -> Endpoint:
        key = "EMPTY" if load.managed or not self._api_key else self._api_key
        return Endpoint(base_url=f"{load.url}/v1", model=model, api_key=key)

    def targets(self, base: str, model: str) -> list[Endpoint]:
        """The endpoints to try for one request, best first (the first counts as picked: equal loads take turns)."""
        self.start()
        ranked = rank(self.loads(base))
        if ranked:
            with self._lock:
                self._last_pick[ranked[0].url] = time.time()
        return [self._endpoint(e, model) for e in ranked]

    def endpoint(self, base: str, model: str) -> Endpoint | None:
        """An endpoint for `model` (a base or one of its adapters) that routes each request through this fleet."""
        self.start()
        ranked = rank(self.loads(base))
        if not ranked:
            return None
        best = self._endpoint(ranked[0], model)
        return Endpoint(base_url=best.base_url, model=model, api_key=best.api_key, router=FleetRoute(self, base))

    @contextmanager
    def track(self, url: str) -> Iterator[None]:
        began = time.time()
        with self._lock:
            self._in_flight.setdefault(url, []).append(began)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[url].remove(began)

    def failed(self, url: str, reason: str, *, down: bool) -> None:
        if down:
            with self._lock:
                self._down_until[url] = time.time() + DOWN_FOR_S
        log.warning("fleet.request_failed", url=url, down=down, reason=reason[:300])

    # ---- health and load from /metrics -------------------------------------------
    def poll_once(self, timeout: float = 1.0) -> None:
        """Fetch every fleet endpoint's `/metrics` at once; never raises."""
        urls = sorted({u for b in self.bases() for u in self.urls(b)})
        if not urls:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(urls)), thread_name_prefix="fleet-poll") as pool:
            snaps = list(pool.map(lambda u: fetch_metrics(u, timeout=timeout), urls))
        with self._lock:
            for url, snap in zip(urls, snaps, strict=True):
                self._snapshots[url] = snap
                if snap.error != UNREACHABLE:
                    self._down_until.pop(url, None)  # it answers again: back in the rotation

    def start(self) -> None:
        """Start the poller (idempotent; nothing runs while no base has extra endpoints)."""
        if not self.poll or not self.bases() or (self._poller is not None and self._poller.is_alive()):
            return
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll_loop, name="fleet-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while True:
            self.poll_once()
            if self._stop.wait(self.poll_interval):
                return

    def close(self) -> None:
        self._stop.set()

    def view(self) -> list[FleetEndpointView]:
        """Each endpoint of each fleet base with its health and load (for the Models tab)."""
        self.start()
        now = time.time()
        out = []
        for base in self.bases():
            for e in self.loads(base, now=now):
                snap = e.snapshot
                ok = snap is not None and snap.ok
                out.append(FleetEndpointView(base=base, url=e.url, managed=e.managed, health=e.health(now),
                                             running=snap.running if ok else None, waiting=snap.waiting if ok else None,
                                             in_flight=e.in_flight, error=None if snap is None else snap.error))
        return out

    # ---- adapters and models on the registered endpoints --------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def load_adapter(self, base: str, name: str, path: str, *, urls: Sequence[str] | None = None) -> dict[str, str | None]:
        """Load an adapter on every registered endpoint of `base` (or `urls`): {url: None, or why it failed}.
        Each server reads `path` itself (docs/scale-out.md: what a remote vLLM needs)."""
        out: dict[str, str | None] = {}
        for url in self.external(base) if urls is None else urls:
            try:
                r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": path},
                               headers=self._headers(), timeout=120.0)
                ok = r.status_code == 200 or "already" in r.text  # loaded before (a re-registered endpoint)
                out[url] = None if ok else f"HTTP {r.status_code}: {r.text[:300]}"
            except httpx.HTTPError as exc:
                out[url] = f"{exc.__class__.__name__}: {exc}"[:300]
            if out[url]:
                log.warning("fleet.adapter_load_failed", base=base, adapter=name, url=url, error=out[url])
            else:
                log.info("fleet.adapter_loaded", base=base, adapter=name, url=url)
        return out

    def unload_adapter(self, base: str, name: str) -> None:
        for url in self.external(base):
            try:
                httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": name}, headers=self._headers(), timeout=30.0)
            except httpx.HTTPError as exc:
                log.warning("fleet.adapter_unload_failed", base=base, adapter=name, url=url, error=str(exc)[:300])

    def served(self, timeout: float = 3.0) -> list[tuple[str, str, list[dict]]]:
        """(base, url, `/v1/models` data) of every registered endpoint not known to be down."""
        now = time.time()
        out = []
        for base in self.bases():
            for e in self.loads(base, now=now):
                if e.managed or e.health(now) == "down":
                    continue
                try:
                    data = httpx.get(f"{e.url}/v1/models", headers=self._headers(), timeout=timeout).json().get("data", [])
                except (httpx.HTTPError, ValueError, AttributeError):
                    continue
                out.append((base, e.url, [m for m in data if isinstance(m, dict) and "id" in m]))
        return out
