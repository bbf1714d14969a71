"""Batch-evaluation throughput: 64 prompts × 2 models through the studio vs a naive loop vs a raw async client.

Starts one CPU vLLM server on the bundled model (ServerManager, temporary DATA_DIR) and loads a LoRA adapter
into it (a fresh PEFT adapter of rank 8, so the second model takes vLLM's LoRA path like a fine-tune does).
Then the same 128 requests (temperature 0, max_tokens 64, seed fixed) go through three paths:

  naive   the `openai` client, one request after another (what a quick script does)
  raw     AsyncOpenAI, all 128 requests at once with asyncio.gather (what the issue calls the server's own best)
  bounded the same raw client with at most EVAL_CONCURRENCY requests in flight (isolates the studio's own cost)
  studio  EvalManager.submit(): per-server concurrency gate (EVAL_CONCURRENCY), retries, every answer stored
          in SQLite as it arrives; timed over its generation phase (scoring/MLflow reported apart)

raw, bounded and studio run --rounds times each, rotating who goes first (vLLM's prefix cache, drift); naive
runs once. Throughput = completion tokens / wall seconds, and requests / wall seconds. Target: studio ≥ 0.9 × raw.

Run: .venv/bin/python bench/batch_eval.py [--prompts 64] [--rounds 2] [--concurrency N]
Results are also appended to bench/results/batch_eval.md. No assertion on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import openai
from common import MODEL, MODEL_CACHE, BenchError, machine, median, report, run_main

MAX_TOKENS = 64
SEED = 1234
TARGET = 0.9
TOPICS = ("the moon", "volcanoes", "honey bees", "the Roman Empire", "rainbows", "chess", "coffee", "the ocean",
          "electricity", "penguins", "the internet", "mountains", "bread", "music", "trains", "the sun")
ADAPTER = "bench-lora"


def prompts(n: int) -> list[str]:
    forms = ("Explain {} in two sentences.", "Give three short facts about {}.", "Write a haiku about {}.",
             "What would a child ask about {}?")
    return [forms[(i // len(TOPICS)) % len(forms)].format(TOPICS[i % len(TOPICS)]) + f" (#{i})" for i in range(n)]


def make_adapter(folder: Path) -> Path:
    """A rank-8 LoRA of the bundled model on all linear projections (B = 0: answers match the base, cost does not)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(MODEL_CACHE / MODEL))
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                         "down_proj"], task_type="CAUSAL_LM")
    get_peft_model(model, cfg).save_pretrained(str(folder))
    return folder


def naive(base_url: str, models: list[str], qs: list[str]) -> tuple[float, int, int]:
    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=300.0)
    tokens = done = 0
    start = time.perf_counter()
    for m in models:
        for q in qs:
            r = client.chat.completions.create(model=m, messages=[{"role": "user", "content": q}], temperature=0.0,
                                               max_tokens=MAX_TOKENS, seed=SEED)
            tokens += r.usage.completion_tokens
            done += 1
    return time.perf_counter() - start, tokens, done


def raw(base_url: str, models: list[str], qs: list[str], limit: int | None = None) -> tuple[float, int, int]:
    """All requests at once (limit None), or at most `limit` in flight (the studio's bound, without the studio)."""
    async def go() -> tuple[float, int, int]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=900.0)
        gate = asyncio.Semaphore(limit or len(models) * len(qs))

        async def one(m: str, q: str):
            async with gate:
                return await client.chat.completions.create(
                    model=m, messages=[{"role": "user", "content": q}], temperature=0.0, max_tokens=MAX_TOKENS, seed=SEED)

        start = time.perf_counter()
        rs = await asyncio.gather(*(one(m, q) for m in models for q in qs))
        wall = time.perf_counter() - start
        await client.close()
        return wall, sum(r.usage.completion_tokens for r in rs), len(rs)

    return asyncio.run(go())


