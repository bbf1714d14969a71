"""The studio's own Prometheus metrics (`GET /metrics`) and health (`GET /healthz`), on a registry of its own.

Light on purpose: prometheus_client, fastapi (already loaded by Gradio) and the storage models only, never
torch/transformers/vllm (the UI imports it).
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import Request  # at module level: the route's annotation is resolved from these globals
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    import fastapi

    from engines.serving.manager import ServerManager

JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
SERVER_STATUSES = ("starting", "ready", "crashed", "failed", "stopped")
MAX_ERROR_KINDS = 50  # label values are bounded: later new kinds count as "other"
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REGISTRY = CollectorRegistry()
CHAT_MESSAGES = Counter("studio_chat_messages", "Chat answers completed by the studio.", registry=REGISTRY)
COMPLETION_TOKENS = Counter("studio_completion_tokens", "Completion tokens of the studio's chat answers.", registry=REGISTRY)
TTFT = Histogram("studio_ttft_seconds", "Time to first token of chat answers, as the studio measured it.",
                 buckets=TTFT_BUCKETS, registry=REGISTRY)
ERRORS = Counter("studio_errors", "Errors seen by the studio, by kind.", ["kind"], registry=REGISTRY)

_servers: ServerManager | None = None
_kinds: set[str] = set()
_kinds_lock = threading.Lock()


def record_chat(ttft_ms: float | None, completion_tokens: int | None) -> None:
    """One answered chat message: its TTFT (ms; None when no token came) and completion tokens."""
    CHAT_MESSAGES.inc()
    if ttft_ms is not None and ttft_ms >= 0:
        TTFT.observe(ttft_ms / 1000.0)
    if completion_tokens:
        COMPLETION_TOKENS.inc(max(0, int(completion_tokens)))


def error_kind(kind: str) -> str:
    """A bounded label value: lower-case [a-z0-9_], at most 40 characters, "other" past MAX_ERROR_KINDS kinds."""
    k = re.sub(r"[^a-z0-9_]+", "_", str(kind).strip().lower()).strip("_")[:40] or "unknown"
    with _kinds_lock:
        if k not in _kinds:
            if len(_kinds) >= MAX_ERROR_KINDS:
                return "other"
            _kinds.add(k)
    return k


def record_error(kind: str) -> None:
    """One error of a kind such as "server_unavailable", "context_too_long", "timeout", "stream_interrupted"."""
    ERRORS.labels(kind=error_kind(kind)).inc()


def track_servers(manager: ServerManager | None) -> None:
    """Report this manager's model servers in `studio_model_servers{status}` (None stops reporting them)."""
    global _servers
    _servers = manager


def _count_by_status(model: Any) -> dict[str, int] | None:
    """Rows per status of a storage model; None when no database is bound or it fails."""
    from peewee import fn

    try:
        rows = model.select(model.status, fn.COUNT(model.id).alias("n")).group_by(model.status).tuples()
        return {status: int(n) for status, n in rows}
    except Exception:  # no database bound (a bare test app), or it is down: leave the series out
        return None


def server_counts(manager: ServerManager | None) -> dict[str, int]:
    counts = dict.fromkeys(SERVER_STATUSES, 0)
    if manager is not None:
        for st in manager.status().values():
            counts[st.status] = counts.get(st.status, 0) + 1
    return counts


class _StateCollector(Collector):
    """Gauges read at scrape time: training runs, evaluations and model servers by status."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from storage.models import EvalRun, TrainingRun

        for name, doc, model in (
            ("studio_training_runs", "Fine-tune runs by status.", TrainingRun),
            ("studio_eval_runs", "Batch evaluations by status.", EvalRun),
        ):
            counts = _count_by_status(model)
            if counts is None:
                continue
            g = GaugeMetricFamily(name, doc, labels=["status"])
            for status in dict.fromkeys([*JOB_STATUSES, *counts]):
                g.add_metric([status], counts.get(status, 0))
            yield g
        g = GaugeMetricFamily("studio_model_servers", "Model servers managed by the studio, by status.", labels=["status"])
        for status, n in server_counts(_servers).items():
            g.add_metric([status], n)
        yield g

    def describe(self) -> list:
        return []  # read at scrape time only (describing would query the database at registration)


REGISTRY.register(_StateCollector())


def metrics_text() -> bytes:
    """Everything in the studio's registry, in the Prometheus text format."""
    return generate_latest(REGISTRY)


def database_ok() -> bool:
    """True when the bound database answers a trivial query."""
    from storage import database

    try:
        database.execute_sql("SELECT 1").fetchone()
        return True
    except Exception:
        return False


def health_report(manager: ServerManager | None = None, *, db_check: Callable[[], bool] = database_ok) -> dict[str, Any]:
    """{"status": "ok"|"degraded", "db": bool, "servers": {status: n}}: degraded when the database fails or a server
    crashed or failed to start (a stopped server is not a fault)."""
    db = bool(db_check())
    servers = {k: v for k, v in server_counts(manager).items() if v}
    bad = servers.get("crashed", 0) + servers.get("failed", 0)
    return {"status": "ok" if db and not bad else "degraded", "db": db, "servers": servers, "time": time.time()}


def basic_auth_ok(header: str, auth: tuple[str, str] | Callable[[str, str], bool]) -> bool:
    """Whether an `Authorization: Basic …` header carries exactly `auth` (compared in constant time), or, with a
    callable (e.g. `engines.accounts.check_login`), a user and password it accepts."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    if callable(auth):
        return bool(sep) and bool(auth(user, password))
    return bool(sep) & secrets.compare_digest(user, auth[0]) & secrets.compare_digest(password, auth[1])


def install_routes(app: fastapi.FastAPI, health: Callable[[], dict],
                   auth: tuple[str, str] | Callable[[str, str], bool] | None = None,
                   auth_required: Callable[[], bool] | None = None) -> None:
    """Add `GET /metrics` (Prometheus text) and `GET /healthz` (JSON from `health()`, e.g. `health_report`).

    With `auth` (a user:password pair, or a check such as any enabled account's login), /metrics asks for it as
    HTTP Basic (Prometheus's `basic_auth`), so a shared or LAN-bound studio does not publish its usage; with
    `auth_required`, only while it returns True (a studio asks for logins once its first account exists).
    /healthz stays open for container and load-balancer checks: it says only ok/degraded and server counts. /healthz answers 200 while the database
    works (status "ok" or "degraded") and 503 when it does not or when `health()` itself fails.
    """
    from fastapi.responses import JSONResponse, Response

    def get_metrics(request: Request) -> Response:
        asked = auth is not None and (auth_required is None or auth_required())
        if asked and not basic_auth_ok(request.headers.get("authorization", ""), auth):
            return Response("authentication required\n", status_code=401,
                            headers={"WWW-Authenticate": 'Basic realm="Chat Studio metrics"'})
        return Response(content=metrics_text(), media_type=CONTENT_TYPE_LATEST)

    def get_healthz() -> JSONResponse:
        try:
            report = dict(health())
        except Exception as exc:
            return JSONResponse({"status": "degraded", "db": False, "error": exc.__class__.__name__}, status_code=503)
        report.setdefault("status", "ok" if report.get("db", True) else "degraded")
        return JSONResponse(report, status_code=200 if report.get("db", True) else 503)

    app.add_api_route("/metrics", get_metrics, methods=["GET"], include_in_schema=False)
    app.add_api_route("/healthz", get_healthz, methods=["GET"], include_in_schema=False)
