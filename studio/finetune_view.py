"""What the Fine-tune tab renders from engine data: the runs table, a run's progress bar, curves and estimate."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from engines.training.estimate import Estimate, duration_parts
from engines.training.hardware import Hardware
from engines.training.jobs import History
from engines.training.planning import NoEstimate
from storage import runs
from storage.models import TrainingRun, utcnow
from studio.i18n import t

# Plain symbols every font has (no emoji: many Linux browsers have no colour-emoji font).
STALE_S = 60  # the worker writes a heartbeat every 5 s
STATUS_ICON = {"queued": "○", "running": "▶", "completed": "✓", "failed": "✗", "cancelled": "■", "interrupted": "!"}


def duration_text(lang: str, seconds: float) -> str:
    amount, unit = duration_parts(seconds)
    return t(lang, f"ft.duration.{unit}", n=amount)


def hardware_text(lang: str, hw: Hardware) -> str:
    """The machine in one line: its GPUs, or its CPU cores and free memory."""
    if hw.gpus:
        g = hw.gpus[0]
        return t(lang, "ft.hardware.gpu", n=len(hw.gpus), name=g.name, memory=f"{g.memory_gb:.0f}")
    return t(lang, "ft.hardware.cpu", cpus=hw.cpus, free=f"{hw.ram_available_gb:.0f}", total=f"{hw.ram_total_gb:.0f}")


def runs_frame(lang: str, rows: list[TrainingRun]) -> pd.DataFrame:
    cols = [t(lang, f"ft.col.{c}") for c in ("id", "name", "base", "status", "progress", "loss", "created", "owner")]
    data = []
    for r in rows:
        m = runs.run_metrics(r)
        loss = m.get("train_loss", m.get("loss"))
        progress = f"{r.step}/{r.total_steps}" if r.total_steps else (str(r.step) if r.step else "")
        data.append([
            r.id, r.name, r.base_model, f"{STATUS_ICON.get(r.status, '')} {t(lang, f'ft.status.{r.status}')}", progress,
            f"{loss:.4f}" if isinstance(loss, int | float) else "", r.created_at.strftime("%m-%d %H:%M"),
            getattr(r, "owner_name", None) or "",  # runs are the team's: say whose each one is
        ])
    return pd.DataFrame(data, columns=cols)


def progress_html(lang: str, run: TrainingRun | None, h: History | None) -> str:
    if run is None:
        return f"<div class='ft-progress empty' data-testid='ft-progress'>{html.escape(t(lang, 'ft.no_run'))}</div>"
    p = h.progress if h else {}
    step = int(p.get("step", run.step) or 0)
    total = int(p.get("total_steps") or run.total_steps or 0)
    if run.status == "completed" and total:
        step = total if step < total and run.step >= total else max(step, run.step)
    pct = 100.0 * step / total if total else 0.0
    bits = [f"{t(lang, 'ft.step')} {step}/{total or '?'}", f"{pct:.0f}%"]
    if run.status == "running":
        if p.get("eta_s") is not None:
            bits.append(t(lang, "ft.eta", time=duration_text(lang, p["eta_s"])))
        if p.get("tokens_per_s"):
            bits.append(f"{p['tokens_per_s']:.0f} tok/s")
        if p.get("steps_per_s"):
            bits.append(f"{p['steps_per_s']:.2f} {t(lang, 'ft.steps_per_s')}")
    if run.compute == "ray" and run.remote_job_id:  # where it runs: a job on the Ray cluster (its id in Ray's dashboard)
        bits.append(f"Ray {run.remote_job_id}")
    state = html.escape(t(lang, f"ft.status.{run.status}"))
    err = f"<div class='ft-error'>{html.escape(run.error or '')}</div>" if run.error else ""
    if run.status == "running" and run.heartbeat_at:
        silent = (utcnow() - run.heartbeat_at).total_seconds()
        if silent > STALE_S:
            err += f"<div class='ft-error'>{html.escape(t(lang, 'ft.stale', seconds=int(silent)))}</div>"
    m = runs.run_metrics(run)
    served = m.get("served")
    if served is True:
        err += f"<div class='ft-served'>✓ {html.escape(t(lang, 'ft.served', name=run.name, base=run.base_model))}</div>"
    elif served is False:
        err += f"<div class='ft-error'>{html.escape(t(lang, 'ft.serve_failed'))}: {html.escape(str(m.get('serve_error', ''))[:300])}</div>"
    return (
        f"<div class='ft-progress {run.status}' data-testid='ft-progress' data-step='{step}' data-total='{total}' "
        f"data-status='{run.status}' data-served='{str(served is True).lower()}'><div class='ft-progress-head'><b>{html.escape(run.name)}</b>"
        f"<span class='ft-badge {run.status}'>{STATUS_ICON.get(run.status, '')} {state}</span></div>"
        f"<div class='ft-bar'><div class='ft-bar-fill' style='width:{pct:.1f}%'></div></div>"
        f"<div class='ft-progress-meta'>{html.escape(' · '.join(bits))}</div>{err}</div>"
    )


# TRL's preference metrics (DPO; ORPO logs them too), drawn beside the loss when a run logs them.
PREFERENCE_SERIES = (("rewards/margins", "pref.series.margin"), ("rewards/chosen", "pref.series.chosen"),
                     ("rewards/rejected", "pref.series.rejected"),
                     ("eval_rewards/margins", "pref.series.eval_margin"))  # on the held-out pairs: is it learning or memorising


def curves(h: History | None, lang: str = "en") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(loss curve with train/eval series — and a DPO/ORPO run's reward margin and chosen/rejected rewards —,
    learning-rate curve) from the metric events."""
    loss_rows, lr_rows = [], []
    for m in h.metrics if h else []:
        if "loss" in m:
            loss_rows.append({"step": m["step"], "loss": m["loss"], "series": t(lang, "ft.series.train")})
        if "eval_loss" in m:
            loss_rows.append({"step": m["step"], "loss": m["eval_loss"], "series": t(lang, "ft.series.eval")})
        for key, label in PREFERENCE_SERIES:
            if key in m:
                loss_rows.append({"step": m["step"], "loss": m[key], "series": t(lang, label)})
        if "learning_rate" in m:
            lr_rows.append({"step": m["step"], "learning_rate": m["learning_rate"]})
    # Typed even when empty: the plot fixes its axis types on the first value it gets (object dtype = categories).
    loss = pd.DataFrame(loss_rows, columns=["step", "loss", "series"]).astype({"step": "int64", "loss": "float64", "series": "str"})
    lr = pd.DataFrame(lr_rows, columns=["step", "learning_rate"]).astype({"step": "int64", "learning_rate": "float64"})
    return loss, lr


