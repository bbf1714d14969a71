"""A page left open: one Chromium tab driven through --minutes of scripted use, measured fresh and after.

Starts the studio (`launch.py`, temporary DATA_DIR, the bundled model on the CPU vLLM server), opens one page in
Debian's Chromium and measures it fresh:

- idle renderer CPU on the Chat tab over --idle-s seconds: the renderer processes' CPU time from /proc (% of one
  core), and the page's main-thread task time (CDP `Performance.getMetrics` TaskDuration) per second;
- JS heap used (after a forced GC, and as found), DOM nodes (live, including detached ones still referenced),
  nodes in the document, JS event listeners, the renderer's resident memory;
- Stop latency during a stream (--stops times): a pointer click on Stop → the click handled in the page → the
  answer's text stops changing → Send is back (or the "stopped" mark, where Send never left).

Then the same page is used for --minutes: chats (send and stream, some stopped, regenerate, reopen older
conversations, search and clear the search), every tab opened in turn (Datasets, Fine-tune, Compare and its batch
sub-tab, History, Models, Team) and back to Chat, the language switched to Korean and back now and then. The
same figures are taken again, and the ratios after/fresh printed (targets: idle CPU and heap <= 1.5x, Stop < 1 s).
Last, the page is closed and a new one opened on the same studio (every tab once): after/that new page is what the
old page accumulated, apart from what the hour's data (conversations, runs) costs any page.

    .venv/bin/python bench/page_endurance.py [--minutes 60] [--idle-s 30] [--stops 3]

Appends a dated section to bench/results/page_endurance.md. No assertion on timings.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

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

# As tests/conftest.py launches Chromium for the e2e tests.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
TABS = ["datasets", "finetune", "compare", "history", "models", "account"]
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
LONG_PROMPT = ("Write a very long story about a lighthouse keeper #{tag} and a storm. Use at least 800 words, many "
               "chapters and lots of detail.")
SHORT_PROMPTS = ["What is LoRA in one paragraph? ({tag})", "Give me three tips for learning rates. ({tag})",
                 "Explain what an eval split is. ({tag})", "Name five fruits and describe each. ({tag})",
                 "How does a tokenizer work? ({tag})"]
SEARCH_WORDS = ["LoRA", "tips", "lighthouse", "fruits", "tokenizer"]

# Records, with Date.now() (the same wall clock as Python's time.time()), when the newest answer's text last
# changed, when a Stop click reached the page, when the "stopped" mark showed and when Send was visible again.
RECORDER_JS = """
() => {
  const box = document.querySelector('#chatbot');
  const rec = {textAt: Date.now(), len: 0, text: '', clickAt: null, stoppedAt: null, statsAt: null, sendBackAt: null, bots: 0, changes: 0};
  if (window.__bench && window.__bench.obs) window.__bench.obs.forEach(o => o.disconnect());
  window.__bench = rec;
  const visible = el => !!el && el.offsetParent !== null && getComputedStyle(el).visibility !== 'hidden';
  const read = () => {
    const bots = box.querySelectorAll('[data-testid="bot"] .message-content');
    const last = bots[bots.length - 1];
    let text = '';
    if (last) { const c = last.cloneNode(true); c.querySelectorAll('.msg-stats').forEach(s => s.remove()); text = c.textContent.trim(); }
    if (text !== rec.text || bots.length !== rec.bots) {
      rec.text = text; rec.len = text.length; rec.bots = bots.length; rec.textAt = Date.now(); rec.changes += 1;
    }
    if (rec.clickAt && !rec.stoppedAt && last && last.querySelector('.msg-stopped')) rec.stoppedAt = Date.now();
    if (rec.clickAt && !rec.statsAt && last && last.querySelector('.msg-stats')) rec.statsAt = Date.now();
  };
  const send = () => {
    if (rec.clickAt && !rec.sendBackAt && visible(document.querySelector('#send-btn'))
        && !visible(document.querySelector('#stop-btn'))) rec.sendBackAt = Date.now();
  };
  const o1 = new MutationObserver(read); o1.observe(box, {subtree: true, childList: true, characterData: true});
  const row = document.querySelector('#send-btn').parentElement.parentElement;
  const o2 = new MutationObserver(send); o2.observe(row, {subtree: true, childList: true, attributes: true});
  // On the document: Gradio may replace the button element while the page re-renders.
  const onDown = e => { if (!rec.clickAt && e.target.closest && e.target.closest('#stop-btn')) rec.clickAt = Date.now(); };
  document.addEventListener('click', onDown, true);
  rec.obs = [o1, o2, {disconnect: () => document.removeEventListener('click', onDown, true)}];
  read();
}
"""
UNRECORD_JS = "() => { if (window.__bench && window.__bench.obs) window.__bench.obs.forEach(o => o.disconnect()); window.__bench = null; }"


# ---- the renderer's CPU and memory, from /proc ---------------------------------------------------------------

def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def renderer_pids(tag: str) -> list[int]:
    """Renderer processes of the Chromium started with the switch `tag` (its descendants with --type=renderer)."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    roots = {p for p in pids if tag.encode() in _cmdline(p) and b"--type=" not in _cmdline(p)}
    out = []
    for p in pids:
        if b"--type=renderer" not in _cmdline(p):
            continue
        q, hops = p, 0
        while q > 1 and hops < 10:
            q, hops = _ppid(q), hops + 1
            if q in roots:
                out.append(p)
                break
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, ValueError, IndexError):
            pass
    return total / TICK


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
    return total / 2**20


