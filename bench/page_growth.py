"""What each kind of use leaves behind in a page: event listeners, DOM nodes and JS heap after each step.

bench/page_endurance.py measures a page after an hour; this one tells which action the growth comes from. One
studio (`launch.py`, temporary DATA_DIR, the bundled model), one Chromium page; after a forced GC the page's
listeners, DOM nodes (live, detached ones included) and heap are read after: the fresh page, the first round of
tabs (Gradio mounts each tab once), --repeat more tab rounds, --repeat language switches (Korean and back), --repeat
chat rounds, and --repeat visits of each tab alone. The table gives, per step kind, what one more of it adds.

    .venv/bin/python bench/page_growth.py [--repeat 3]

Appends a dated section to bench/results/page_growth.md. No assertion on the figures.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from common import machine, report, run_main, stop
from page_endurance import (
    TABS,
    chat_round,
    metrics,
    new_context,
    new_counts,
    open_page,
    open_tab,
    require_model,
    start_studio,
    switch_language,
    tabs_round,
)


def counters(cdp) -> tuple[int, int, float]:
    """(listeners, DOM nodes, JS heap MiB) after a forced GC."""
    cdp.send("HeapProfiler.collectGarbage")
    time.sleep(0.5)
    m = metrics(cdp)
    return int(m["JSEventListeners"]), int(m["Nodes"]), m["JSHeapUsedSize"] / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    require_model()
    machine_before = machine()
    print(f"machine: {machine_before}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-growth-"))
    app = None
    try:
        app, port = start_studio(tmp)
        from playwright.sync_api import sync_playwright

        rows: list[tuple[str, int, tuple[int, int, float], tuple[int, int, float]]] = []
        with sync_playwright() as pw:
            browser, context = new_context(pw)
            page, cdp = open_page(context, port)
            counts = new_counts()
            rnd = random.Random(1)
            now = counters(cdp)
            print(f"fresh: {now}", flush=True)

            def step(name: str, n: int, action) -> None:
                nonlocal now
                before = now
                for _ in range(n):
                    action()
                now = counters(cdp)
                rows.append((name, n, before, now))
                print(f"{name} x{n}: {now}", flush=True)

            fresh = now
            step("first round of tabs (mounts each)", 1, lambda: tabs_round(page, rnd, counts))
            step("round of tabs", args.repeat, lambda: tabs_round(page, rnd, counts))
            step("language switch (Korean and back)", args.repeat, lambda: switch_language(page, rnd, counts))
            step("chat round", args.repeat * 2, lambda: chat_round(page, rnd, counts))

            def visit(tab: str):
                def go() -> None:
                    open_tab(page, tab)
                    time.sleep(4)
                    open_tab(page, "chat")
                    time.sleep(1)
                return go

            for tab in TABS:
                step(f"visit of {tab}", args.repeat, visit(tab))
            browser.close()

        lines = [f"command: .venv/bin/python bench/page_growth.py --repeat {args.repeat}",
                 f"fresh page: {fresh[0]} listeners, {fresh[1]} DOM nodes, {fresh[2]:.1f} MiB heap",
                 "| step | times | listeners added, each | DOM nodes added, each | heap MiB added, each | listeners after |",
                 "|---|---|---|---|---|---|"]
        for name, n, before, after in rows:
            lines.append(f"| {name} | {n} | {(after[0] - before[0]) / n:+.0f} | {(after[1] - before[1]) / n:+.0f} | "
                         f"{(after[2] - before[2]) / n:+.2f} | {after[0]} |")
        report("page_growth", lines, machine_before)
        return 0
    finally:
        stop(app)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
