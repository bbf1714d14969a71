"""What the Models tab renders from engine data: the models table, the servers table, health pills, live metric plots."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from engines.models.registry import ModelRecord
from engines.serving.fleet import FleetEndpointView
from engines.serving.manager import ServerState
from engines.serving.metrics import MetricsHistory
from studio.i18n import t

STATUS_ICON = {"starting": "○", "ready": "●", "crashed": "✗", "failed": "✗", "stopped": "■"}
KIND_ORDER = {"base": 0, "adapter": 1, "external": 2}
PLOT_WINDOW_S = 600.0  # the plots show the last 10 minutes
GAP_S = 12.0  # two points of one line further apart than this (a stopped server, failed polls) are not joined


@dataclass(frozen=True)
class StartOptions:
    """A checked Start form: None means "the setting" (or a free port)."""

    gpu: str | None = None
    port: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and value != value)


def start_options(lang: str, gpu: Any, port: Any, max_model_len: Any, gpu_memory_utilization: Any) -> tuple[StartOptions | None, dict[str, str]]:
    """(options, {}) when the Start form is valid, else (None, {field: message}). Empty fields keep the defaults."""
    errors: dict[str, str] = {}
    gpu_s = "" if _blank(gpu) else str(gpu).strip()
    if gpu_s and not all(p.strip().isdigit() for p in gpu_s.split(",")):
        errors["gpu"] = t(lang, "models.err.gpu")
    port_i = mlen_i = None
    mem_f = None
    try:
        port_i = None if _blank(port) or float(port) == 0 else int(float(port))
        if port_i is not None and not 1024 <= port_i <= 65535:
            raise ValueError
    except (TypeError, ValueError):
        errors["port"] = t(lang, "models.err.port")
    try:
        mlen_i = None if _blank(max_model_len) or float(max_model_len) == 0 else int(float(max_model_len))
        if mlen_i is not None and mlen_i < 128:
            raise ValueError
    except (TypeError, ValueError):
        errors["max_model_len"] = t(lang, "models.err.max_model_len")
    try:
        mem_f = None if _blank(gpu_memory_utilization) or float(gpu_memory_utilization) == 0 else float(gpu_memory_utilization)
        if mem_f is not None and not 0.0 < mem_f <= 1.0:
            raise ValueError
    except (TypeError, ValueError):
        errors["gpu_memory_utilization"] = t(lang, "models.err.gpu_memory_utilization")
    if errors:
        return None, errors
    return StartOptions(gpu=gpu_s or None, port=port_i, max_model_len=mlen_i, gpu_memory_utilization=mem_f), {}


def errors_markdown(lang: str, errors: Mapping[str, str]) -> str:
    if not errors:
        return ""
    lines = [f"- **{t(lang, f'models.field.{k}')}**: {html.escape(v)}" for k, v in errors.items()]
    return "<div class='models-errors' data-testid='models-errors'>\n\n" + "\n".join(lines) + "\n\n</div>"


def start_choices(default_model: str, records: Iterable[ModelRecord], catalog: Iterable[Any]) -> list[str]:
    """Base models a server can be started for: the default first, then the registry's and the catalogue's bases."""
    names = [default_model] if default_model else []
    names += [r.name for r in records if r.kind == "base"]
    names += [e.name for e in catalog if getattr(e, "kind", "") == "base"]
    return list(dict.fromkeys(names))


def model_rows(served: Iterable[ModelRecord], registered: Iterable[ModelRecord], catalog: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per model name (served first, then registry, then catalogue; the first non-empty value wins),
    adapters right under their base, external endpoints last."""
    rows: dict[str, dict[str, Any]] = {}
    served = list(served)
    served_names = {r.name for r in served}

    def add(name: str, kind: str, parent: str | None, source: str | None) -> None:
        row = rows.setdefault(name, {"name": name, "kind": kind, "parent": parent or "", "source": source or ""})
        row["parent"] = row["parent"] or parent or ""
        row["source"] = row["source"] or source or ""

    for r in [*served, *registered]:
        add(r.name, r.kind, r.parent, r.source)
    for e in catalog:
        add(e.name, e.kind, getattr(e, "parent", None), getattr(e, "path", None) or getattr(e, "url", None))
    for row in rows.values():
        row["served"] = row["name"] in served_names

    def order(row: dict[str, Any]) -> tuple:
        family = row["parent"] if row["kind"] == "adapter" and row["parent"] else row["name"]
        return (row["kind"] == "external", family.lower(), KIND_ORDER.get(row["kind"], 3), row["name"].lower())

    return sorted(rows.values(), key=order)


