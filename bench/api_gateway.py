"""The OpenAI-compatible gateway and the chat UI under load: the same chats straight to vLLM, through the studio's
/v1 gateway, and through the Chat tab's `/send` event, one at a time and 32 at once.

Starts one CPU vLLM server with ServerManager (temporary DATA_DIR), then `launch.py` with the same DATA_DIR (no
accounts), so the studio reuses that server (checked through the state file). Every request: temperature 0,
top_p 1, max_tokens 64, seed 1234, no system prompt, the prompts of relay_overhead.py.

  direct   the `openai` SDK, stream=True, base_url = vLLM's /v1
  gateway  the same SDK call, base_url = the studio's /v1 (no key: a studio without accounts answers loopback
           callers as its local owner; the SDK's Authorization header is dropped)
  ui       the Chat tab's `/send` over Gradio's HTTP API (POST /gradio_api/call/send, then its SSE stream),
           as relay_overhead.py does, but as browser tabs: concurrent stream i always sends session hash "tab i"
           (a call without one is a new Gradio session each time, ~100 ms of serial work a tab pays only once)

1. Single stream: 3 warm-up requests per path, then --requests (default 32) prompts, direct and gateway interleaved
   per prompt (who goes first alternates). TTFT p50 ratio gateway/direct (target <= 1.05) and tok/s p50 ratio
   (target >= 0.97); tok/s = usage.completion_tokens / (end - first token). The same two ratios also as the median
   of the per-prompt pairs' own ratios (steadier: each request alone varies by +-15% here). Also the studio's own
   TTFT stored with the gateway's answers (from its request to vLLM): the client's TTFT minus that is the studio's
   own share.
2. Concurrent: batches of --concurrency (default 32) streams started together (a barrier), one path per batch;
   one untimed batch per path first (vLLM's prefix cache then holds every prompt for every path), then --rounds
   (default 3) rounds of direct, gateway and ui batches, the order rotating each round. TTFT p50 per path over all
   its streams, ratios gateway/direct (target <= 1.3) and ui/direct (target <= 1.5). For the ui path also the time
   to its first update (the stored user message sent back, before any token) and, for both studio paths, the
   studio's own TTFT stored with each answer (what the studio saw from vLLM): the gap between that and the client's
   TTFT is what the studio's relay adds.
3. Nothing lost: user messages and finished answers in the studio's SQLite (conversations.source 'api' for the
   gateway, 'ui' for the Chat tab) must equal what was sent through each, warm-ups included; the script exits
   non-zero after writing its figures when they do not. A missed timing target is reported, never an error.

Run: .venv/bin/python bench/api_gateway.py [--requests 32] [--concurrency 32] [--rounds 3] [--skip-single | --skip-concurrent]
Results are appended to bench/results/api_gateway.md. ~6-10 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
    percentile,
    report,
    run_main,
    spawn,
    stop,
    wait_http_ok,
)
from relay_overhead import MAX_TOKENS, PROMPTS, SEED, Sample, direct, flatten, send_args

WARMUP = 3
SINGLE_TTFT_TARGET, SINGLE_TPS_TARGET = 1.05, 0.97
GATEWAY_TTFT_TARGET, UI_TTFT_TARGET = 1.3, 1.5


def keyless_openai(base_url: str) -> openai.OpenAI:
    """The SDK pointed at the studio's /v1 without a key: its Authorization header is removed before sending."""
    def drop_auth(request: httpx.Request) -> None:
        request.headers.pop("Authorization", None)

    http = httpx.Client(timeout=300.0, event_hooks={"request": [drop_auth]},
                        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300.0, http_client=http)


