"""A fine-tune through the Ray job backend vs the local one: submit → first training step, and steps/s.

Starts a real Ray head (`ray start --head --block`, --num-cpus = this machine's cores, token auth, every address on
127.0.0.1) and a real `mlflow server` (artifact proxying) on loopback; both sides log to that server. The local side is
a JobManager without RAY_ADDRESS (a worker subprocess); the Ray side the same JobManager code with RAY_ADDRESS and
RAY_NUM_CPUS = the cores (Ray sets the worker's OMP_NUM_THREADS from it, so both sides train with the same threads).
Same job on both: the bundled model, LoRA r=16 on 7 projections, batch 4, max_seq_len 512, --steps steps (default 20),
assets/datasets/studio-helper-en.jsonl. Runs alternate local, ray, local, ray … (--rounds each); the first Ray job of
the run is cold (code package uploaded, runtime env created), later ones reuse the code package.

Figures per run: submit → first step done (the worker's own clock) and → the studio has seen it (events file locally,
the job-logs API on Ray); steps/s inside trainer.train(); wall submit → completed (the Ray side includes fetching the
adapter back from the artifact store). Medians and the ratio steps/s Ray/local (target >= 0.95). Appends a dated
section to bench/results/ray_jobs.md. No assertion on timings.

    .venv/bin/python bench/ray_jobs.py [--steps 20] [--rounds 2] [--poll-s 1.0]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import (
    MODEL,
    MODEL_CACHE,
    PYTHON,
    ROOT,
    BenchError,
    append_results,
    free_port,
    machine,
    median,
    run_main,
    spawn,
    wait_http_ok,
)

DATASET = "assets/datasets/studio-helper-en.jsonl"
BIN = Path(PYTHON).parent
RUN_TIMEOUT_S = 3600  # one job; a 2-core machine shared with other work can take many times the idle time


def job_spec(steps: int, name: str) -> dict:
    return {
        "base_model": MODEL, "dataset": DATASET, "output_name": name, "method": "lora", "lora_r": 16, "lora_alpha": 32,
        "lora_dropout": 0.0, "learning_rate": 2e-4, "lr_scheduler": "constant", "warmup_ratio": 0.0, "max_steps": steps,
        "batch_size": 4, "grad_accum": 1, "max_seq_len": 512, "save_steps": 100_000, "seed": 7,
    }


def start_cluster(tmp: Path, cores: int) -> tuple[list, str, str, str]:
    """A Ray head and an MLflow server on loopback: (processes, Ray dashboard URL, token, MLflow URL)."""
    token = secrets.token_hex(16)
    dash, mlflow_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}
    head = spawn([str(BIN / "ray"), "start", "--head", "--block", f"--num-cpus={cores}", f"--temp-dir={tmp / 'ray'}",
                  "--node-ip-address=127.0.0.1", f"--port={free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                  f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                  "--include-dashboard=true", "--disable-usage-stats"], env=env, log=tmp / "ray-head.log", cwd=tmp)
    mlflow = spawn([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
                    "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--artifacts-destination", str(tmp / "artifacts"),
                    "--serve-artifacts"], env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                   log=tmp / "mlflow.log", cwd=tmp)
    procs = [head, mlflow]
    try:
        import httpx

        deadline = time.monotonic() + 180
        while True:  # the dashboard answers only with the token
            if head.poll() is not None:
                raise BenchError(f"ray start exited {head.returncode}; see {tmp / 'ray-head.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{dash}/api/version", headers={"Authorization": f"Bearer {token}"},
                             timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("the Ray head did not answer within 180 s")
            time.sleep(0.3)
        wait_http_ok(f"http://127.0.0.1:{mlflow_port}/health", mlflow, 120, log=tmp / "mlflow.log")
    except BaseException:
        from engines.processes import stop_tree

        for p in procs:
            stop_tree(p.pid, proc=p, grace=10)
        raise
    return procs, f"http://127.0.0.1:{dash}", token, f"http://127.0.0.1:{mlflow_port}"


def one_run(settings, name: str, steps: int, poll_s: float) -> dict:  # noqa: ANN001
    """One job through a JobManager of its own (one studio's manager at a time: they share the data folder and DB)."""
    from engines.training import JobManager
    from storage import runs

    jobs = JobManager(settings, None, poll_s=poll_s)
    jobs.start()
    try:
        return _one_run(jobs, name, steps)
    finally:
        jobs.stop()
        for run in runs.list_runs(statuses=("running",)):  # interrupted (Ctrl-C, SIGTERM, an error): stop its worker now
            backend = jobs.backend_of(run)
            if backend is not None:
                backend.stop(jobs.job_ref(run), force=True)


def _one_run(jobs, name: str, steps: int) -> dict:  # noqa: ANN001
    from engines import accounts
    from storage import runs

    t0 = time.time()
    rid = jobs.submit(job_spec(steps, name), actor=accounts.bootstrap(None))
    first_seen = first_worker = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = runs.get_run(rid)
        if first_seen is None:
            step1 = next((e for e in jobs.events(rid)[0] if e["type"] == "progress" and e.get("step", 0) >= 1), None)
            if step1 is not None:
                first_seen, first_worker = time.time() - t0, step1["t"] - t0
        if run.status not in ("queued", "running"):
            break
        time.sleep(0.05)
    wall = time.time() - t0
    run = runs.get_run(rid)
    if run.status != "completed":
        raise BenchError(f"{name} ended {run.status}: {run.error}\n{jobs.log_tail(rid)}")
    m = runs.run_metrics(run)
    return {"first_step_worker_s": first_worker, "first_step_seen_s": first_seen, "steps_per_s": m["steps_per_s"],
            "wall_s": wall, "loss": m["train_loss"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--poll-s", type=float, default=1.0,
                    help="the job manager's tick (the studio's default 1.0; 'first step seen' is only as fine as this)")
    args = ap.parse_args()
    if not (MODEL_CACHE / MODEL / "config.json").is_file():
        raise BenchError(f"{MODEL_CACHE / MODEL} is missing: start the app once (it converts the bundled model)")
    if not (BIN / "ray").is_file():
        raise BenchError("ray is not installed: bash scripts/install.sh --dev (ray is in the dev lock)")
    machine_before = machine()
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp"))  # short: Ray's socket paths must stay under 107 characters
    procs: list = []
    try:
        t_cluster = time.perf_counter()
        procs, ray_url, token, mlflow_url = start_cluster(tmp, cores)
        cluster_s = time.perf_counter() - t_cluster
        from engines.settings import load_settings
        from storage import connect

        common = {"data_dir": tmp / "studio", "model_cache_dir": MODEL_CACHE, "mlflow_tracking_uri": mlflow_url}
        local_settings = load_settings(**common)
        ray_settings = load_settings(ray_address=ray_url, ray_auth_token=token, ray_num_cpus=float(cores), **common)
        connect(local_settings.db_url)
        local, ray = [], []
        for i in range(args.rounds):
            local.append(one_run(local_settings, f"local-{i}", args.steps, args.poll_s))
            print(f"round {i + 1}: local {local[-1]}", flush=True)
            ray.append(one_run(ray_settings, f"ray-{i}", args.steps, args.poll_s))
            print(f"round {i + 1}: ray   {ray[-1]}", flush=True)

        def med(rows: list[dict], key: str) -> float:
            return median([r[key] for r in rows])

        from engines.training.jobs import REMOTE_PULL_S

        ratio = med(ray, "steps_per_s") / med(local, "steps_per_s")
        rows = [f"| {side} {i + 1}{' (cold)' if side == 'ray' and i == 0 else ''} | {r['first_step_worker_s']:.1f} | "
                f"{r['first_step_seen_s']:.1f} | {r['steps_per_s']:.3f} | {r['wall_s']:.1f} | {r['loss']:.4f} |"
                for side, rs in (("local", local), ("ray", ray)) for i, r in enumerate(rs)]
        lines = [
            f"job: bundled {MODEL}, LoRA r=16 on 7 projections, batch 4, max_seq_len 512, {args.steps} steps, {DATASET}, "
            f"fp32 on CPU, {cores} threads both sides; {args.rounds} rounds alternating local/ray; both log to one "
            f"`mlflow server` on loopback; Ray head with --num-cpus={cores}, RAY_NUM_CPUS={cores}, token auth; "
            f"job manager tick {args.poll_s:g} s (a Ray job's log is read every {REMOTE_PULL_S:g} s)",
            f"Ray head + MLflow server up (started side by side): {cluster_s:.1f} s",
            "| run | submit → first step done, worker clock (s) | submit → first step seen by the studio (s) | steps/s | "
            "wall submit → completed (s) | final loss |",
            "|---|---|---|---|---|---|",
            *rows,
            f"submit → first step seen (median): local {med(local, 'first_step_seen_s'):.1f} s, "
            f"ray {med(ray, 'first_step_seen_s'):.1f} s ({med(ray, 'first_step_seen_s') - med(local, 'first_step_seen_s'):+.1f} s)",
            f"steps/s (median): local {med(local, 'steps_per_s'):.3f}, ray {med(ray, 'steps_per_s'):.3f} -> ratio ray/local "
            f"{ratio:.3f} (target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})",
            f"wall submit → completed (median): local {med(local, 'wall_s'):.1f} s, ray {med(ray, 'wall_s'):.1f} s "
            "(ray adds the job's runtime env, the log relay and the adapter's round trip through the artifact store)",
            f"load avg at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        ]
        print("\n".join(lines))
        path = append_results("ray_jobs", lines, machine_before)
        print(f"appended to {path.relative_to(ROOT)}")
        return 0
    finally:
        from engines.processes import stop_tree

        for p in procs:  # the whole session: Ray's head starts a dozen processes
            stop_tree(p.pid, proc=p, grace=10)
        from engines.processes import working_in

        for pid in working_in(tmp):  # a Ray job's worker runs in a session of its own and can outlive the head
            stop_tree(pid, grace=5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    run_main(main)
