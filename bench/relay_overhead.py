"""What the studio's relay costs: streamed chats straight to vLLM vs the same chats through the app.

Starts one vLLM server with ServerManager (temporary DATA_DIR), then `launch.py` in a subprocess with the
same DATA_DIR, so the app reuses that server (checked through the state file). After 3 warm-up requests
per path it sends N (default 32) streamed chats (temperature 0, max_tokens 64, fixed seed) along three
paths, interleaved and rotated per prompt so drift and vLLM's prefix cache favour no path:

  direct   the `openai` client, stream=True, straight to vLLM
  studio   the app's /send event over Gradio's HTTP streaming API (POST /gradio_api/call/send, then SSE)
  gclient  the app's /send event through gradio_client (Client.submit + iterating the job)

Per request: TTFT = time to the first non-empty assistant text; tok/s = completion tokens / (end - first
token). The studio paths reuse the direct path's token count when the answer is identical, else count it
with `tokenizers`. gradio_client polls for new messages every 50 ms (gradio_client/utils.py,
stream_sse_v1plus), which adds 0-50 ms to what it sees, so the targets (TTFT studio/direct <= 1.03,
tok/s studio/direct >= 0.97) are judged on the `studio` path; gclient is shown for reference.

Run: .venv/bin/python bench/relay_overhead.py [--requests 32]
Results are also appended to bench/results/relay_overhead.md. No assertion on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
from common import (
    MODEL,
    MODEL_CACHE,
    PYTHON,
    BenchError,
    free_port,
    machine,
    median,
    report,
    run_main,
    spawn,
    stop,
    wait_http_ok,
)

MAX_TOKENS = 64
SEED = 1234
WARMUP = 3
TTFT_TARGET, TPS_TARGET = 1.03, 0.97
STATS_MARK = "\n\n<sub class='msg-stats'>"
TOPICS = (
    "the moon", "volcanoes", "honey bees", "the Roman Empire", "rainbows", "chess", "coffee", "the ocean",
    "electricity", "penguins", "the internet", "mountains", "bread", "music", "trains", "the sun",
)
PROMPTS = [f"Explain {t} in two sentences." for t in TOPICS] + [f"Give three short facts about {t}." for t in TOPICS]


@dataclass
class Sample:
    ttft: float  # seconds from sending to the first non-empty assistant text
    end: float  # seconds from sending to the end of the stream
    text: str
    tokens: int | None = None  # completion tokens (usage), known on the direct path

    def tok_per_s(self) -> float:
        return (self.tokens or 0) / (self.end - self.ttft) if self.end > self.ttft else float("nan")


def flatten(content: Any) -> str:
    """Chatbot content (a string or a list of {"type": "text", "text": ...} blocks) -> text without the stats line."""
    if isinstance(content, list):
        content = "".join(block.get("text", "") if isinstance(block, dict) else str(block) for block in content)
    return str(content or "").split(STATS_MARK, 1)[0]


def send_args(prompt: str) -> list[Any]:
    # message, conversation id ("" = new), model, system prompt, temperature, top_p, max_tokens, seed, language
    return [prompt, "", MODEL, "", 0.0, 1.0, MAX_TOKENS, SEED, "en"]


def direct(client: openai.OpenAI, prompt: str) -> Sample:
    t0 = time.perf_counter()
    first, text, usage = None, "", None
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True, stream_options={"include_usage": True},
        temperature=0.0, top_p=1.0, max_tokens=MAX_TOKENS, seed=SEED,
    )
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.delta and choice.delta.content:
                first = first or time.perf_counter()
                text += choice.delta.content
    end = time.perf_counter()
    if first is None or usage is None:
        raise BenchError(f"direct request for {prompt!r} returned no text or no usage")
    return Sample(first - t0, end - t0, text, usage.completion_tokens)


def studio_http(http: httpx.Client, prompt: str) -> Sample:
    """The /send event through Gradio's HTTP streaming API (what `curl` would do)."""
    t0 = time.perf_counter()
    r = http.post("/gradio_api/call/send", json={"data": send_args(prompt)})
    r.raise_for_status()
    first, text, event = None, "", ""
    with http.stream("GET", f"/gradio_api/call/send/{r.json()['event_id']}") as resp:
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("generating", "complete"):
                data = json.loads(line[5:])
                text = flatten(data[0][-1]["content"]) if data and data[0] else text
                if text and first is None:
                    first = time.perf_counter()
            elif line.startswith("data:") and event == "error":
                raise BenchError(f"studio /send failed for {prompt!r}: {line[5:].strip()[:300]}")
    end = time.perf_counter()
    if first is None:
        raise BenchError(f"studio /send returned no text for {prompt!r}")
    return Sample(first - t0, end - t0, text)


def studio_gclient(client: Any, prompt: str) -> Sample:
    """The /send event through gradio_client."""
    t0 = time.perf_counter()
    first, text = None, ""
    for out in client.submit(*send_args(prompt), api_name="/send"):
        if out and isinstance(out[0], list) and out[0]:
            text = flatten(out[0][-1]["content"])
            if text and first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    if first is None:
        raise BenchError(f"gradio_client /send returned no text for {prompt!r}")
    return Sample(first - t0, end - t0, text)


