"""DPO in the studio vs a bare TRL script: the same preference pairs, model and settings on both sides.

Both sides train the bundled model with DPO (β 0.1, sigmoid loss) and a LoRA adapter (r=16 on the 7 projections) on
the same preference pairs for --steps steps (default 10), fp32 on CPU. The pairs come from the bundled helper
dataset (assets/datasets/studio-helper-en.jsonl): its answer is chosen, a short evasive answer is rejected. The
studio side is a real job: a preference dataset saved as a version in a fresh SQLite DB, queued through the
JobManager, spawned as `python -m engines.training.worker` with its events file, heartbeat, trainer callback and
MLflow logging. The bare side (bench/bare_dpo.py) is one TRL script with none of that and no studio code. Runs
alternate (bare, studio, bare, studio, ...), --rounds each.

Figures: steps/s inside trainer.train() (median per side) and their ratio studio/bare (target >= 0.97); peak RSS of
the training process (VmHWM, sampled every 0.2 s) and its ratio; wall time spawn -> exit. Appends a dated section to
bench/results/dpo.md. No assertion on timings.

    .venv/bin/python bench/dpo_speed.py [--steps 10] [--rounds 2]
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
from train_overhead import watch_peak

SOURCE = ROOT / "assets" / "datasets" / "studio-helper-en.jsonl"
SETTINGS = {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "learning_rate": 5e-5, "batch_size": 4, "beta": 0.1,
            "max_seq_len": 512, "seed": 7, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                                "up_proj", "down_proj"]}


def preference_rows() -> list[dict]:
    """Conversational preference rows: every helper question, its answer chosen, an evasive one rejected."""
    rows = []
    for line in SOURCE.read_text(encoding="utf-8").splitlines():
        msgs = json.loads(line)["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        rows.append({"prompt": msgs[:last], "chosen": [msgs[last]],
                     "rejected": [{"role": "assistant", "content": "I am not sure; please look it up somewhere else."}]})
    return rows


def job_spec(steps: int, name: str, dataset: str) -> dict:
    s = SETTINGS
    return {"base_model": MODEL, "dataset": dataset, "output_name": name, "objective": "dpo", "method": "lora",
            "lora_r": s["lora_r"], "lora_alpha": s["lora_alpha"], "lora_dropout": s["lora_dropout"],
            "target_modules": s["target_modules"], "learning_rate": s["learning_rate"], "lr_scheduler": "constant",
            "warmup_ratio": 0.0, "max_steps": steps, "batch_size": s["batch_size"], "grad_accum": 1,
            "max_seq_len": s["max_seq_len"], "save_steps": 100_000, "seed": s["seed"], "beta": s["beta"]}


def run_bare(tmp: Path, dataset: Path, steps: int, i: int) -> dict:
    out = tmp / f"bare-{i}"
    out.mkdir()
    (out / "settings.json").write_text(json.dumps(SETTINGS | {"max_steps": steps}))
    log = out / "bare.log"
    t0 = time.perf_counter()
    proc = spawn([PYTHON, str(ROOT / "bench" / "bare_dpo.py"), str(MODEL_CACHE / MODEL), str(dataset), str(out)],
                 env={**os.environ, "PYTHONPATH": str(ROOT)}, log=log)
    try:
        peak = watch_peak(proc.pid, lambda: proc.poll() is None)
    finally:
        stop(proc)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not (out / "result.json").is_file():
        raise BenchError(f"bare run failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-1500:]}")
    res = json.loads((out / "result.json").read_text())
    return {"steps_per_s": res["steps_per_s"], "peak_gib": peak, "wall_s": wall, "loss": res["train_loss"],
            "margin": res["last_margin"]}


def run_studio(jobs, dataset: str, steps: int, i: int) -> dict:  # noqa: ANN001
    from engines import accounts
    from engines.serving.manager import pid_alive
    from storage import runs

    t0 = time.perf_counter()
    rid = jobs.submit(job_spec(steps, f"studio-{i}", dataset), actor=accounts.bootstrap(None))
    jobs.tick()  # launch now: the run is prepared (dataset staged, spec written) in a thread, then spawned
    run = runs.get_run(rid)
    start_by = time.monotonic() + 120
    while (run.status == "queued" or not run.pid) and run.status not in ("failed", "cancelled") and time.monotonic() < start_by:
        time.sleep(0.05)
        jobs.tick()
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
    return {"steps_per_s": m["steps_per_s"], "peak_gib": peak, "wall_s": wall, "loss": m["train_loss"],
            "margin": m.get("rewards/margins")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if not (MODEL_CACHE / MODEL / "config.json").is_file():
        raise BenchError(f"{MODEL_CACHE / MODEL} is missing: start the app once (it converts the bundled model)")
    machine_before = machine()
    tmp = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    try:
        from engines import accounts
        from engines.datasets.formats import to_preference
        from engines.datasets.preference_files import create_preference_dataset
        from engines.settings import load_settings
        from engines.training import JobManager
        from storage import connect

        settings = load_settings(data_dir=tmp / "data", model_cache_dir=MODEL_CACHE)
        connect(settings.db_url)
        rows = preference_rows()
        version = create_preference_dataset(settings, "bench-prefs", [to_preference(r, n) for n, r in enumerate(rows, 1)],
                                            actor=accounts.bootstrap(None))
        jobs = JobManager(settings, None)  # driven by tick() here: no background thread
        bare, studio = [], []
        for i in range(args.rounds):
            bare.append(run_bare(tmp, Path(version.path), args.steps, i))
            print(f"round {i + 1}: bare   {bare[-1]}", flush=True)
            studio.append(run_studio(jobs, version.path, args.steps, i))
            print(f"round {i + 1}: studio {studio[-1]}", flush=True)
        b_sps, s_sps = median([r["steps_per_s"] for r in bare]), median([r["steps_per_s"] for r in studio])
        b_rss, s_rss = median([r["peak_gib"] for r in bare]), median([r["peak_gib"] for r in studio])
        b_wall, s_wall = median([r["wall_s"] for r in bare]), median([r["wall_s"] for r in studio])
        ratio = s_sps / b_sps
        lines = [
            f"job: bundled {MODEL}, DPO β {SETTINGS['beta']} (sigmoid), LoRA r=16 on 7 projections, batch 4, max_length 512, "
            f"{args.steps} steps, {len(rows)} pairs from {SOURCE.relative_to(ROOT)}, fp32 on CPU, TRL 1.16; "
            f"{args.rounds} rounds, alternating bare/studio",
            f"steps/s (median): bare TRL {b_sps:.3f}, studio {s_sps:.3f} -> ratio studio/bare {ratio:.3f} "
            f"(target >= 0.97: {'met' if ratio >= 0.97 else 'NOT met'})",
            f"peak RSS of the training process (median): bare {b_rss:.2f} GiB, studio {s_rss:.2f} GiB -> ratio {s_rss / b_rss:.3f}",
            f"wall time spawn -> exit (median): bare {b_wall:.1f} s, studio {s_wall:.1f} s (studio adds MLflow + events + adapter artifact upload)",
            f"final train loss: bare {[round(r['loss'], 4) for r in bare]}, studio {[round(r['loss'], 4) for r in studio]}; "
            f"last reward margin: bare {[round(r['margin'] or 0, 3) for r in bare]}, studio {[round(r['margin'] or 0, 3) for r in studio]}",
            f"load avg at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        ]
        print("\n".join(lines))
        path = append_results("dpo", lines, machine_before)
        print(f"appended to {path.relative_to(ROOT)}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    run_main(main)
