"""How often a streaming chat answer redraws the page: every token vs the Chat tab's merged updates (UI_UPDATE_S).

Starts one CPU vLLM server on the bundled model (ServerManager, temporary DATA_DIR) and runs the same long answer
(temperature 0, fixed seed, max_tokens 400) through the real turn (`engines.conversations.answer`, stored in SQLite)
and `Prefetched`, once without merging (min_interval 0: one page update per token, as before) and once with the
Chat tab's interval, alternating for --rounds rounds. Per answer: page updates, updates per second, characters the
browser re-renders (each update re-renders the whole answer), time to the first text, and tokens per second.
The first-text time must not grow (the first update is never held back); the redraws should fall by a large factor.

Run: .venv/bin/python bench/chat_stream_rate.py [--rounds 3]
Results are also appended to bench/results/chat_stream_rate.md. No assertion on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import MODEL, MODEL_CACHE, machine, median, report, run_main

PROMPT = "Write a long story about a lighthouse keeper and a storm, with many details."


def _owner():
    """The local owner: conversations belong to someone."""
    from engines import accounts

    return accounts.bootstrap(None)


async def one_answer(manager, min_interval: float) -> dict[str, float]:
    from engines import conversations as turns
    from engines.inference import ChatParams

    cid = turns.start_conversation(_owner(), None)
    turns.add_user_message(cid, PROMPT)
    params = ChatParams(temperature=0.0, max_tokens=400, seed=7)
    start = time.perf_counter()
    first = None
    updates = chars = 0
    last = None
    async for upd in turns.Prefetched(turns.answer(manager, cid, MODEL, params), min_interval=min_interval):
        updates += 1
        chars += len(upd.text)
        if first is None and upd.text:
            first = time.perf_counter() - start
        last = upd
    wall = time.perf_counter() - start
    if last is None or last.finished is None:
        raise RuntimeError(f"the answer did not finish: {last}")
    return {"updates": updates, "rate": updates / wall, "chars": chars, "first_ms": 1000 * (first or wall),
            "tok_s": (last.finished.completion_tokens or 0) / wall, "tokens": last.finished.completion_tokens or 0,
            "text": last.text}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    machine_line = machine()
    print(f"machine: {machine_line}")

    from engines.models import resolve_base_model
    from engines.serving import ServerManager
    from engines.settings import load_settings
    from storage import connect
    from studio.chat_tab import UI_UPDATE_S

    tmp = tempfile.TemporaryDirectory(prefix="bench-stream-")
    settings = load_settings(data_dir=Path(tmp.name), model_cache_dir=MODEL_CACHE)
    connect(settings.db_url)
    manager = ServerManager(settings)
    modes = {"every token": 0.0, f"merged ({UI_UPDATE_S * 1000:.0f} ms)": UI_UPDATE_S}
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    try:
        print("starting the vLLM server (ServerManager.ensure)...")
        manager.ensure(resolve_base_model(settings, MODEL))
        asyncio.run(one_answer(manager, 0.0))  # warm-up
        for r in range(args.rounds):
            order = list(modes) if r % 2 == 0 else list(modes)[::-1]
            for name in order:
                got = asyncio.run(one_answer(manager, modes[name]))
                results[name].append(got)
                print(f"round {r + 1} {name:16s} {got['updates']:4d} updates  {got['rate']:6.1f}/s  "
                      f"first text {got['first_ms']:6.1f} ms  {got['tok_s']:6.1f} tok/s  {got['tokens']} tokens")
    finally:
        manager.stop_all()
        tmp.cleanup()

    same = all(x["text"] == results["every token"][0]["text"] for xs in results.values() for x in xs)
    med = {n: {k: median([x[k] for x in xs]) for k in ("updates", "rate", "chars", "first_ms", "tok_s", "tokens")}
           for n, xs in results.items()}
    base, merged = med["every token"], med[list(modes)[1]]
    lines = [
        f"one answer of up to 400 tokens (temperature 0, seed 7) through answer() + Prefetched, {args.rounds} round(s) "
        f"per mode, alternating (median); identical final text in every run: {same}",
        "| mode | page updates | updates/s | chars re-rendered | first text ms | tok/s |",
        "|---|---|---|---|---|---|",
        *(f"| {n} | {m['updates']:.0f} | {m['rate']:.1f} | {m['chars']:,.0f} | {m['first_ms']:.1f} | {m['tok_s']:.1f} |"
          for n, m in med.items()),
        f"merged / every token: updates {merged['updates'] / base['updates']:.3f}, chars re-rendered "
        f"{merged['chars'] / base['chars']:.3f}, first text {merged['first_ms'] / base['first_ms']:.3f}, "
        f"tok/s {merged['tok_s'] / base['tok_s']:.3f}",
    ]
    report("chat_stream_rate", lines, machine_line)
    return 0


if __name__ == "__main__":
    run_main(main)