def wait_until_model_listed(client: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if MODEL in client.predict(api_name="/list_models"):
            return
        time.sleep(0.5)
    raise BenchError(f"the app did not list {MODEL} within {timeout:.0f}s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=len(PROMPTS), help="measured requests per path")
    args = p.parse_args()
    if args.requests < 1:
        raise BenchError("--requests must be at least 1")
    machine_line = machine()
    print(f"machine: {machine_line}")

    from gradio_client import Client
    from tokenizers import Tokenizer

    from engines.models import resolve_base_model
    from engines.serving import ServerManager
    from engines.settings import load_settings

    tokenizer = Tokenizer.from_file(str(MODEL_CACHE / MODEL / "tokenizer.json"))
    tmp = tempfile.TemporaryDirectory(prefix="bench-relay-")
    data_dir = Path(tmp.name)
    settings = load_settings(data_dir=data_dir, model_cache_dir=MODEL_CACHE)
    manager = ServerManager(settings)
    app = None
    try:
        print("starting the vLLM server (ServerManager.ensure)...")
        endpoint = manager.ensure(resolve_base_model(settings, MODEL))
        server_pid = manager.status()[MODEL].pid
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "VLLM_BASE_URL"}
        env.update(DATA_DIR=str(data_dir), MODEL_CACHE_DIR=str(MODEL_CACHE), PORT=str(port))
        log = data_dir / "app.log"
        print("starting the studio (launch.py, same DATA_DIR)...")
        app = spawn([PYTHON, "launch.py", "--port", str(port)], env=env, log=log)
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/", app, 180.0, log=log)
        gclient = Client(f"{url}/", verbose=False)
        wait_until_model_listed(gclient)
        state = json.loads((settings.servers_path / f"{MODEL}.json").read_text())
        if state.get("pid") != server_pid:
            raise BenchError(f"the app did not reuse the server (state file pid {state.get('pid')} != {server_pid})")

        oai = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0, timeout=120.0)
        http = httpx.Client(base_url=url, timeout=120.0)
        paths: dict[str, Callable[[str], Sample]] = {
            "direct": lambda q: direct(oai, q),
            "studio": lambda q: studio_http(http, q),
            "gclient": lambda q: studio_gclient(gclient, q),
        }
        names = list(paths)
        print(f"warm-up: {WARMUP} requests per path...")
        for i in range(WARMUP):
            for name in names:
                paths[name](f"Say hello number {i}.")

        samples: dict[str, list[Sample]] = {name: [] for name in names}
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.requests)]
        for i, prompt in enumerate(prompts):
            order = names[i % 3:] + names[: i % 3]  # rotate who goes first (prefix cache, drift)
            got = {name: paths[name](prompt) for name in order}
            for name, s in got.items():
                if s.tokens is None:  # studio paths: the direct path's count if the text is identical
                    same = s.text == got["direct"].text
                    s.tokens = got["direct"].tokens if same else len(tokenizer.encode(s.text, add_special_tokens=False).ids)
                samples[name].append(s)
            print(f"{i + 1:>3}/{len(prompts)} " + "  ".join(
                f"{n} {got[n].ttft * 1000:6.0f} ms {got[n].tok_per_s():5.1f} tok/s" for n in names))
        http.close()
    finally:
        stop(app)
        manager.stop_all()
        tmp.cleanup()

    ttft = {n: median([s.ttft for s in xs]) for n, xs in samples.items()}
    tps = {n: median([s.tok_per_s() for s in xs]) for n, xs in samples.items()}
    identical = {n: sum(s.text == d.text for s, d in zip(xs, samples["direct"], strict=True)) for n, xs in samples.items()}
    tokens = median([float(s.tokens or 0) for s in samples["direct"]])
    lines = [f"VLLM_EXTRA_ARGS: {settings.vllm_extra_args or '(none)'}",
             f"requests per path: {args.requests} (interleaved), max_tokens {MAX_TOKENS}, temperature 0, seed {SEED}; "
             f"median completion tokens {tokens:.0f}"]
    for n in names:
        lines.append(f"{n:<8} median TTFT {ttft[n] * 1000:7.1f} ms, median {tps[n]:6.1f} tok/s"
                     + ("" if n == "direct" else f", answers identical to direct: {identical[n]}/{args.requests}"))
    for n in ("studio", "gclient"):
        r_ttft, r_tps = ttft[n] / ttft["direct"], tps[n] / tps["direct"]
        verdict = "" if n == "gclient" else (
            f" (target <= {TTFT_TARGET}: {'met' if r_ttft <= TTFT_TARGET else 'NOT met'};"
            f" target >= {TPS_TARGET}: {'met' if r_tps >= TPS_TARGET else 'NOT met'})")
        lines.append(f"ratio {n}/direct: TTFT {r_ttft:.3f}, tok/s {r_tps:.3f}{verdict}")
    report("relay_overhead", lines, machine_line)
    return 0


if __name__ == "__main__":
    run_main(main)