def ui_send(http: httpx.Client, prompt: str, session: str) -> tuple[Sample, float]:
    """The /send event over Gradio's HTTP API as one browser tab (`session`): (sample, seconds to the first update).

    Without a session hash every call is a new Gradio session, and building a session's copy of the studio's
    config costs ~100 ms of the event loop (all of it serial): a browser tab pays that once, not per message."""
    t0 = time.perf_counter()
    r = http.post("/gradio_api/call/send", json={"data": send_args(prompt), "session_hash": session})
    r.raise_for_status()
    echo, first, text, event = None, None, "", ""
    with http.stream("GET", f"/gradio_api/call/send/{r.json()['event_id']}") as resp:
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("generating", "complete"):
                data = json.loads(line[5:])
                echo = echo or time.perf_counter()
                chat = data[0] if data else None
                if isinstance(chat, list) and chat and chat[-1].get("role") == "assistant":
                    text = flatten(chat[-1]["content"])
                    if text and first is None:
                        first = time.perf_counter()
            elif line.startswith("data:") and event == "error":
                raise BenchError(f"ui /send failed for {prompt!r}: {line[5:].strip()[:300]}")
    end = time.perf_counter()
    if first is None:
        raise BenchError(f"ui /send returned no text for {prompt!r}")
    return Sample(first - t0, end - t0, text), echo - t0


def batch(run_one: Callable[[int, str], Any], n: int) -> tuple[list[Any], float, list[str]]:
    """`n` requests started together (a barrier), one thread each: (results of those that worked, wall seconds, errors)."""
    out: list[Any] = [None] * n
    errors: list[str] = []
    barrier = threading.Barrier(n + 1)

    def worker(i: int) -> None:
        barrier.wait(timeout=120)
        try:
            out[i] = run_one(i, PROMPTS[i % len(PROMPTS)])
        except Exception as exc:  # noqa: BLE001 - counted and reported with the path
            errors.append(f"{exc.__class__.__name__}: {exc}"[:300])

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    barrier.wait(timeout=120)
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return [o for o in out if o is not None], wall, errors


def stored_counts(db: Path) -> dict[str, tuple[int, int]]:
    """source -> (user messages, finished answers) in the studio's SQLite."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT c.source, SUM(m.role = 'user'), SUM(m.role = 'assistant' AND m.finish_reason IN ('stop', 'length')) "
            "FROM messages m JOIN conversations c ON c.id = m.conversation_id GROUP BY c.source").fetchall()
    finally:
        con.close()
    return {src: (int(u or 0), int(a or 0)) for src, u, a in rows}


def stored_ttfts_after(db: Path, after_id: int) -> tuple[list[float], int]:
    """The studio's own TTFT (s) of the answers stored after message `after_id`, and the newest message id."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        ttfts = [r[0] / 1000 for r in con.execute(
            "SELECT ttft_ms FROM messages WHERE role = 'assistant' AND id > ? AND ttft_ms IS NOT NULL", (after_id,))]
        newest = con.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]
    finally:
        con.close()
    return ttfts, newest


def ms(x: float) -> str:
    return f"{x * 1000:7.1f} ms"


