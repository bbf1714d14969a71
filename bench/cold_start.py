"""Cold start of the studio UI: process spawn -> first HTTP 200 on `/`.

Measures `python launch.py --no-serve --port P` (fresh temporary DATA_DIR each run) N times, interleaved
with a bare Gradio app of the same shape (bench/baseline_app.py: gr.Blocks, 6 tabs, a Chatbot) started
the same way, and prints median/min/max of both and the ratio studio/baseline. One untimed warm-up run
of each comes first so both read Python files from a warm page cache.

Then it starts launch.py once more under `python -X importtime` and checks that the UI process never
imported torch, transformers, vllm or unsloth (and lists the packages that took longest to import).

Run: .venv/bin/python bench/cold_start.py [--runs 5]
Results are also appended to bench/results/cold_start.md. No assertion on timings.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import MODEL_CACHE, PYTHON, BenchError, free_port, machine, median, report, run_main, spawn, stop, wait_http_ok

HEAVY = ("torch", "transformers", "vllm", "unsloth")
TARGET_S = 3.0
START_TIMEOUT_S = 120.0


def app_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_BASE_URL"}
    env.update(DATA_DIR=str(data_dir), MODEL_CACHE_DIR=str(MODEL_CACHE), PORT=str(port))
    return env


def time_start(script: str, tmp: Path, *, python_flags: tuple[str, ...] = (), settle_s: float = 0.0) -> tuple[float, Path]:
    """Seconds from spawning `python [flags] script --no-serve --port P` to the first 200 on `/`; returns (seconds, log)."""
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=tmp))
    port = free_port()
    log = data_dir / "process.log"
    cmd = [PYTHON, *python_flags, script, "--no-serve", "--port", str(port)]
    t0 = time.perf_counter()
    proc = spawn(cmd, env=app_env(data_dir, port), log=log)
    try:
        ready = wait_http_ok(f"http://127.0.0.1:{port}/", proc, START_TIMEOUT_S, log=log)
        time.sleep(settle_s)  # let anything imported right after start-up show up too
    finally:
        stop(proc)
    return ready - t0, log


def scan_imports(log: Path) -> tuple[dict[str, bool], list[tuple[str, float]]]:
    """From `-X importtime` output: which HEAVY packages appear, and the slowest packages to import."""
    per_package: dict[str, float] = {}  # top-level package -> its slowest import (cumulative: nested ones included)
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        package = name.strip().split(".")[0]
        per_package[package] = max(per_package.get(package, 0.0), int(cumulative) / 1e6)
    if not per_package:
        raise BenchError(f"no `import time:` lines in {log}: was -X importtime honoured?")
    slowest = sorted(per_package.items(), key=lambda x: -x[1])[:6]
    return {name: name in per_package for name in HEAVY}, slowest


def summary(label: str, xs: list[float]) -> str:
    return f"{label}: median {median(xs):.2f} s, min {min(xs):.2f} s, max {max(xs):.2f} s  (n={len(xs)}: {', '.join(f'{x:.2f}' for x in xs)})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    machine_line = machine()
    print(f"machine: {machine_line}")
    studio, baseline = [], []
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp_name:
        tmp = Path(tmp_name)
        print("warm-up run of each (not counted)...")
        time_start("launch.py", tmp)
        time_start("bench/baseline_app.py", tmp)
        for i in range(args.runs):
            studio.append(time_start("launch.py", tmp)[0])
            baseline.append(time_start("bench/baseline_app.py", tmp)[0])
            print(f"run {i + 1}/{args.runs}: studio {studio[-1]:.2f} s, baseline {baseline[-1]:.2f} s")
        print("launch.py under -X importtime...")
        _, log = time_start("launch.py", tmp, python_flags=("-X", "importtime"), settle_s=1.0)
        heavy, slowest = scan_imports(log)

    ratio = median(studio) / median(baseline)
    met = "met" if median(studio) < TARGET_S else "NOT met"
    lines = [
        summary("studio   (launch.py --no-serve)", studio),
        summary("baseline (bare gr.Blocks, 6 tabs + Chatbot)", baseline),
        f"ratio studio/baseline (medians): {ratio:.2f}",
        f"target: studio median < {TARGET_S:.0f} s -> {met} ({median(studio):.2f} s)",
        *[f"{name} imported: {'YES' if hit else 'no'}" for name, hit in heavy.items()],
        "slowest packages imported by launch.py (cumulative, nested included): " + ", ".join(f"{n} {s:.2f} s" for n, s in slowest),
    ]
    report("cold_start", lines, machine_line)
    return 0


if __name__ == "__main__":
    run_main(main)