# ---- measurements --------------------------------------------------------------------------------------------

def metrics(cdp) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def snapshot(page, cdp, tag: str, idle_s: float) -> dict[str, float]:
    """Idle CPU on the Chat tab over `idle_s`, then heap, DOM nodes and listeners."""
    open_tab(page, "chat")
    page.mouse.move(5, 5)
    time.sleep(3)  # let the tab switch's own work settle
    pids = renderer_pids(tag)
    requests: list[str] = []
    count = lambda req: requests.append(req.url)  # noqa: E731
    page.on("request", count)
    m0, c0, t0 = metrics(cdp), cpu_seconds(pids), time.monotonic()
    page.wait_for_timeout(idle_s * 1000)  # (Playwright's own wait: request events are delivered meanwhile)
    m1, c1, t1 = metrics(cdp), cpu_seconds(pids), time.monotonic()
    page.remove_listener("request", count)
    wall = t1 - t0
    heap_found = m1["JSHeapUsedSize"]
    cdp.send("HeapProfiler.collectGarbage")
    time.sleep(1)
    m2 = metrics(cdp)
    in_doc = page.evaluate("() => document.getElementsByTagName('*').length")
    return {
        "cpu_pct": 100 * (c1 - c0) / wall, "task_pct": 100 * (m1["TaskDuration"] - m0["TaskDuration"]) / wall,
        "heap_mib": m2["JSHeapUsedSize"] / 2**20, "heap_found_mib": heap_found / 2**20,
        "nodes": m2["Nodes"], "doc_nodes": in_doc, "listeners": m2["JSEventListeners"],
        "rss_mib": rss_mib(renderer_pids(tag)), "renderers": len(pids),
        "layouts_per_s": (m1["LayoutCount"] - m0["LayoutCount"]) / wall,
        "styles_per_s": (m1["RecalcStyleCount"] - m0["RecalcStyleCount"]) / wall,
        "requests_per_s": len(requests) / wall,
    }


def profile_top(page, cdp, seconds: float, n: int = 12) -> list[str]:
    """A CPU profile of the idle page (CDP Profiler): the functions with the most self time, for finding causes."""
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": 1000})
    cdp.send("Profiler.start")
    page.wait_for_timeout(seconds * 1000)
    prof = cdp.send("Profiler.stop")["profile"]
    cdp.send("Profiler.disable")
    by_id = {node["id"]: node for node in prof["nodes"]}
    deltas = dict.fromkeys(by_id, 0)
    for sample, delta in zip(prof["samples"], prof["timeDeltas"], strict=False):
        deltas[sample] += delta
    self_ms: dict[str, float] = {}
    for node_id, node in by_id.items():
        frame = node["callFrame"]
        key = f"{frame['functionName'] or '(anonymous)'} {frame['url'].rsplit('/', 1)[-1]}:{frame['lineNumber']}:{frame['columnNumber']}"
        self_ms[key] = self_ms.get(key, 0) + deltas[node_id] / 1000
    top = sorted(self_ms.items(), key=lambda kv: -kv[1])[:n]
    return [f"{ms:8.1f} ms  {key}" for key, ms in top]