def studio(manager, models: list[str], qs: list[str], concurrency: int) -> tuple[float, int, int, float]:
    from engines import accounts
    from storage import evals

    examples = [{"messages": [{"role": "user", "content": q}], "reference": None, "category": None} for q in qs]
    started = time.perf_counter()
    eid = manager.submit(actor=accounts.bootstrap(None), name="bench", models=models, examples=examples, source="bench",
                         params={"temperature": 0.0, "max_tokens": MAX_TOKENS, "seed": SEED, "concurrency": concurrency})
    manager.wait(eid, 1800)
    total = time.perf_counter() - started
    run = evals.get_eval(eid)
    if run.status != "completed":
        raise BenchError(f"studio evaluation ended {run.status}: {run.error}")
    rows = evals.results(eid)
    failed = [r for r in rows if r.output is None]
    if failed:
        raise BenchError(f"{len(failed)} studio requests failed: {failed[0].error}")
    gen = evals.loads(run.summary, {})["generation_seconds"]
    return gen, sum(r.completion_tokens or 0 for r in rows), len(rows), total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=None, help="studio requests in flight per server (default EVAL_CONCURRENCY)")
    args = p.parse_args()
    machine_line = machine()
    print(f"machine: {machine_line}")

    from engines.evaluation.runner import EvalManager
    from engines.models import resolve_base_model
    from engines.serving import ServerManager
    from engines.settings import load_settings
    from storage import connect

    tmp = tempfile.TemporaryDirectory(prefix="bench-eval-")
    data_dir = Path(tmp.name)
    settings = load_settings(data_dir=data_dir, model_cache_dir=MODEL_CACHE, request_timeout=900)
    concurrency = args.concurrency or settings.eval_concurrency
    connect(settings.db_url)
    manager = ServerManager(settings)
    qs = prompts(args.prompts)
    try:
        print("starting the vLLM server (ServerManager.ensure)...")
        endpoint = manager.ensure(resolve_base_model(settings, MODEL))
        print("making and loading a rank-8 LoRA adapter...")
        manager.load_adapter(MODEL, ADAPTER, make_adapter(data_dir / "adapter"))
        models = [MODEL, ADAPTER]
        evaluator = EvalManager(settings, manager.endpoint_for)
        print("warm-up (8 requests per model)...")
        raw(endpoint.base_url, models, qs[:8])
        results: dict[str, list[tuple[float, int, int]]] = {"raw": [], "bounded": [], "studio": []}
        totals = []
        for r in range(args.rounds):
            order = ["raw", "bounded", "studio"]
            order = order[r % 3:] + order[: r % 3]
            for name in order:
                if name == "raw":
                    got = raw(endpoint.base_url, models, qs)
                elif name == "bounded":
                    got = raw(endpoint.base_url, models, qs, concurrency)
                else:
                    *got, total = studio(evaluator, models, qs, concurrency)
                    totals.append(total)
                    got = tuple(got)
                results[name].append(got)
                print(f"round {r + 1} {name:7s} {got[0]:7.1f} s  {got[1] / got[0]:7.1f} tok/s  {got[2] / got[0]:5.2f} req/s")
        print(f"naive sequential ({len(models) * len(qs)} requests, one at a time)...")
        nv = naive(endpoint.base_url, models, qs)
        print(f"naive   {nv[0]:7.1f} s  {nv[1] / nv[0]:7.1f} tok/s  {nv[2] / nv[0]:5.2f} req/s")
    finally:
        manager.stop_all()
        tmp.cleanup()

    tps = {n: median([w[1] / w[0] for w in xs]) for n, xs in results.items()}
    rps = {n: median([w[2] / w[0] for w in xs]) for n, xs in results.items()}
    tps["naive"], rps["naive"] = nv[1] / nv[0], nv[2] / nv[0]
    ratio = tps["studio"] / tps["raw"]
    lines = [
        f"{args.prompts} prompts × 2 models ({MODEL} + a rank-8 LoRA on the same server) = {2 * args.prompts} requests; "
        f"max_tokens {MAX_TOKENS}, temperature 0, seed {SEED}; raw/bounded/studio {args.rounds} round(s) (median), naive once; "
        f"studio concurrency {concurrency} per server",
        "| path | completion tok/s | requests/s | vs raw |",
        "|---|---|---|---|",
        *(f"| {label} | {tps[n]:.1f} | {rps[n]:.2f} | {tps[n] / tps['raw']:.3f} |" for n, label in (
            ("raw", "raw async, all at once"), ("bounded", f"raw async, {concurrency} in flight"), ("studio", "studio"),
            ("naive", "naive sequential"))),
        f"studio / raw (all at once) throughput: {ratio:.3f} (target ≥ {TARGET}: {'met' if ratio >= TARGET else 'NOT met'}); "
        f"studio / raw with the same bound: {tps['studio'] / tps['bounded']:.3f} (the studio's own overhead); "
        f"studio / naive: {tps['studio'] / tps['naive']:.2f}x",
        f"studio wall including scoring and MLflow logging: median {median(totals):.1f} s "
        f"(generation {median([w[0] for w in results['studio']]):.1f} s)",
    ]
    report("batch_eval", lines, machine_line)
    return 0


if __name__ == "__main__":
    run_main(main)
