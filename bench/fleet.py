"""Two endpoints of one base vs one, at 16 concurrent chats: aggregate generation tokens per second.

Starts two CPU vLLM servers of the bundled model (two ServerManagers, temporary DATA_DIRs; the second serves the
same model name, as a fleet endpoint must). The studio's manager owns the first; in the "two endpoints" mode the
second is registered as a fleet endpoint of the base, in the "one endpoint" mode it is removed again (the managed
server alone, exactly the studio's default path). Each round sends 16 chats at once through the real turn
(`engines.conversations.answer`, stored in SQLite), max_tokens 128, temperature 0.8 with a fixed seed per chat;
modes alternate for --rounds rounds. Per mode: aggregate completion tokens / wall time, TTFT p50, and how many
requests each server finished (its own `vllm:request_success_total`).

CPU binding: on a 2-core machine vLLM binds each server's compute threads to core 0 by default, so two servers
would share one core. The first server is bound to core 0 and the second to core 1 (VLLM_CPU_OMP_THREADS_BIND);
the API front ends, the studio's event loop and this script share whatever is left. The ratio is honest for that
layout: two endpoints cannot double on two cores.

Run: .venv/bin/python bench/fleet.py [--rounds 3] [--concurrency 16]
Results are also appended to bench/results/fleet.md. No assertion on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import MODEL, MODEL_CACHE, machine, median, percentile, report, run_main

PROMPT = "Write a short story about a lighthouse keeper and a storm (variant {i})."
MAX_TOKENS = 128


def served_requests(root: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{root}/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "vllm:request_success_total")


async def burst(manager, n: int, seed0: int) -> dict[str, float]:
    from engines import accounts
    from engines import conversations as turns
    from engines.inference import ChatParams

    actor = accounts.bootstrap(None)
    cids = [turns.store_user_turn(actor, None, PROMPT.format(i=seed0 + i)) for i in range(n)]

    async def one(i: int, cid: int) -> tuple[int, float]:
        params = ChatParams(temperature=0.8, max_tokens=MAX_TOKENS, seed=seed0 + i)
        last = None
        async for upd in turns.answer(manager, cid, MODEL, params):
            last = upd
        if last is None or last.finished is None:
            raise RuntimeError(f"a chat did not finish: {last.error if last else 'no update'}")
        return last.finished.completion_tokens or 0, last.finished.ttft_ms or 0.0

    start = time.perf_counter()
    got = await asyncio.gather(*(one(i, c) for i, c in enumerate(cids)))
    wall = time.perf_counter() - start
    tokens = sum(t for t, _ in got)
    return {"tok_s": tokens / wall, "tokens": tokens, "wall_s": wall, "ttft_p50": percentile([t for _, t in got], 50)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    machine_line = machine()
    print(f"machine: {machine_line}")

    from engines.accounts import Actor
    from engines.models import resolve_base_model
    from engines.serving import ServerManager
    from engines.settings import load_settings
    from storage import connect

    admin = Actor(1, "bench", "admin")
    tmp_a = tempfile.TemporaryDirectory(prefix="bench-fleet-a-")
    tmp_b = tempfile.TemporaryDirectory(prefix="bench-fleet-b-")
    settings_a = load_settings(data_dir=Path(tmp_a.name), model_cache_dir=MODEL_CACHE)
    settings_b = load_settings(data_dir=Path(tmp_b.name), model_cache_dir=MODEL_CACHE)
    connect(settings_a.db_url)
    studio, other = ServerManager(settings_a), ServerManager(settings_b)
    modes = ("one endpoint", "two endpoints")
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    shares: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    try:
        print("starting two vLLM servers (cores 0 and 1)...")
        record = resolve_base_model(settings_a, MODEL)
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "0"  # read by the server's environment at spawn
        local = studio.ensure(record).base_url.removesuffix("/v1")
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "1" if (os.cpu_count() or 1) > 1 else "0"
        second = other.ensure(record).base_url.removesuffix("/v1")
        roots = [local, second]

        def use(mode: str) -> None:
            if mode == "two endpoints":
                studio.add_fleet_endpoint(MODEL, second, actor=admin)
            else:
                studio.remove_fleet_endpoint(MODEL, second, actor=admin)

        seed = 0
        for mode in modes:  # warm-up of both paths
            use(mode)
            asyncio.run(burst(studio, 4, seed))
            seed += 4
        for r in range(args.rounds):
            order = modes if r % 2 == 0 else modes[::-1]
            for mode in order:
                use(mode)
                before = [served_requests(x) for x in roots]
                got = asyncio.run(burst(studio, args.concurrency, seed))
                seed += args.concurrency
                share = tuple(served_requests(x) - b for x, b in zip(roots, before, strict=True))
                results[mode].append(got)
                shares[mode].append(share)
                print(f"round {r + 1} {mode:14s} {got['tok_s']:7.1f} tok/s  {got['tokens']:5.0f} tokens in "
                      f"{got['wall_s']:5.1f} s  TTFT p50 {got['ttft_p50']:7.1f} ms  requests per server {share}")
    finally:
        if bind is None:
            os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
        else:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
        studio.stop_all()
        other.stop_all()
        tmp_a.cleanup()
        tmp_b.cleanup()

    med = {m: {k: median([x[k] for x in xs]) for k in ("tok_s", "tokens", "wall_s", "ttft_p50")} for m, xs in results.items()}
    one, two = med["one endpoint"], med["two endpoints"]
    lines = [
        "command: `" + " ".join([".venv/bin/python", "bench/fleet.py", *sys.argv[1:]]) + "`",
        f"{args.concurrency} chats at once through answer() (stored in SQLite), max_tokens {MAX_TOKENS}, temperature 0.8, "
        f"fixed seeds; {args.rounds} round(s) per mode, alternating (median). Servers bound to cores 0 and 1 "
        "(VLLM_CPU_OMP_THREADS_BIND); one endpoint = the managed server alone (the default path)",
        "| mode | aggregate tok/s | tokens | wall s | TTFT p50 ms | requests finished per server (local, second), each round |",
        "|---|---|---|---|---|---|",
        *(f"| {m} | {v['tok_s']:.1f} | {v['tokens']:.0f} | {v['wall_s']:.1f} | {v['ttft_p50']:.1f} | "
          f"{'; '.join(f'{a:.0f}, {b:.0f}' for a, b in shares[m])} |" for m, v in med.items()),
        f"two / one endpoints: aggregate tok/s {two['tok_s'] / one['tok_s']:.3f}, TTFT p50 {two['ttft_p50'] / one['ttft_p50']:.3f}",
    ]
    report("fleet", lines, machine_line)
    return 0


if __name__ == "__main__":
    run_main(main)
