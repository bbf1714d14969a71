"""Dataset import at scale: 100k ShareGPT rows through the studio's import vs plain pandas, and the first page in a browser.

1. Writes N (default 100,000) ShareGPT rows (1-3 exchanges, English and Korean, ~5% near duplicates) to JSONL.
2. Baseline: `pandas.read_json(path, lines=True)` of the same file (median of --runs).
3. Studio, same file: `inspect_file` (read + detect + normalise + validate, token counts with the bundled model's
   tokenizer through the trainer's chat template) and the full `import_file` (the above + version file + the SQL
   working copy), each --runs times on a fresh SQLite DB. Prints rows/s and the ratios to pandas (target <= 3x
   for read + normalise + validate).
4. Starts the app on that DB (`--no-serve`) and measures in Chromium the time from picking the 100k-row dataset to
   its first page of rows on screen, and from typing the last page number to that page on screen.

Appends a dated section to bench/results/dataset_import.md. No assertion on timings.

    .venv/bin/python bench/dataset_import.py [--rows 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
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
    stop,
    wait_http_ok,
)

TOPICS_EN = ["LoRA rank", "learning rate", "eval split", "vLLM", "context length", "packing", "QLoRA", "tokenizers"]
TOPICS_KO = ["로라 랭크", "학습률", "평가 분할", "컨텍스트 길이", "패킹", "양자화", "토크나이저", "데이터 정제"]


def make_file(path: Path, n: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    previous: list[dict[str, str]] = []
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            ko = i % 3 == 0
            topics = TOPICS_KO if ko else TOPICS_EN
            turns: list[dict[str, str]] = []
            for k in range(rnd.randint(1, 3)):
                topic = rnd.choice(topics)
                if ko:
                    q = f"{topic}에 대해 알려 주세요 ({i}-{k})"
                    a = f"{topic}은(는) 학습 품질에 영향을 줍니다. 예시 {i}의 {k}번째 답입니다.\n팁: 작게 시작하세요."
                else:
                    q = f"Tell me about {topic} (example {i}, turn {k})."
                    a = f"{topic.capitalize()} matters for quality; here is answer {k} of example {i}.\nTip: start small."
                turns += [{"from": "human", "value": q}, {"from": "gpt", "value": a * rnd.randint(1, 3)}]
            row = {"conversations": turns}
            if i % 20 == 19:  # a near duplicate of the previous row: same words, other case and punctuation
                row = {"conversations": [{"from": t["from"], "value": t["value"].upper().replace(".", "!")} for t in previous]}
            previous = row["conversations"]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def time_pandas(path: Path) -> float:
    import pandas as pd

    t0 = time.perf_counter()
    frame = pd.read_json(path, lines=True)
    took = time.perf_counter() - t0
    assert len(frame) > 0
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not (MODEL_CACHE / MODEL / "tokenizer.json").is_file():
        raise BenchError(f"{MODEL_CACHE / MODEL} is missing: start the app once (it converts the bundled model)")
    machine_before = machine()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ds-"))
    proc = None
    try:
        from engines.datasets.render import ModelFormat
        from engines.datasets.versions import import_file, inspect_file
        from engines.settings import load_settings
        from storage import connect

        src = tmp / "sharegpt.jsonl"
        make_file(src, args.rows)
        size_mb = src.stat().st_size / 2**20
        fmt = ModelFormat(MODEL_CACHE / MODEL)
        pandas_s, inspect_s, import_s = [], [], []
        for i in range(args.runs):
            pandas_s.append(time_pandas(src))
            t0 = time.perf_counter()
            report = inspect_file(src, model_format=fmt, max_tokens=2048)
            inspect_s.append(time.perf_counter() - t0)
            settings = load_settings(data_dir=tmp / f"data{i}", model_cache_dir=MODEL_CACHE)
            db = connect(settings.db_url)
            t0 = time.perf_counter()
            from engines import accounts

            imported = import_file(settings, src, "bench-100k", actor=accounts.bootstrap(None), valid_only=True,
                                   model_format=fmt, max_tokens=2048)
            import_s.append(time.perf_counter() - t0)
            db.close()
            print(f"run {i + 1}: pandas {pandas_s[-1]:.2f} s, inspect {inspect_s[-1]:.2f} s, import {import_s[-1]:.2f} s "
                  f"({imported.version.row_count} rows kept, {len(report.problems)} findings)", flush=True)
        p, ins, imp = median(pandas_s), median(inspect_s), median(import_s)

        # The first page of the 100k-row dataset in a real browser.
        from playwright.sync_api import sync_playwright

        port = free_port()
        env = {**os.environ, "DATA_DIR": str(tmp / "data0"), "MODEL_CACHE_DIR": str(MODEL_CACHE), "PORT": str(port)}
        proc = spawn([PYTHON, "launch.py", "--no-serve"], env=env, log=tmp / "app.log")
        wait_http_ok(f"http://127.0.0.1:{port}/", proc, 90, log=tmp / "app.log")
        first, last = [], []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
            for _ in range(args.runs):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator("#app-ready").wait_for(state="attached", timeout=60_000)
                page.locator("#tab-datasets-button").click()
                page.locator("#ds-picker input").click()
                option = page.locator("[role=option]", has_text="bench-100k")
                t0 = time.perf_counter()
                option.click()
                page.locator("#ds-page-info", has_text="Page 1 of").wait_for(timeout=60_000)
                page.locator("#ds-table [role=gridcell]").nth(1).wait_for(timeout=60_000)
                first.append(time.perf_counter() - t0)
                pages = int(page.locator("#ds-page-info").inner_text().split(" of ")[1].split()[0].replace(",", ""))
                box = page.locator("#ds-page input")
                box.fill(str(pages))
                t0 = time.perf_counter()
                box.press("Enter")
                page.locator("#ds-page-info", has_text=f"Page {pages:,} of").wait_for(timeout=60_000)
                last.append(time.perf_counter() - t0)
                page.close()
            browser.close()
        lines = [
            f"file: {args.rows:,} ShareGPT rows, {size_mb:.1f} MiB JSONL (1-3 exchanges, a third Korean, 5% near duplicates)",
            f"pandas.read_json(lines=True): {p:.2f} s ({args.rows / p:,.0f} rows/s)",
            f"studio read + detect + normalise + validate (with real token counts): {ins:.2f} s ({args.rows / ins:,.0f} rows/s) "
            f"-> {ins / p:.2f}x pandas (target <= 3x: {'met' if ins / p <= 3 else 'NOT met'})",
            f"studio full import (+ version file + SQL working copy): {imp:.2f} s ({args.rows / imp:,.0f} rows/s) -> {imp / p:.2f}x pandas",
            f"browser, pick the dataset -> first page of rows on screen: median {median(first) * 1000:.0f} ms "
            f"(runs: {', '.join(f'{x * 1000:.0f}' for x in first)})",
            f"browser, type the last page number -> that page on screen: median {median(last) * 1000:.0f} ms",
            f"load avg at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        ]
        print("\n".join(lines))
        path = append_results("dataset_import", lines, machine_before)
        print(f"appended to {path.relative_to(ROOT)}")
        return 0
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    run_main(main)