def stop_latency(page, cdp) -> dict[str, float]:
    """One long answer, stopped with a click once it streams: how long the page took to take it in and end the stream.

    `cancelled` is False when the answer ran to its end anyway (the click reached the page too late, or the
    cancellation reached the server too late). `update_ms`: the page's main-thread time per change of the answer."""
    open_tab(page, "chat")
    click(page, "#new-chat")
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"bot\"]').length === 0", timeout=30_000)
    page.evaluate(RECORDER_JS)
    page.locator("#message-box textarea").fill(LONG_PROMPT.format(tag=uuid.uuid4().hex[:8]))
    tasks0 = metrics(cdp)["TaskDuration"]
    page.locator("#message-box textarea").press("Enter")
    page.wait_for_function("() => window.__bench.bots >= 1 && window.__bench.len >= 60", timeout=300_000, polling=100)
    time.sleep(1.0)  # mid-stream
    # A DOM click, as in tests/e2e: Playwright's pointer click first waits for the button to be stable over
    # animation frames, which a busy page withholds; a person's click does not wait for that.
    clicked = time.time()
    page.locator("#stop-btn").dispatch_event("click", timeout=180_000)
    # Ended: no change of the answer's text for 4 s, and Send back (or the stopped mark where Send never left).
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        rec = page.evaluate("() => { const r = window.__bench; return {textAt: r.textAt, clickAt: r.clickAt,"
                            " stoppedAt: r.stoppedAt, statsAt: r.statsAt, sendBackAt: r.sendBackAt, len: r.len, changes: r.changes}; }")
        if time.time() * 1000 - rec["textAt"] > 4000 and (rec["sendBackAt"] or rec["stoppedAt"] or rec["statsAt"]):
            break
        time.sleep(0.25)
    else:
        raise BenchError(f"the answer did not stop within 180 s of the Stop click: {rec}, clicked at {clicked * 1000:.0f}")
    tasks1 = metrics(cdp)["TaskDuration"]
    page.evaluate(UNRECORD_JS)
    ms = lambda at: (at - clicked * 1000) / 1000 if at else float("nan")  # noqa: E731
    back = rec["sendBackAt"] or rec["stoppedAt"] or rec["statsAt"]
    return {"handled_s": ms(rec["clickAt"]), "text_s": max(0.0, ms(rec["textAt"])), "back_s": ms(back),
            "cancelled": bool(rec["stoppedAt"]), "update_ms": 1000 * (tasks1 - tasks0) / max(rec["changes"], 1),
            "changes": rec["changes"]}


def stop_latencies(page, cdp, n: int) -> list[dict[str, float]]:
    out: list[dict[str, float]] = []
    for _ in range(n):
        got = stop_latency(page, cdp)
        out.append(got)
        print(f"  stop: handled {got['handled_s']:.2f} s, text still changing {got['text_s']:.2f} s, send back "
              f"{got['back_s']:.2f} s, {'cancelled' if got['cancelled'] else 'NOT cancelled: ran to its end'}, "
              f"{got['update_ms']:.1f} ms of main thread per answer change ({got['changes']} changes)", flush=True)
    return out


# ---- scripted use --------------------------------------------------------------------------------------------

def click(page, selector: str) -> None:
    """A DOM click, as a person's click lands: Playwright's own click first waits for the element to be stable over
    animation frames, which a page busy re-rendering withholds for minutes on a loaded machine."""
    page.locator(selector).first.dispatch_event("click", timeout=120_000)


def open_tab(page, tab: str) -> None:
    click(page, f"#tab-{tab}-button")
    page.locator(f"#tab-{tab}").wait_for(state="visible", timeout=120_000)


def wait_answer(page, cap_s: float) -> bool:
    """Wait up to `cap_s` for the newest answer to carry its stats line (finished); True if it did."""
    try:
        page.locator('#chatbot [data-testid="bot"]').last.locator(".msg-stats").wait_for(timeout=cap_s * 1000)
        return True
    except Exception:  # noqa: BLE001 - still streaming: the caller stops it
        return False


