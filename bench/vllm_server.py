"""The CPU vLLM server on its own: start-up time, single-stream speed and 8-stream aggregate speed.

1. Start-up: ServerManager.ensure() on a fresh temporary DATA_DIR (so no running server can be reused),
   from the call to /health OK (ensure polls /health every 0.5 s), `--runs` times (default 2).
2. On the last server: 10 sequential streamed requests with the `openai` client (temperature 0,
   max_tokens 128, a prompt asking for a long story, no ignore_eos): median TTFT and tok/s, where
   tok/s = completion tokens / (end - first token).
3. 8 concurrent streams of the same kind: aggregate tok/s = all completion tokens / wall time.
Also prints the server's resident memory (all processes of its group) after the runs.

Run: .venv/bin/python bench/vllm_server.py [--runs 2]
     VLLM_EXTRA_ARGS="--dtype float32" .venv/bin/python bench/vllm_server.py   # extra server flags, as in the app
Results are also appended to bench/results/vllm_server.md. No assertion on timings.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
from common import MODEL, MODEL_CACHE, BenchError, group_rss_gib, machine, median, report, run_main

MAX_TOKENS = 128
SINGLE_REQUESTS = 10
CONCURRENT = 8
TOPICS = (
    "a lighthouse keeper", "a lost robot", "a dragon who bakes bread", "two rival chefs", "a sailor and a storm",
    "a library at midnight", "a fox in the city", "a time-travelling cat", "an old clockmaker", "a girl who talks to trees",
)


def story(i: int) -> str:
    return f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}. Use many paragraphs."


def one_stream(client: openai.OpenAI, prompt: str) -> tuple[float, float, int]:
    """(TTFT s, total s, completion tokens) of one streamed chat."""
    t0 = time.perf_counter()
    first, usage = None, None
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True, stream_options={"include_usage": True},
        temperature=0.0, max_tokens=MAX_TOKENS,
    )
    for chunk in stream:
        usage = chunk.usage or usage
        if first is None and any(c.delta and c.delta.content for c in chunk.choices):
            first = time.perf_counter()
    end = time.perf_counter()
    if first is None or usage is None:
        raise BenchError(f"no text or no usage for {prompt!r}")
    return first - t0, end - t0, usage.completion_tokens


def measure_speed(client: openai.OpenAI) -> tuple[list[tuple[float, float, int]], list[tuple[float, float, int]], float]:
    """(single-stream results, concurrent results, wall seconds of the concurrent batch)."""
    one_stream(client, "Say hello.")  # warm-up
    single = [one_stream(client, story(i)) for i in range(SINGLE_REQUESTS)]
    for i, (ttft, total, n) in enumerate(single):
        print(f"single {i + 1:>2}/{SINGLE_REQUESTS}: TTFT {ttft * 1000:6.0f} ms, {n:>3} tokens, {n / (total - ttft):5.1f} tok/s")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENT) as pool:
        many = list(pool.map(lambda i: one_stream(client, story(i)), range(CONCURRENT)))
    return single, many, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2, help="server starts to time")
    args = p.parse_args()
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    machine_line = machine()
    print(f"machine: {machine_line}")

    from engines.models import resolve_base_model
    from engines.serving import ServerManager
    from engines.settings import load_settings

    starts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-vllm-") as tmp:
        for run in range(args.runs):
            settings = load_settings(data_dir=Path(tmp) / f"run{run}", model_cache_dir=MODEL_CACHE)
            manager = ServerManager(settings)
            try:
                record = resolve_base_model(settings, MODEL)
                t0 = time.perf_counter()
                endpoint = manager.ensure(record)
                starts.append(time.perf_counter() - t0)
                print(f"start {run + 1}/{args.runs}: /health OK after {starts[-1]:.1f} s")
                if run < args.runs - 1:
                    continue
                client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0, timeout=300.0)
                single, many, wall = measure_speed(client)
                rss = group_rss_gib(manager.status()[MODEL].pid)
            finally:
                manager.stop_all()

    tokens = sum(n for _, _, n in many)
    lines = [
        f"VLLM_EXTRA_ARGS: {settings.vllm_extra_args or '(none)'}",
        f"server start to /health OK ({len(starts)} fresh starts): " + ", ".join(f"{s:.1f} s" for s in starts)
        + f"; median {median(starts):.1f} s",
        f"single stream ({SINGLE_REQUESTS} requests, max_tokens {MAX_TOKENS}, temperature 0): median "
        f"{median([n / (total - ttft) for ttft, total, n in single]):.1f} tok/s, median TTFT "
        f"{median([ttft for ttft, _, _ in single]) * 1000:.0f} ms, median {median([n for _, _, n in single]):.0f} tokens",
        f"{CONCURRENT} concurrent streams: aggregate {tokens / wall:.1f} tok/s ({tokens} tokens in {wall:.1f} s), "
        f"median TTFT {median([ttft for ttft, _, _ in many]) * 1000:.0f} ms",
        f"server RSS (all processes of its group): {rss:.2f} GiB",
    ]
    report("vllm_server", lines, machine_line)
    return 0


if __name__ == "__main__":
    run_main(main)