def models_frame(lang: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    cols = [t(lang, f"models.col.{c}") for c in ("name", "kind", "parent", "source", "served")]
    data = [[r["name"], t(lang, f"models.kind.{r['kind']}"), r["parent"], r["source"],
             f"✓ {t(lang, 'models.yes')}" if r["served"] else t(lang, "models.no")] for r in rows]
    return pd.DataFrame(data, columns=cols)


def servers_frame(lang: str, states: Mapping[str, ServerState]) -> pd.DataFrame:
    cols = [t(lang, f"models.col.{c}") for c in ("name", "port", "gpu", "status", "pid", "restarts", "error")]
    data = [[st.name, st.port, st.gpu if st.gpu not in (None, "") else "—",
             f"{STATUS_ICON.get(st.status, '')} {t(lang, f'status.{st.status}')}", st.pid or "", len(st.restarts),
             (st.error or "")[:160]] for st in states.values()]
    return pd.DataFrame(data, columns=cols)


def servers_signature(states: Mapping[str, ServerState]) -> str:
    """Changes when anything the servers table shows changes."""
    return repr([(s.name, s.status, s.port, s.gpu, s.pid, len(s.restarts), s.error) for s in states.values()])


def health_html(lang: str, states: Mapping[str, ServerState], history: MetricsHistory, *, no_serve: bool = False,
                external_urls: Iterable[str] = (), pending_error: str | None = None,
                fleet: Iterable[FleetEndpointView] = (), jobs: Iterable[Any] = ()) -> str:
    """One pill per server: its status and, when ready, what its last `/metrics` poll said; then one per endpoint
    of each fleet base (`ServerManager.fleet.view()`); then one per queued or running fine-tune, saying where it runs."""
    pills = []
    for st in states.values():
        snap = history.latest(st.name) if st.status == "ready" else None
        detail, kv = "", "?"
        if snap is not None and not snap.ok:
            detail = f" · {t(lang, 'models.health.unreachable')}"
        elif snap is not None:
            kv = f"{100 * snap.kv_cache_usage:.0f}" if snap.kv_cache_usage is not None else kv
            detail = " · " + t(lang, "models.health.metrics", running=f"{snap.running or 0:.0f}",
                               waiting=f"{snap.waiting or 0:.0f}", kv=kv)
        title = html.escape(st.error or f"127.0.0.1:{st.port}", quote=True)
        metrics_state = "none" if snap is None else ("ok" if snap.ok else "unreachable")
        numbers = "" if snap is None or not snap.ok else f" data-running='{snap.running or 0:.0f}' data-kv='{kv}'"
        pills.append(
            f"<span class='server-pill {st.status}' title='{title}' data-server='{html.escape(st.name, quote=True)}' "
            f"data-status='{st.status}' data-metrics='{metrics_state}'{numbers}><span class='dot'></span>"
            f"{html.escape(st.name)} · {html.escape(t(lang, f'status.{st.status}'))}{html.escape(detail)}</span>"
        )
    pills += [fleet_pill(lang, v) for v in fleet]
    for url in external_urls:
        pills.append(f"<span class='server-pill ready' data-status='external' title='{html.escape(url, quote=True)}'>"
                     f"<span class='dot'></span>{html.escape(t(lang, 'status.external'))} · {html.escape(url)}</span>")
    if pending_error:  # a background start that failed before its server had a state (resolve/convert/download)
        pills.append(f"<span class='server-pill failed' data-status='failed' title='{html.escape(pending_error[-1500:], quote=True)}'>"
                     f"<span class='dot'></span>{html.escape(pending_error.splitlines()[0][:160] if pending_error.strip() else '')}</span>")
    if not pills:
        pills.append(f"<span class='server-pill stopped'>{html.escape(t(lang, 'models.no_serve' if no_serve else 'models.no_servers'))}</span>")
    pills += [job_pill(lang, run) for run in jobs]
    return f"<div class='server-status' data-testid='models-health'>{''.join(pills)}</div>"


def job_pill(lang: str, run: Any) -> str:
    """A fine-tune that is queued or running, and where: a job on the Ray cluster (its id there) or this machine."""
    if run.compute == "ray":
        where = t(lang, "models.job.ray", id=run.remote_job_id or "…")
    else:
        where = t(lang, "models.job.local") + (f" (PID {run.pid})" if run.pid else "")
    state = "starting" if run.status == "queued" else "ready"
    return (f"<span class='server-pill {state}' data-job='{html.escape(run.name, quote=True)}' "
            f"data-compute='{html.escape(run.compute or 'local', quote=True)}'><span class='dot'></span>⚙ "
            f"{html.escape(run.name)} · {html.escape(t(lang, 'models.job.finetune', status=t(lang, f'ft.status.{run.status}')))}"
            f" · {html.escape(where)}</span>")


FLEET_CLASS = {"up": "ready", "unknown": "starting", "down": "failed"}


def fleet_pill(lang: str, v: FleetEndpointView) -> str:
    """One endpoint of a fleet base: health, the server's running / waiting requests, this studio's in flight."""
    where = t(lang, "models.fleet.local") if v.managed else v.url
    detail = ""
    if v.health == "up":
        detail = " · " + t(lang, "models.fleet.load", running=f"{v.running or 0:.0f}", waiting=f"{v.waiting or 0:.0f}",
                           in_flight=v.in_flight)
    title = html.escape(t(lang, "models.fleet.title", base=v.base, url=v.url) + (f" · {v.error}" if v.error else ""), quote=True)
    running = "" if v.running is None else f" data-running='{v.running:.0f}'"
    return (f"<span class='server-pill {FLEET_CLASS[v.health]}' title='{title}' data-fleet='{html.escape(v.base, quote=True)}' "
            f"data-url='{html.escape(v.url, quote=True)}' data-status='{v.health}'{running}><span class='dot'></span>"
            f"{html.escape(v.base)} · {html.escape(where)} · {html.escape(t(lang, f'models.fleet.{v.health}'))}"
            f"{html.escape(detail)}</span>")


def _with_breaks(rows: list[dict[str, Any]], y: str) -> list[dict[str, Any]]:
    """Each line cut where it has no value: a NaN row (drawn as a break) between points more than GAP_S apart, and
    one in place of each run of NaN values already there; none at either end, and a line with no value at all is
    left out. Sorted by series, then time."""
    out: list[dict[str, Any]] = []
    last: dict[str, dict[str, Any]] = {}  # the last row kept per series
    for row in sorted(rows, key=lambda r: (r["series"], r["time"])):
        name, prev = row["series"], last.get(row["series"])
        if math.isnan(row[y]):
            if prev is not None and not math.isnan(prev[y]):
                last[name] = row
                out.append(row)
            continue
        if prev is not None and not math.isnan(prev[y]) and row["time"] - prev["time"] > GAP_S:
            out.append({"time": (prev["time"] + row["time"]) / 2, y: math.nan, "series": name})
        last[name] = row
        out.append(row)
    ends = {name for name, row in last.items() if math.isnan(row[y])}  # trailing breaks
    return [r for r in out if not (r["series"] in ends and r is last[r["series"]])]


def _frame(rows: list[dict[str, Any]], y: str) -> pd.DataFrame:
    # Typed even when empty: the plot fixes its axis types on the first value it gets (object dtype = categories).
    df = pd.DataFrame(_with_breaks(rows, y), columns=["time", y, "series"])
    df["time"] = pd.to_datetime(df["time"].astype("float64"), unit="s")
    return df.astype({y: "float64", "series": "str"})


def metric_frames(lang: str, history: MetricsHistory, names: Iterable[str] | None = None, *,
                  now: float | None = None, window_s: float = PLOT_WINDOW_S) -> dict[str, pd.DataFrame]:
    """The four plots' data (x = time, one line per series) over the last `window_s` seconds:
    "requests" (running and waiting per server), "kv_cache" (% used), "tokens_per_s" and "ttft_ms" (per interval)."""
    names = list(history.servers() if names is None else names)
    several = len(names) > 1
    requests, kv, tps, ttft = [], [], [], []
    start = (max((s.t for n in names for s in history.snapshots(n)), default=0.0) if now is None else now) - window_s
    for name in names:
        for snap in history.snapshots(name):
            if snap.t < start or not snap.ok:
                continue
            for key, value in (("running", snap.running), ("waiting", snap.waiting)):
                if value is not None:
                    label = t(lang, f"models.series.{key}")
                    requests.append({"time": snap.t, "requests": value, "series": f"{name} · {label}" if several else label})
            if snap.kv_cache_usage is not None:
                kv.append({"time": snap.t, "kv_cache_pct": 100.0 * snap.kv_cache_usage, "series": name})
        for r in history.rates(name):
            if r.t < start:
                continue
            if r.generation_tps is not None:
                tps.append({"time": r.t, "tokens_per_s": r.generation_tps, "series": name})
            if r.mean_ttft_ms is not None:  # no request in the interval: no TTFT (the plot shows dots, not a line)
                ttft.append({"time": r.t, "ttft_ms": r.mean_ttft_ms, "series": name})
    return {"requests": _frame(requests, "requests"), "kv_cache": _frame(kv, "kv_cache_pct"),
            "tokens_per_s": _frame(tps, "tokens_per_s"), "ttft_ms": _frame(ttft, "ttft_ms")}


def x_span(frames: Mapping[str, pd.DataFrame]) -> list[float] | None:
    """[first, last] time shown by any plot, in epoch seconds (what a plot's x_lim takes for times): the TTFT dots,
    which exist only for busy intervals, share the time axis of the lines instead of spanning only themselves."""
    times = [f["time"] for f in frames.values() if len(f)]
    if not times:
        return None
    return [min(t.min() for t in times).timestamp(), max(t.max() for t in times).timestamp()]


# Minimum y ranges: an idle server's flat zero line sits on a readable axis (0, 1, 2…) instead of one "0.000000" tick.
Y_FLOOR = {"requests": 2.0, "tokens_per_s": 10.0, "ttft_ms": 50.0}  # plot key = its y column


def y_limits(frames: Mapping[str, pd.DataFrame]) -> dict[str, list[float]]:
    """[0, top] per plot: the floor, or a quarter above the highest value shown."""
    out = {}
    for key, floor in Y_FLOOR.items():
        frame = frames.get(key)
        peak = float(frame[key].max()) if frame is not None and len(frame) else 0.0
        top = max(floor, peak * 1.25)
        out[key] = [0.0, float(math.ceil(top)) if key == "requests" else round(top, 1)]
    return out


def servers_api(states: Mapping[str, ServerState], history: MetricsHistory) -> list[dict[str, Any]]:
    """The servers as plain data (for `gradio_client`): state plus the last metrics poll."""
    out = []
    for st in states.values():
        snap = history.latest(st.name)
        rates = history.rates(st.name)
        out.append({
            "name": st.name, "port": st.port, "gpu": st.gpu, "status": st.status, "pid": st.pid, "restarts": len(st.restarts),
            "error": st.error, "max_model_len": st.max_model_len, "gpu_memory_utilization": st.gpu_memory_utilization,
            "metrics": None if snap is None else {
                "ok": snap.ok, "error": snap.error, "time": snap.t, "running": snap.running, "waiting": snap.waiting,
                "kv_cache_usage": snap.kv_cache_usage, "generation_tokens": snap.generation_tokens, "prompt_tokens": snap.prompt_tokens,
                "generation_tokens_per_s": rates[-1].generation_tps if rates else None,
                "mean_ttft_ms": rates[-1].mean_ttft_ms if rates else None,
            },
        })
    return out