def click_stop(page) -> None:
    """Stop, unless the answer ended meanwhile (Stop is then hidden again); then wait for the answer's stats line."""
    if page.locator("#stop-btn").is_visible():
        page.locator("#stop-btn").dispatch_event("click", timeout=120_000)
    wait_answer(page, 180)


def chat_round(page, rnd: random.Random, counts: dict[str, int]) -> None:
    """One turn of chat use: maybe a new or an older conversation, a message, its answer (or Stop), maybe more."""
    open_tab(page, "chat")
    choice = rnd.random()
    options = page.locator("#conversation-list label")
    if choice < 0.3:
        click(page, "#new-chat")
    elif options.count() > 1:
        options.nth(rnd.randrange(min(options.count(), 8))).dispatch_event("click", timeout=120_000)
        counts["opened"] += 1
        time.sleep(2)
    page.locator("#message-box textarea").fill(rnd.choice(SHORT_PROMPTS).format(tag=uuid.uuid4().hex[:6]))
    page.locator("#message-box textarea").press("Enter")
    counts["sent"] += 1
    page.locator('#chatbot [data-testid="bot"]').last.wait_for(timeout=120_000)
    if rnd.random() < 0.3:
        time.sleep(rnd.uniform(2, 5))
        click_stop(page)
        counts["stopped"] += 1
    elif not wait_answer(page, 40):
        click_stop(page)
        counts["stopped"] += 1
    time.sleep(rnd.uniform(2, 5))  # reading
    if rnd.random() < 0.35:
        click(page, "#regenerate-btn")
        counts["regenerated"] += 1
        time.sleep(1)
        if not wait_answer(page, 40):
            click_stop(page)
            counts["stopped"] += 1
    if rnd.random() < 0.35:
        search = page.locator("#chat-search textarea, #chat-search input").first
        search.fill(rnd.choice(SEARCH_WORDS))
        time.sleep(2)
        search.fill("")
        time.sleep(1)
        counts["searched"] += 1


def tabs_round(page, rnd: random.Random, counts: dict[str, int]) -> None:
    """Every other tab in turn, a few seconds each, and back to Chat."""
    for tab in TABS:
        open_tab(page, tab)
        if tab == "compare" and rnd.random() < 0.5:
            click(page, "#tab-compare-batch-button")
            time.sleep(2)
            click(page, "#tab-compare-live-button")
        time.sleep(rnd.uniform(3, 8))
        counts["tabs"] += 1
    open_tab(page, "chat")


def switch_language(page, rnd: random.Random, counts: dict[str, int]) -> None:
    """Korean, a few seconds on two tabs, then English again."""
    for label, wait_text in (("한국어", "보내기"), ("English", "Send")):
        page.locator("#language-switch label", has_text=label).dispatch_event("click", timeout=120_000)
        page.locator("#send-btn", has_text=wait_text).wait_for(state="attached", timeout=120_000)
        open_tab(page, "finetune")
        time.sleep(3)
        open_tab(page, "chat")
        time.sleep(2)
    counts["language"] += 1


USE_COUNTS = ("sent", "stopped", "regenerated", "opened", "searched", "tabs", "language", "rounds", "errors")


def new_counts() -> dict[str, int]:
    """The tallies `chat_round`, `tabs_round` and `switch_language` keep of what they did."""
    return dict.fromkeys(USE_COUNTS, 0)


def require_model() -> None:
    if not (MODEL_CACHE / MODEL / "tokenizer.json").is_file():
        raise BenchError(f"{MODEL_CACHE / MODEL} is missing: start the app once (it converts the bundled model)")


def start_studio(tmp: Path):  # noqa: ANN201 - the spawned process, as common.spawn returns it
    """`launch.py` on a temporary DATA_DIR under `tmp` with the bundled model: (process, port) once its page answers."""
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(tmp / "data"), "MODEL_CACHE_DIR": str(MODEL_CACHE), "PORT": str(port),
           "VLLM_START_TIMEOUT": "600"}
    print("starting the studio (launch.py, bundled model on the CPU vLLM server)...", flush=True)
    app = spawn([PYTHON, "launch.py"], env=env, log=tmp / "app.log")
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/", app, 180, log=tmp / "app.log")
    except BaseException:
        stop(app)
        raise
    return app, port


