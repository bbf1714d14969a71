"""Studio overhead on a CPU LoRA job: the same job through the JobManager + worker vs a bare Trainer script.

Both sides train the bundled model on the same rows (assets/datasets/studio-helper-en.jsonl), with the
same TrainingArguments, LoRA config, token ids and labels, for --steps steps (default 20). The studio
side is a real job: queued in a fresh SQLite DB, spawned as `python -m engines.training.worker`, with
its events file, heartbeat, trainer callback and MLflow logging. The bare side (bench/bare_lora.py) is
one process with none of that. Runs alternate (bare, studio, bare, studio, ...), --rounds each.

Figures: steps/s inside trainer.train() (median per side) and their ratio studio/bare (target >= 0.97);
peak RSS of the training process (VmHWM, sampled every 0.2 s) and its ratio; wall time spawn -> exit.
Appends a dated section to bench/results/train_overhead.md. No assertion on timings.

    .venv/bin/python bench/train_overhead.py [--steps 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import MODEL, MODEL_CACHE, PYTHON, ROOT, BenchError, append_results, machine, median, run_main, spawn, stop

DATASET = "assets/datasets/studio-helper-en.jsonl"


def job_spec(steps: int, name: str) -> dict:
    return {
        "base_model": MODEL, "dataset": DATASET, "output_name": name, "method": "lora", "lora_r": 16, "lora_alpha": 32,
        "lora_dropout": 0.0, "learning_rate": 2e-4, "lr_scheduler": "constant", "warmup_ratio": 0.0, "max_steps": steps,
        "batch_size": 4, "grad_accum": 1, "max_seq_len": 512, "save_steps": 100_000, "seed": 7,
    }


def peak_rss_gib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def watch_peak(pid: int, alive) -> float:  # noqa: ANN001
    peak = 0.0
    while alive():
        value = peak_rss_gib(pid)
        if value:
            peak = max(peak, value)
        time.sleep(0.2)
    return peak


def run_bare(tmp: Path, steps: int, i: int) -> dict:
    out = tmp / f"bare-{i}"
    out.mkdir()
    (out / "spec.json").write_text(json.dumps(job_spec(steps, f"bare-{i}")))
    model = MODEL_CACHE / MODEL
    log = out / "bare.log"
    t0 = time.perf_counter()
    proc = spawn([PYTHON, str(ROOT / "bench" / "bare_lora.py"), str(model), str(ROOT / DATASET), str(out)],
                 env={**os.environ, "PYTHONPATH": str(ROOT)}, log=log)
    try:
        peak = watch_peak(proc.pid, lambda: proc.poll() is None)
    finally:
        stop(proc)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not (out / "result.json").is_file():
        raise BenchError(f"bare run failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-1500:]}")
    res = json.loads((out / "result.json").read_text())
    return {"steps_per_s": res["steps_per_s"], "peak_gib": peak, "wall_s": wall, "loss": res["train_loss"]}


def run_studio(jobs, steps: int, i: int) -> dict:  # noqa: ANN001
    from engines import accounts
    from engines.serving.manager import pid_alive
    from storage import runs

    t0 = time.perf_counter()
    rid = jobs.submit(job_spec(steps, f"studio-{i}"), actor=accounts.bootstrap(None))
    jobs.tick()  # launch now
    run = runs.get_run(rid)
    if run.status != "running" or not run.pid:
        raise BenchError(f"studio job did not start: {run.status} {run.error}")
    peak = watch_peak(run.pid, lambda: pid_alive(run.pid))
    deadline = time.monotonic() + 60
    while runs.get_run(rid).status == "running" and time.monotonic() < deadline:
        jobs.tick()
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    run = runs.get_run(rid)
    if run.status != "completed":
        raise BenchError(f"studio job ended {run.status}: {run.error}\n{jobs.log_tail(rid)}")
    m = runs.run_metrics(run)
    return {"steps_per_s": m["steps_per_s"], "peak_gib": peak, "wall_s": wall, "loss": m["train_loss"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if not (MODEL_CACHE / MODEL / "config.json").is_file():
        raise BenchError(f"{MODEL_CACHE / MODEL} is missing: start the app once (it converts the bundled model)")
    machine_before = machine()
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        from engines.settings import load_settings
        from engines.training import JobManager
        from storage import connect

        settings = load_settings(data_dir=tmp / "data", model_cache_dir=MODEL_CACHE)
        connect(settings.db_url)
        jobs = JobManager(settings, None)  # driven by tick() here: no background thread
        bare, studio = [], []
        for i in range(args.rounds):
            bare.append(run_bare(tmp, args.steps, i))
            print(f"round {i + 1}: bare   {bare[-1]}", flush=True)
            studio.append(run_studio(jobs, args.steps, i))
            print(f"round {i + 1}: studio {studio[-1]}", flush=True)
        b_sps, s_sps = median([r["steps_per_s"] for r in bare]), median([r["steps_per_s"] for r in studio])
        b_rss, s_rss = median([r["peak_gib"] for r in bare]), median([r["peak_gib"] for r in studio])
        b_wall, s_wall = median([r["wall_s"] for r in bare]), median([r["wall_s"] for r in studio])
        ratio = s_sps / b_sps
        lines = [
            f"job: bundled {MODEL}, LoRA r=16 on 7 projections, batch 4, max_seq_len 512, {args.steps} steps, "
            f"{DATASET}, fp32 on CPU; {args.rounds} rounds, alternating bare/studio",
            f"steps/s (median): bare {b_sps:.3f}, studio {s_sps:.3f} -> ratio studio/bare {ratio:.3f} "
            f"(target >= 0.97: {'met' if ratio >= 0.97 else 'NOT met'})",
            f"peak RSS of the training process (median): bare {b_rss:.2f} GiB, studio {s_rss:.2f} GiB -> ratio {s_rss / b_rss:.3f}",
            f"wall time spawn -> exit (median): bare {b_wall:.1f} s, studio {s_wall:.1f} s (studio adds MLflow + events + adapter artifact upload)",
            f"final train loss: bare {[round(r['loss'], 4) for r in bare]}, studio {[round(r['loss'], 4) for r in studio]}",
            f"load avg at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        ]
        print("\n".join(lines))
        path = append_results("train_overhead", lines, machine_before)
        print(f"appended to {path.relative_to(ROOT)}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    run_main(main)
