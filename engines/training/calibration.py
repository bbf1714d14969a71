"""The fine-tune time estimate corrected by the runs this machine already did.

The FLOP model in estimate.py knows neither this CPU's real speed nor how long loading and saving take (it said
21-81 s for runs that took 4-5 minutes). Each local run records the FLOP model's time per step when it starts
(`metrics.estimate.step_s`); once it completes, its measured time per step and its time outside the training loop
say how far off the model is here. The median over the recent ones corrects the next estimate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any

from engines.training.estimate import Estimate
from storage import runs

RECENT = 10  # the newest completed local runs that count (the machine and the software change over time)
MAX_OVERHEAD_S = 3600.0  # a longer gap between start and finish is a pause (a resume later), not loading time


@dataclass(frozen=True)
class Calibration:
    factor: float  # measured seconds per step / the FLOP model's seconds per step (median)
    overhead_s: float  # measured time outside the training loop (median; 0: no run trained in one go)
    runs: int  # how many runs these medians come from


def _sample(run: Any, gpu: bool) -> tuple[float, float | None] | None:
    """(factor, overhead or None) from one completed run, or None when it cannot say anything here."""
    if (run.compute or "local") != "local":  # another machine's speed says nothing about this one
        return None
    m = runs.run_metrics(run)
    est, step_rate, seconds = m.get("estimate") or {}, m.get("steps_per_s"), m.get("train_seconds")
    step_s = est.get("step_s") if isinstance(est, dict) else None
    if not (isinstance(step_s, int | float) and step_s > 0 and isinstance(step_rate, int | float) and step_rate > 0):
        return None
    if ("peak_gpu_allocated_gib" in m) != gpu:  # a CPU run does not calibrate a GPU estimate, nor the reverse
        return None
    factor = (1.0 / step_rate) / step_s
    overhead = None
    steps_here = step_rate * seconds if isinstance(seconds, int | float) else None
    # Only a run trained in one go says how long the rest takes (a resumed one's wall time spans both processes).
    if steps_here is not None and abs(steps_here - (m.get("step") or run.step or 0)) <= 1 and run.started_at and run.finished_at:
        wall = (run.finished_at - run.started_at).total_seconds()
        if 0 <= wall - seconds <= MAX_OVERHEAD_S:
            overhead = wall - seconds
    return factor, overhead


def calibration(gpu: bool) -> Calibration | None:
    """The correction the newest completed local runs on this kind of device give, or None when none can."""
    samples = []
    for run in runs.list_runs(200, statuses=("completed",)):
        if (s := _sample(run, gpu)) is not None:
            samples.append(s)
            if len(samples) == RECENT:
                break
    if not samples:
        return None
    overheads = [o for _, o in samples if o is not None]
    return Calibration(factor=statistics.median(f for f, _ in samples),
                       overhead_s=statistics.median(overheads) if overheads else 0.0, runs=len(samples))


def calibrated(est: Estimate, cal: Calibration | None) -> Estimate:
    """`est` with its time from the measured speed and overhead (unchanged without a calibration)."""
    if cal is None:
        return est
    overhead = cal.overhead_s if cal.overhead_s > 0 else est.overhead_s
    return replace(est, seconds=est.steps * est.step_seconds * cal.factor + overhead, overhead_s=overhead,
                   calibrated_runs=cal.runs)