def new_context(pw, tag: str = ""):  # noqa: ANN001, ANN201 - Playwright objects
    """Debian's Chromium as tests/conftest.py launches it (plus `tag`, to find its renderers): (browser, context)."""
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[*CHROMIUM_ARGS, *([tag] if tag else [])])
    return browser, browser.new_context(viewport={"width": 1400, "height": 950}, locale="en-US")


def open_page(context, port: int):  # noqa: ANN001, ANN201 - Playwright objects
    """A new page on the studio, once its server is ready and its load event done: (page, CDP session)."""
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"http://127.0.0.1:{port}/")
    page.locator("#server-status-box .server-pill.ready").first.wait_for(timeout=600_000)
    page.locator("#app-ready").wait_for(state="attached", timeout=120_000)
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    return page, cdp


def use(page, minutes: float, seed: int) -> dict[str, int]:
    rnd = random.Random(seed)
    counts = new_counts()
    end = time.monotonic() + minutes * 60
    while time.monotonic() < end:
        steps = [chat_round, tabs_round] + ([switch_language] if counts["rounds"] % 4 == 3 else [])
        for step in steps:
            if time.monotonic() >= end:
                break
            try:
                step(page, rnd, counts)
            except Exception as exc:  # noqa: BLE001 - a slow page misses a wait now and then: note it, carry on
                counts["errors"] += 1
                lines = str(exc).splitlines()
                print(f"  {step.__name__}: {exc.__class__.__name__}: {' | '.join(lines[:3] + lines[-2:])[:400]}", flush=True)
                page.keyboard.press("Escape")
        counts["rounds"] += 1
        left = (end - time.monotonic()) / 60
        print(f"  round {counts['rounds']}: {counts} ({max(left, 0):.1f} min left)", flush=True)
    return counts


# ---- main ----------------------------------------------------------------------------------------------------