def estimate_markdown(lang: str, est: Estimate | NoEstimate | None, hw: Hardware | None) -> str:
    if est is None:
        return ""
    if isinstance(est, NoEstimate):
        return f"**{t(lang, 'ft.estimate')}** · {html.escape(t(lang, f'ft.no_estimate.{est.reason}', detail=est.detail))}"
    parts = ", ".join(f"{t(lang, f'ft.mem.{k}')} {v:.2f}" for k, v in est.memory_parts.items())
    where = f" ({html.escape(hardware_text(lang, hw))})" if hw is not None else ""
    head = (
        f"**{t(lang, 'ft.estimate')}**{where} · {est.params / 1e6:,.0f}M {t(lang, 'ft.params')}, "
        f"{est.trainable / 1e6:,.2f}M {t(lang, 'ft.trainable')} · ~{est.memory_gb:.1f} / {est.budget_gb:.0f} GiB · "
        f"{est.steps} {t(lang, 'ft.steps')}, ~{duration_text(lang, est.seconds)}"
        + (f" <span class='ft-calibrated'>({t(lang, 'ft.calibrated', n=est.calibrated_runs)})</span>"
           if est.calibrated_runs else "")
    )
    fit = (
        f"\n\n<span class='ft-fit ok'>✓ {t(lang, 'ft.fits')}</span>" if est.fits
        else f"\n\n<span class='ft-fit no'>✗ {t(lang, 'ft.no_fit', need=f'{est.memory_gb:.1f}', have=f'{est.budget_gb:.0f}', device=est.device)}</span>"
    )
    return f"{head}{fit}\n\n<small>{t(lang, 'ft.mem_parts')}: {parts}</small>"


def errors_markdown(lang: str, fields: dict[str, str]) -> str:
    if not fields:
        return ""
    lines = [f"- **{t(lang, f'ft.field.{k}') if k != 'spec' else t(lang, 'ft.spec')}**: {html.escape(v)}" for k, v in fields.items()]
    return f"<div class='ft-errors' data-testid='ft-errors'>\n\n{t(lang, 'ft.fix_fields')}\n\n" + "\n".join(lines) + "\n\n</div>"


def run_header(lang: str, run: TrainingRun | None) -> dict[str, Any]:
    """Which run buttons apply to this run's status."""
    status = run.status if run else ""
    return {
        "cancel": status in ("queued", "running"),
        "resume": status in runs.RESUMABLE,
        "chat": status == "completed",
        "mlflow": bool(run and run.mlflow_run_id),
    }
