"""Where a model came from and where it went: adapter ← run ← dataset version ← source chats, plus the
evaluations and battles it took part in; training curves read back from MLflow (or the run's events)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from engines.accounts import Actor
from engines.events import read_events
from engines.paths import is_inside
from engines.settings import Settings
from storage import catalog, runs
from storage.models import Battle, Conversation, DatasetVersion, EvalRun, ModelEntry, TrainingRun

CURVE_KEYS = ("loss", "eval_loss")


@dataclass
class Lineage:
    model: str
    kind: str  # base | adapter | external | unknown
    parent: str | None = None
    run: TrainingRun | None = None
    dataset: str | None = None  # the file the run trained on
    version: DatasetVersion | None = None
    source_chats: list[Conversation] = field(default_factory=list)
    adapters: list[ModelEntry] = field(default_factory=list)  # for a base: what was trained on it
    evaluations: list[EvalRun] = field(default_factory=list)
    battles: int = 0
    battles_won: int = 0
    curves: pd.DataFrame | None = None
    curves_source: str = ""


def _empty_curves() -> pd.DataFrame:
    return pd.DataFrame(columns=["step", "loss", "series"]).astype({"step": "int64", "loss": "float64", "series": "str"})


def _mlflow_sqlite(settings: Settings) -> Path | None:
    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        return path if path.is_file() else None
    return None


def run_curves(settings: Settings, run: TrainingRun, label: str | None = None) -> tuple[pd.DataFrame, str]:
    """(step, loss, series) for a run: from MLflow's store when it is a local SQLite file, else the run's events."""
    label = label or run.name
    rows: list[dict[str, Any]] = []
    source = ""
    store = _mlflow_sqlite(settings)
    if run.mlflow_run_id and store:
        try:  # read-only, no mlflow import: its metrics table is (key, value, step, run_uuid, …)
            con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=2)
            try:
                got = con.execute("SELECT key, step, value FROM metrics WHERE run_uuid = ? AND key IN (?, ?) ORDER BY step",
                                  (run.mlflow_run_id, *CURVE_KEYS)).fetchall()
            finally:
                con.close()
            rows = [{"step": s, "loss": v, "series": f"{label} · {'eval' if k == 'eval_loss' else 'train'}"} for k, s, v in got]
            source = "mlflow" if rows else ""
        except sqlite3.Error:
            rows = []
    if not rows:
        events_file = Path(run.run_dir) / "events.jsonl"
        if is_inside(events_file, settings.data_roots) and events_file.is_file():  # a row never makes us read outside
            events, _ = read_events(events_file)
            for ev in events:
                if ev.get("type") != "metric":
                    continue
                for key in CURVE_KEYS:
                    if key in ev:
                        rows.append({"step": ev["step"], "loss": ev[key], "series": f"{label} · {'eval' if key == 'eval_loss' else 'train'}"})
            source = "events" if rows else ""
    frame = pd.DataFrame(rows, columns=["step", "loss", "series"]) if rows else _empty_curves()
    return frame.astype({"step": "int64", "loss": "float64", "series": "str"}), source


def lineage(settings: Settings, name: str, viewer: Actor | None = None) -> Lineage:
    """Where `name` came from and went; source chats are listed only when they are the viewer's own (chats are private)."""
    entry = catalog.get_model(name)
    run = runs.get_run(entry.run_id) if entry and entry.run_id else runs.run_by_name(name)
    kind = entry.kind if entry else ("adapter" if run else "unknown")
    lin = Lineage(model=name, kind=kind, parent=entry.parent if entry else (run.base_model if run else None), run=run)
    if run:
        lin.dataset = run.dataset
        lin.version = DatasetVersion.get_or_none(DatasetVersion.id == run.dataset_version_id) if run.dataset_version_id else None
        if lin.version is None:
            lin.version = DatasetVersion.get_or_none(DatasetVersion.path.endswith(Path(run.dataset).name))
        if lin.version and lin.version.source_conversations:
            ids = json.loads(lin.version.source_conversations)
            own = Conversation.select().where(Conversation.id.in_(ids))
            if viewer is not None:
                own = own.where(Conversation.owner_id == viewer.id)
            lin.source_chats = list(own.order_by(Conversation.id))
        lin.curves, lin.curves_source = run_curves(settings, run)
    if kind in ("base", "unknown") and not run:
        lin.adapters = list(ModelEntry.select().where((ModelEntry.kind == "adapter") & (ModelEntry.parent == name)))
        lin.kind = "base" if lin.adapters or kind == "base" else kind
    lin.evaluations = [e for e in EvalRun.select().where(EvalRun.models.contains(json.dumps(name))).order_by(EvalRun.id.desc())
                       if name in json.loads(e.models)]
    fought = Battle.select().where((Battle.model_a == name) | (Battle.model_b == name))
    lin.battles = fought.count()
    lin.battles_won = fought.where(((Battle.model_a == name) & (Battle.vote == "a")) | ((Battle.model_b == name) & (Battle.vote == "b"))).count()
    return lin


def compare_runs(settings: Settings, run_ids: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Overlaid loss curves (one series per run and split) and the spec fields whose values differ."""
    picked = [r for r in (runs.get_run(i) for i in run_ids) if r is not None]
    frames = [run_curves(settings, r)[0] for r in picked]
    curves = pd.concat(frames, ignore_index=True) if frames else _empty_curves()
    specs = {r.name: _flat(json.loads(r.spec or "{}")) for r in picked}
    keys = sorted({k for s in specs.values() for k in s})
    differ = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True, default=str) for s in specs.values()}) > 1]
    table = pd.DataFrame([[k, *(_show(specs[r.name].get(k)) for r in picked)] for k in differ],
                         columns=["parameter", *(r.name for r in picked)])
    return curves.astype({"step": "int64", "loss": "float64", "series": "str"}), table


def _flat(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def _show(v: Any) -> str:
    if v is None:
        return "–"
    return ", ".join(map(str, v)) if isinstance(v, list) else str(v)