def fmt_snapshot(name: str, s: dict[str, float]) -> str:
    return (f"| {name} | {s['cpu_pct']:.1f} | {s['task_pct']:.1f} | {s['heap_mib']:.1f} | {s['heap_found_mib']:.1f} | "
            f"{s['nodes']:.0f} | {s['doc_nodes']:.0f} | {s['listeners']:.0f} | {s['rss_mib']:.0f} | "
            f"{s['layouts_per_s']:.2f} | {s['styles_per_s']:.2f} | {s['requests_per_s']:.2f} |")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--idle-s", type=float, default=30)
    ap.add_argument("--stops", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile-s", type=float, default=0, help="also print the top functions of an idle CPU profile this long")
    args = ap.parse_args()
    require_model()
    machine_before = machine()
    print(f"machine: {machine_before}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-page-"))
    app = None
    try:
        app, port = start_studio(tmp)

        from playwright.sync_api import sync_playwright

        tag = f"--bench-page-endurance={uuid.uuid4().hex}"
        with sync_playwright() as pw:
            browser, context = new_context(pw, tag)
            page, cdp = open_page(context, port)
            print("fresh page: idle, then Stop...", flush=True)
            fresh = snapshot(page, cdp, tag, args.idle_s)
            print(f"fresh: {fresh}", flush=True)
            if args.profile_s:
                print("fresh idle profile:\n" + "\n".join(profile_top(page, cdp, args.profile_s)), flush=True)
            fresh_stops = stop_latencies(page, cdp, args.stops)
            # Gradio mounts a tab the first time it is shown and keeps it: measured once after every tab has been
            # opened, the page's one-time growth is told apart from what grows with an hour of use.
            print("every tab opened once, then idle...", flush=True)
            tabs_round(page, random.Random(args.seed), dict.fromkeys(("tabs",), 0))
            warm = snapshot(page, cdp, tag, args.idle_s)
            print(f"warm: {warm}", flush=True)
            print(f"scripted use for {args.minutes:g} min...", flush=True)
            started = time.monotonic()
            counts = use(page, args.minutes, args.seed)
            used_min = (time.monotonic() - started) / 60
            print("after: idle, then Stop...", flush=True)
            after = snapshot(page, cdp, tag, args.idle_s)
            print(f"after: {after}", flush=True)
            if args.profile_s:
                print("after idle profile:\n" + "\n".join(profile_top(page, cdp, args.profile_s)), flush=True)
            after_stops = stop_latencies(page, cdp, args.stops)
            # The hour also left data behind (conversations, datasets, runs) that any page now shows: a new page on
            # the same studio, every tab opened once, tells what the old page accumulated from what the data costs.
            print("a new page on the same studio, every tab opened once, then idle...", flush=True)
            page.close()
            page, cdp = open_page(context, port)
            tabs_round(page, random.Random(args.seed), dict.fromkeys(("tabs",), 0))
            reopened = snapshot(page, cdp, tag, args.idle_s)
            print(f"reopened: {reopened}", flush=True)
            browser.close()

        def stop_line(name: str, xs: list[dict[str, float]]) -> str:
            if not xs:
                return f"{name}: no Stop measured (every answer finished first)"
            return (f"{name}: click handled median {median([x['handled_s'] for x in xs]):.2f} s, answer stops changing "
                    f"median {median([x['text_s'] for x in xs]):.2f} s (max {max(x['text_s'] for x in xs):.2f}), Send back "
                    f"median {median([x['back_s'] for x in xs]):.2f} s (max {max(x['back_s'] for x in xs):.2f}); "
                    f"{sum(not x['cancelled'] for x in xs)} of {len(xs)} ran to their end anyway; page main thread "
                    f"{median([x['update_ms'] for x in xs]):.1f} ms per change of the streamed answer (median)")

        cpu_r, task_r = ratio(after["cpu_pct"], fresh["cpu_pct"]), ratio(after["task_pct"], fresh["task_pct"])
        heap_r = ratio(after["heap_mib"], fresh["heap_mib"])
        after_stop = max((x["text_s"] if x["cancelled"] else float("inf") for x in after_stops), default=float("nan"))
        lines = [
            f"command: .venv/bin/python bench/page_endurance.py --minutes {args.minutes:g} --idle-s {args.idle_s:g} "
            f"--stops {args.stops} --seed {args.seed} --profile-s {args.profile_s:g}",
            f"scripted use: {used_min:.1f} min, {counts}",
            "| page | renderer CPU % of a core (idle) | main-thread tasks % (idle) | JS heap MiB (after GC) | JS heap MiB (as found) "
            "| DOM nodes | in document | listeners | renderer RSS MiB | layouts/s | style recalcs/s | requests/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            fmt_snapshot("fresh", fresh),
            fmt_snapshot("every tab opened once", warm),
            fmt_snapshot(f"after {used_min:.0f} min", after),
            fmt_snapshot("a new page then, every tab opened once", reopened),
            f"idle renderer CPU after/fresh: {cpu_r:.2f}x (main-thread tasks {task_r:.2f}x) (target <= 1.5x: "
            f"{'met' if cpu_r <= 1.5 else 'NOT met'})",
            f"JS heap after/fresh: {heap_r:.2f}x (target <= 1.5x: {'met' if heap_r <= 1.5 else 'NOT met'})",
            f"after/every tab opened once (what grew with use, not with the first visit of each tab): idle CPU "
            f"{ratio(after['cpu_pct'], warm['cpu_pct']):.2f}x, JS heap {ratio(after['heap_mib'], warm['heap_mib']):.2f}x, "
            f"DOM nodes {ratio(after['nodes'], warm['nodes']):.2f}x, listeners {ratio(after['listeners'], warm['listeners']):.2f}x",
            f"after/a new page then (every tab opened once; same data): idle CPU "
            f"{ratio(after['cpu_pct'], reopened['cpu_pct']):.2f}x, JS heap {ratio(after['heap_mib'], reopened['heap_mib']):.2f}x, "
            f"DOM nodes {ratio(after['nodes'], reopened['nodes']):.2f}x, listeners "
            f"{ratio(after['listeners'], reopened['listeners']):.2f}x",
            f"DOM nodes after/fresh: {ratio(after['nodes'], fresh['nodes']):.2f}x; listeners after/fresh: "
            f"{ratio(after['listeners'], fresh['listeners']):.2f}x",
            stop_line("Stop, fresh page", fresh_stops),
            stop_line(f"Stop, after {used_min:.0f} min", after_stops),
            f"Stop after the scripted use, worst click → answer stops changing: {after_stop:.2f} s (inf: not cancelled) (target < 1 s: "
            f"{'met' if after_stop < 1 else 'NOT met'})",
        ]
        report("page_endurance", lines, machine_before)
        return 0
    finally:
        stop(app)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