def verdict(ratio: float, target: float, *, at_most: bool = True) -> str:
    ok = ratio <= target if at_most else ratio >= target
    return f"target {'<=' if at_most else '>='} {target}: {'met' if ok else 'NOT met'}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=32, help="measured single-stream requests per path")
    p.add_argument("--concurrency", type=int, default=32, help="streams per concurrent batch")
    p.add_argument("--rounds", type=int, default=3, help="concurrent rounds (one batch per path each)")
    p.add_argument("--skip-single", action="store_true", help="only the concurrent part")
    p.add_argument("--skip-concurrent", action="store_true", help="only the single-stream part")
    args = p.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1:
        raise BenchError("--requests, --concurrency and --rounds must be at least 1")
    command = " ".join([".venv/bin/python", "bench/api_gateway.py", *sys.argv[1:]])
    machine_line = machine()
    print(f"machine: {machine_line}")

    from engines.models import resolve_base_model
    from engines.serving import ServerManager
    from engines.settings import load_settings

    tmp = tempfile.TemporaryDirectory(prefix="bench-gateway-")
    data_dir = Path(tmp.name)
    settings = load_settings(data_dir=data_dir, model_cache_dir=MODEL_CACHE)
    manager = ServerManager(settings)
    app = None
    lines: list[str] = [f"command: `{command}`", f"VLLM_EXTRA_ARGS: {settings.vllm_extra_args or '(none)'}"]
    problems: list[str] = []
    sent = {"api": 0, "ui": 0}  # messages sent per studio source, warm-ups included
    answered = {"api": 0, "ui": 0}
    counting = threading.Lock()  # the counters are bumped from the batch threads
    broke = False  # the run stopped on an error: the studio's log is kept
    try:
        print("starting the vLLM server (ServerManager.ensure)...")
        endpoint = manager.ensure(resolve_base_model(settings, MODEL))
        server_pid = manager.status()[MODEL].pid
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("VLLM_BASE_URL", "AUTH", "PORT")}
        env.update(DATA_DIR=str(data_dir), MODEL_CACHE_DIR=str(MODEL_CACHE), PORT=str(port))
        log = data_dir / "app.log"
        print("starting the studio (launch.py, same DATA_DIR, no accounts)...")
        app = spawn([PYTHON, "launch.py", "--port", str(port)], env=env, log=log)
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/", app, 180.0, log=log)
        wait_http_ok(f"{url}/v1/models", app, 60.0, log=log)
        gw = keyless_openai(f"{url}/v1")
        deadline = time.monotonic() + 120
        while MODEL not in {m.id for m in gw.models.list().data}:
            if time.monotonic() > deadline:
                raise BenchError(f"the gateway did not list {MODEL} within 120 s")
            time.sleep(0.5)
        state = json.loads((settings.servers_path / f"{MODEL}.json").read_text())
        if state.get("pid") != server_pid:
            raise BenchError(f"the studio did not reuse the server (state file pid {state.get('pid')} != {server_pid})")
        db = data_dir / "studio.db"
        oai = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0, timeout=300.0,
                            http_client=httpx.Client(timeout=300.0, limits=httpx.Limits(max_connections=200,
                                                                                        max_keepalive_connections=200)))
        ui_http = httpx.Client(base_url=url, timeout=300.0,
                               limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))

        def gateway(q: str) -> Sample:
            with counting:
                sent["api"] += 1
            s = direct(gw, q)
            with counting:
                answered["api"] += 1
            return s

        tag = secrets.token_hex(4)

        def ui(q: str, tab: int = 0) -> tuple[Sample, float]:
            with counting:
                sent["ui"] += 1
            out = ui_send(ui_http, q, f"bench-{tag}-tab{tab}")
            with counting:
                answered["ui"] += 1
            return out

        print(f"warm-up: {WARMUP} requests per path...")
        for i in range(WARMUP):
            direct(oai, f"Say hello number {i}.")
            gateway(f"Say hello number {i}.")
            ui(f"Say hello number {i}.")

        # ---- 1. single stream: direct vs gateway, interleaved per prompt --------------------------------------
        if not args.skip_single:
            single: dict[str, list[Sample]] = {"direct": [], "gateway": []}
            _, newest = stored_ttfts_after(db, 0)
            paths: dict[str, Callable[[str], Sample]] = {"direct": lambda q: direct(oai, q), "gateway": gateway}
            for i in range(args.requests):
                prompt = PROMPTS[i % len(PROMPTS)]
                order = ["direct", "gateway"] if i % 2 == 0 else ["gateway", "direct"]
                got = {n: paths[n](prompt) for n in order}
                for n, s in got.items():
                    single[n].append(s)
                print(f"{i + 1:>3}/{args.requests} " + "  ".join(
                    f"{n} {got[n].ttft * 1000:6.0f} ms {got[n].tok_per_s():5.1f} tok/s" for n in ("direct", "gateway")))
            t = {n: median([s.ttft for s in xs]) for n, xs in single.items()}
            r = {n: median([s.tok_per_s() for s in xs]) for n, xs in single.items()}
            same = sum(a.text == b.text for a, b in zip(single["gateway"], single["direct"], strict=True))
            lines.append(f"single stream: {args.requests} requests per path after {WARMUP} warm-ups, interleaved, max_tokens "
                         f"{MAX_TOKENS}, temperature 0, seed {SEED}; median completion tokens "
                         f"{median([float(s.tokens or 0) for s in single['direct']]):.0f}; answers identical: {same}/{args.requests}")
            stored, newest = stored_ttfts_after(db, newest)
            for n in ("direct", "gateway"):
                lines.append(f"single {n:<8} TTFT p50 {ms(t[n])}, p95 {ms(percentile([s.ttft for s in single[n]], 95))}, "
                             f"tok/s p50 {r[n]:6.1f}")
            # What the studio saw from vLLM (from its request to vLLM to the first token): the rest of the gateway's
            # TTFT is the studio's own work before that request (parse, key, checks, the store) and the relay after it.
            lines.append(f"single gateway, the studio's stored TTFT p50 {ms(median(stored))} ({len(stored)} answers): "
                         f"the studio's own share of the gateway's TTFT p50 {ms(t['gateway'] - median(stored))}")
            rt, rr = t["gateway"] / t["direct"], r["gateway"] / r["direct"]
            lines.append(f"ratio single gateway/direct: TTFT p50 {rt:.3f} ({verdict(rt, SINGLE_TTFT_TARGET)}), "
                         f"tok/s p50 {rr:.3f} ({verdict(rr, SINGLE_TPS_TARGET, at_most=False)})")
            # A ratio of two medians drawn from spreads of +-15% per request moves by a few per cent between runs; the
            # pairs were sent back to back with the same prompt, so the median of their own ratios is steadier.
            pt = median([g.ttft / d.ttft for g, d in zip(single["gateway"], single["direct"], strict=True)])
            pr = median([g.tok_per_s() / d.tok_per_s() for g, d in zip(single["gateway"], single["direct"], strict=True)])
            lines.append(f"paired single gateway/direct (median of the {args.requests} same-prompt pairs' ratios): "
                         f"TTFT {pt:.3f} ({verdict(pt, SINGLE_TTFT_TARGET)}), "
                         f"tok/s {pr:.3f} ({verdict(pr, SINGLE_TPS_TARGET, at_most=False)})")

        # ---- 2. concurrent batches ------------------------------------------------------------------------------
        if not args.skip_concurrent:
            n = args.concurrency
            runners: dict[str, Callable[[int, str], Any]] = {
                "direct": lambda i, q: direct(oai, q),
                "gateway": lambda i, q: gateway(q),
                "ui": lambda i, q: ui(q, i),  # stream i is browser tab i: its Gradio session lives across batches
            }
            names = list(runners)
            ttft: dict[str, list[float]] = {k: [] for k in names}
            tps: dict[str, list[float]] = {k: [] for k in names}
            walls: dict[str, list[float]] = {k: [] for k in names}
            echoes: list[float] = []
            failed: dict[str, list[str]] = {k: [] for k in names}  # concurrent requests that got an error
            studio_ttft: dict[str, list[float]] = {"gateway": [], "ui": []}
            _, newest = stored_ttfts_after(db, 0)
            print(f"concurrent: one untimed batch of {n} per path, then {args.rounds} round(s)...")
            for name in names:
                _, _, errs = batch(runners[name], n)
                failed[name] += errs
            _, newest = stored_ttfts_after(db, 0)
            for rnd in range(args.rounds):
                order = names[rnd % 3:] + names[: rnd % 3]
                for name in order:
                    out, wall, errs = batch(runners[name], n)
                    failed[name] += errs
                    samples = [o[0] if isinstance(o, tuple) else o for o in out]
                    if name == "ui":
                        echoes += [o[1] for o in out]
                    ttft[name] += [s.ttft for s in samples]
                    tps[name] += [s.tok_per_s() for s in samples if s.tokens]
                    walls[name].append(wall)
                    if name in studio_ttft:
                        got, newest = stored_ttfts_after(db, newest)
                        studio_ttft[name] += got
                    print(f"round {rnd + 1} {name:<8} TTFT p50 {ms(percentile([s.ttft for s in samples], 50))}, "
                          f"p95 {ms(percentile([s.ttft for s in samples], 95))}, wall {wall:5.1f} s"
                          + (f", {len(errs)} FAILED: {errs[0]}" if errs else ""))
            lines.append(f"concurrent: batches of {n} streams started together, {args.rounds} round(s) per path after one untimed "
                         f"batch each, order rotating; max_tokens {MAX_TOKENS}, temperature 0")
            lines.append("| path | streams | TTFT p50 | TTFT p95 | studio-stored TTFT p50 | first update p50 | batch wall p50 |")
            lines.append("|---|---|---|---|---|---|---|")
            for name in names:
                st = ms(percentile(studio_ttft[name], 50)) if studio_ttft.get(name) else "—"
                ec = ms(percentile(echoes, 50)) if name == "ui" else "—"
                lines.append(f"| {name} | {len(ttft[name])} | {ms(percentile(ttft[name], 50))} | {ms(percentile(ttft[name], 95))} "
                             f"| {st} | {ec} | {median(walls[name]):.1f} s |")
            d50 = percentile(ttft["direct"], 50)
            rg, ru = percentile(ttft["gateway"], 50) / d50, percentile(ttft["ui"], 50) / d50
            lines.append(f"ratio concurrent gateway/direct: TTFT p50 {rg:.3f} ({verdict(rg, GATEWAY_TTFT_TARGET)})")
            lines.append(f"ratio concurrent ui/direct: TTFT p50 {ru:.3f} ({verdict(ru, UI_TTFT_TARGET)})")
            for name, errs in failed.items():
                if errs:
                    problems.append(f"{name}: {len(errs)} concurrent requests failed, first: {errs[0]}")
        ui_http.close()
    except BaseException:
        broke = True
        raise
    finally:
        stop(app)  # counts are read with nothing writing
        manager.stop_all()
        try:
            counts = stored_counts(data_dir / "studio.db") if (data_dir / "studio.db").exists() else {}
            lost = any(counts.get(src, (0, 0)) != (sent[src], answered[src]) for src in sent)
            if (broke or problems or lost) and (data_dir / "app.log").exists():  # the studio's side outlives DATA_DIR
                kept = Path(tempfile.gettempdir()) / f"api_gateway-app-{int(time.time())}.log"
                kept.write_bytes((data_dir / "app.log").read_bytes())
                print(f"the studio's log is kept in {kept}", file=sys.stderr)
        finally:
            tmp.cleanup()

    for src, label in (("api", "gateway"), ("ui", "ui")):
        users, answers = counts.get(src, (0, 0))
        lines.append(f"stored ({label}, source '{src}'): {users} user messages for {sent[src]} sent, "
                     f"{answers} answers for {answered[src]} streamed"
                     + (f" ({sent[src] - answered[src]} requests failed)" if sent[src] != answered[src] else ""))
        if users != sent[src] or answers != answered[src]:
            problems.append(f"{label}: {sent[src]} sent / {users} stored, {answered[src]} answered / {answers} stored")
    lines.append("nothing lost, no request failed (stored = sent for the gateway and the ui): " + ("yes" if not problems else "NO: " + "; ".join(problems)))
    report("api_gateway", lines, machine_line)
    if problems:
        raise BenchError(f"{len(problems)} problem(s): {problems[0]}")
    return 0


if __name__ == "__main__":
    run_main(main)
