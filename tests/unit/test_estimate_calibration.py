"""The fine-tune time estimate corrected by the runs this machine already did (engines/training/calibration.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from engines.training.calibration import calibrated, calibration
from engines.training.estimate import Estimate
from storage import runs
from storage.models import utcnow
from studio.finetune_view import estimate_markdown

RAW = Estimate(params=135_000_000, trainable=2_440_000, memory_gb=1.7, memory_parts={"weights": 0.5}, budget_gb=17,
               fits=True, steps=20, seconds=20 * 1.5 + 15, tokens_per_step=2048, device="CPU RAM", step_seconds=1.5)


def done_run(name: str, *, step_s: float | None, steps_per_s: float, steps: int, train_s: float, wall_s: float,
             compute: str | None = "local", gpu: bool = False, status: str = "completed") -> None:
    """A finished run as the job manager leaves it: the estimate noted at its start, the worker's summary."""
    r = runs.create_run(name=name, base_model="b", dataset="d.jsonl", method="lora", spec={}, run_dir=f"/tmp/{name}")
    metrics = {"step": steps, "total_steps": steps, "train_seconds": train_s, "steps_per_s": steps_per_s}
    if step_s is not None:
        metrics["estimate"] = {"step_s": step_s, "steps": steps, "seconds": steps * step_s + 15}
    if gpu:
        metrics["peak_gpu_allocated_gib"] = 3.0
    start = utcnow() - timedelta(seconds=wall_s + 5)
    runs.update_run(r.id, status=status, compute=compute, step=steps, metrics=metrics, started_at=start,
                    finished_at=start + timedelta(seconds=wall_s))


def test_no_earlier_run_leaves_the_flop_model_alone(db):
    done_run("no-note", step_s=None, steps_per_s=0.5, steps=10, train_s=20, wall_s=60)  # from before notes were kept
    assert calibration(gpu=False) is None
    assert calibrated(RAW, None) == RAW
    assert "earlier run" not in estimate_markdown("en", RAW, None)


def test_measured_speed_and_overhead_correct_the_next_estimate(db):
    # Two runs here took 4x and 6x the FLOP model's time per step, and 60 s / 100 s outside the training loop.
    done_run("a", step_s=1.0, steps_per_s=0.25, steps=10, train_s=40, wall_s=100)
    done_run("b", step_s=0.5, steps_per_s=1 / 3, steps=12, train_s=36, wall_s=136)
    # None of these may count: another machine (Ray), a GPU run for a CPU estimate, a failed run.
    done_run("ray", step_s=1.0, steps_per_s=10.0, steps=10, train_s=1, wall_s=2, compute="ray")
    done_run("gpu", step_s=1.0, steps_per_s=10.0, steps=10, train_s=1, wall_s=2, gpu=True)
    done_run("failed", step_s=1.0, steps_per_s=10.0, steps=10, train_s=1, wall_s=2, status="failed")
    # A resumed run: its speed counts, but its wall time spans two processes, so not its overhead.
    done_run("resumed", step_s=1.0, steps_per_s=0.2, steps=10, train_s=25, wall_s=5000)
    cal = calibration(gpu=False)
    assert cal is not None and cal.runs == 3
    assert cal.factor == 5.0  # median of 4, 6 and 5
    assert cal.overhead_s == 80.0  # median of 60 and 100
    est = calibrated(RAW, cal)
    assert est.seconds == 20 * 1.5 * 5.0 + 80.0 and est.calibrated_runs == 3 and est.step_seconds == RAW.step_seconds
    assert calibration(gpu=True).runs == 1  # the GPU run calibrates GPU estimates only
    en, ko = estimate_markdown("en", est, None), estimate_markdown("ko", est, None)
    assert "~4 min" in en and "time from 3 earlier runs on this machine" in en
    assert "이전 실행 3개로 보정" in ko
    one = replace(est, calibrated_runs=1)
    assert "from 1 earlier run on" in estimate_markdown("en", one, None)
