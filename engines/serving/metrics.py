"""Live numbers from the model servers: each vLLM server's Prometheus `/metrics`, kept as a short history per server."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from engines.serving.manager import ServerManager

POLL_TIMEOUT_S = 1.0  # the UI timer polls every ~2 s: a slow server must not hold it back
HISTORY_LEN = 300  # snapshots kept per server (10 minutes at one poll every 2 s)
UNREACHABLE = "unreachable"

# Sample names (as written in the exposition text) -> snapshot field. Several label sets (engines, data-parallel
# ranks) are summed; the KV-cache use is averaged. gpu_cache_usage_perc is the name before vLLM 0.10.
_SUMMED = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:generation_tokens_total": "generation_tokens",
    "vllm:prompt_tokens_total": "prompt_tokens",
    "vllm:time_to_first_token_seconds_sum": "ttft_sum_s",
    "vllm:time_to_first_token_seconds_count": "ttft_count",
}
_KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
# One exposition line of a sample the snapshot reads: its name, its labels (quoted values may hold `}` or spaces), the
# value. vLLM's /metrics is ~60 KB of histograms; the full parser took ~20 ms of pure Python per poll (every 3 s per server
# in the background, more often while a Models tab is open; holding the GIL the UI's event loop and the gateway wait
# for), this scan well under 1 ms.
_WANTED_LINE = re.compile(
    r"^(" + "|".join(re.escape(n) for n in (*_SUMMED, *_KV_CACHE)) + r")"
    r"""(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?[ \t]+(\S+)""",
    re.MULTILINE,
)


@dataclass(frozen=True)
class MetricsSnapshot:
    """One server's numbers at one moment; a field is None when the server does not export it."""

    t: float  # time.time() of the poll
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1
    generation_tokens: float | None = None  # cumulative counters since the server started
    prompt_tokens: float | None = None
    ttft_sum_s: float | None = None  # the TTFT histogram's sum and count
    ttft_count: float | None = None
    error: str | None = None  # "unreachable" (or the HTTP status) when the poll failed

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class IntervalRates:
    """What happened between two snapshots, stamped at the end of the interval."""

    t: float
    generation_tps: float | None  # generation tokens per second
    prompt_tps: float | None
    mean_ttft_ms: float | None  # mean TTFT of the requests whose first token came in the interval


def parse_metrics(text: str, *, t: float | None = None) -> MetricsSnapshot:
    """A snapshot from Prometheus exposition text (vLLM's `/metrics`). Raises ValueError on malformed text."""
    samples = [(m[1], float(m[2])) for m in _WANTED_LINE.finditer(text)]
    if not samples:
        # Not one sample the snapshot reads: the full parser tells a valid text without them (a snapshot of unknowns)
        # from one that is not Prometheus text at all (ValueError).
        samples = [(s.name, float(s.value)) for family in text_string_to_metric_families(text) for s in family.samples]
    sums: dict[str, float] = {}
    kv: list[float] = []
    kv_name: str | None = None
    for name, value in samples:
        field_name = _SUMMED.get(name)
        if field_name is not None:
            sums[field_name] = sums.get(field_name, 0.0) + value
        elif name in _KV_CACHE and kv_name in (None, name):
            kv_name = name  # never mix the old and the new name
            kv.append(value)
    return MetricsSnapshot(t=time.time() if t is None else t, kv_cache_usage=sum(kv) / len(kv) if kv else None, **sums)


_POLL_CLIENT: httpx.Client | None = None
_POLL_CLIENT_LOCK = threading.Lock()


def _poll_client() -> httpx.Client:
    """One client for every background poll: `httpx.get` builds a client, and with it a TLS context (~15 ms of CPU
    holding the GIL, which the UI's event loop waits for), on every call. httpx clients are thread-safe."""
    global _POLL_CLIENT
    with _POLL_CLIENT_LOCK:
        if _POLL_CLIENT is None:
            _POLL_CLIENT = httpx.Client()
        return _POLL_CLIENT


def fetch_metrics(root_url: str, *, timeout: float = POLL_TIMEOUT_S, client: httpx.Client | None = None) -> MetricsSnapshot:
    """GET `{root_url}/metrics` and parse it; never raises (a failure is a snapshot with `error` set)."""
    now = time.time()
    try:
        r = (client or _poll_client()).get(f"{root_url.rstrip('/')}/metrics", timeout=timeout)
    except httpx.HTTPError:
        return MetricsSnapshot(t=now, error=UNREACHABLE)
    if r.status_code != 200:
        return MetricsSnapshot(t=now, error=f"HTTP {r.status_code}")
    try:
        return parse_metrics(r.text, t=now)
    except (ValueError, TypeError):
        return MetricsSnapshot(t=now, error="malformed metrics")


def interval_rates(prev: MetricsSnapshot, cur: MetricsSnapshot) -> IntervalRates | None:
    """Rates between two good snapshots; None when either failed, time did not advance or the server restarted."""
    dt = cur.t - prev.t
    if not (prev.ok and cur.ok) or dt <= 0:
        return None

    def delta(name: str) -> float | None:
        a, b = getattr(prev, name), getattr(cur, name)
        return None if a is None or b is None else b - a

    counters = {n: delta(n) for n in ("generation_tokens", "prompt_tokens", "ttft_sum_s", "ttft_count")}
    if any(d is not None and d < 0 for d in counters.values()):  # a counter went down: the server restarted
        return None
    gen, prompt, ttft_sum, ttft_n = counters.values()
    return IntervalRates(
        t=cur.t,
        generation_tps=None if gen is None else gen / dt,
        prompt_tps=None if prompt is None else prompt / dt,
        mean_ttft_ms=1000.0 * ttft_sum / ttft_n if ttft_sum is not None and ttft_n else None,
    )


class MetricsHistory:
    """The last `maxlen` snapshots of each server, in memory; safe to share between threads and browser sessions."""

    def __init__(self, maxlen: int = HISTORY_LEN) -> None:
        self.maxlen = maxlen
        self._lock = threading.Lock()
        self._data: dict[str, deque[MetricsSnapshot]] = {}

    def record(self, server: str, snapshot: MetricsSnapshot) -> None:
        with self._lock:
            self._data.setdefault(server, deque(maxlen=self.maxlen)).append(snapshot)

    def servers(self) -> list[str]:
        with self._lock:
            return list(self._data)

    def snapshots(self, server: str) -> list[MetricsSnapshot]:
        with self._lock:
            return list(self._data.get(server, ()))

    def latest(self, server: str) -> MetricsSnapshot | None:
        with self._lock:
            d = self._data.get(server)
            return d[-1] if d else None

    def rates(self, server: str) -> list[IntervalRates]:
        """Per-interval rates between consecutive snapshots (intervals that cannot be measured are left out)."""
        snaps = self.snapshots(server)
        out = (interval_rates(a, b) for a, b in zip(snaps, snaps[1:], strict=False))
        return [r for r in out if r is not None]

    def forget(self, server: str) -> None:
        with self._lock:
            self._data.pop(server, None)

    def version(self) -> tuple[tuple[str, int, float], ...]:
        """Changes whenever a snapshot is recorded (lets a UI skip re-sending unchanged plots)."""
        with self._lock:
            return tuple((name, len(d), d[-1].t if d else 0.0) for name, d in self._data.items())


HISTORY = MetricsHistory()  # the app's shared history (one per process)


def poll(
    manager: ServerManager, history: MetricsHistory | None = None, *, timeout: float = POLL_TIMEOUT_S,
    min_interval: float = 1.0, names: Iterable[str] | None = None,
) -> None:
    """Fetch `/metrics` from every ready server of `manager` (at once) and record the snapshots; never raises.

    A server polled less than `min_interval` seconds ago is skipped, so several browser tabs polling together do not
    crowd the history. A failed fetch is recorded as a snapshot with `error` ("unreachable").
    """
    history = HISTORY if history is None else history
    now = time.time()
    wanted = set(names) if names is not None else None
    targets = []
    for name, st in manager.status().items():
        if st.status != "ready" or (wanted is not None and name not in wanted):
            continue
        last = history.latest(name)
        if last is not None and now - last.t < min_interval:
            continue
        targets.append((name, st.root_url))
    if not targets:
        return
    if len(targets) == 1:
        name, url = targets[0]
        history.record(name, fetch_metrics(url, timeout=timeout))
        return
    with ThreadPoolExecutor(max_workers=min(8, len(targets)), thread_name_prefix="metrics-poll") as pool:
        results = list(pool.map(lambda target: (target[0], fetch_metrics(target[1], timeout=timeout)), targets))
    for name, snap in results:
        history.record(name, snap)
