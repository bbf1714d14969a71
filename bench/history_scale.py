"""History at scale: 1M messages in 50k conversations (plus runs, versions, battles, evaluations) in SQLite.

Builds the database through the studio's own migrations (so the FTS5 index is filled by its triggers, as in use),
then times, --repeat times each (p50/p95):

  timeline      the first page of the History timeline (every kind, newest first)
  timeline-deep the 20th page, reached through keyset cursors
  model filter  the first page for one model
  search rare   full-text search for a word in ~50 messages
  search common full-text search for a word in ~1 message in 20 (many hits; newest 50 shown)
  search ko     a Korean word given without its particle (수도 → 수도는)
  sidebar       Chat's sidebar list (newest 200 conversations)
  baseline      the same rare-word search done the naive way (LIKE over every message), run 3 times

Target: every History query p95 < 50 ms. Figures are appended to bench/results/history_scale.md.
Run: .venv/bin/python bench/history_scale.py [--messages 1000000] [--conversations 50000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import machine, report, run_main

TARGET_MS = 50.0
WORDS_EN = ("model", "train", "answer", "question", "token", "adapter", "dataset", "learning", "rate", "batch", "server",
            "memory", "korean", "english", "prompt", "reply", "loss", "curve", "GPU", "cache", "fast", "slow", "good",
            "better", "write", "read", "code", "python", "tensor", "layer", "weight", "chat", "history", "search")
WORDS_KO = ("모델", "학습", "답변", "질문", "토큰", "어댑터", "데이터셋", "서버", "메모리", "한국어", "영어", "프롬프트", "손실",
            "수도는", "서울", "부산", "빠르게", "느리게", "좋은", "코드", "파이썬", "검색", "기록", "채팅")
RARE = "quokkaberry"
COMMON = "sunflower"


def build(path: Path, n_messages: int, n_convs: int, seed: int = 7) -> None:
    from storage import connect

    connect(f"sqlite:///{path}").close()  # the real schema: migrations, indexes, FTS5 table and triggers
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    start = dt.datetime(2025, 1, 1)
    per = n_messages // n_convs
    models = [f"model-{i}" for i in range(20)]
    convs, msgs = [], []
    mid = 0
    rare_left = 50
    for c in range(1, n_convs + 1):
        at = start + dt.timedelta(minutes=10 * c)
        model = models[c % len(models)]
        convs.append((c, f"chat {c} about {rng.choice(WORDS_EN)}", model, None, str(at), str(at + dt.timedelta(minutes=per))))
        for k in range(per):
            mid += 1
            words = rng.choices(WORDS_KO if c % 3 == 0 else WORDS_EN, k=rng.randint(8, 30))
            if rng.random() < 0.05:
                words.append(COMMON)
            if rare_left and rng.random() < 50 / n_messages * 2:
                words.append(RARE)
                rare_left -= 1
            msgs.append((mid, c, "user" if k % 2 == 0 else "assistant", " ".join(words), model if k % 2 else None,
                         str(at + dt.timedelta(minutes=k)), 1))
        if len(msgs) >= 50_000:
            _flush(con, convs, msgs)
            convs, msgs = [], []
    _flush(con, convs, msgs)
    now = start + dt.timedelta(minutes=10 * n_convs)
    con.executemany("INSERT INTO training_runs (id, name, base_model, dataset, method, spec, status, run_dir, created_at) "
                    "VALUES (?, ?, ?, 'd.jsonl', 'lora', '{}', 'completed', '/tmp/x', ?)",
                    [(i, f"run-{i}", models[i % 20], str(now - dt.timedelta(hours=i))) for i in range(1, 501)])
    con.executemany("INSERT INTO battles (id, prompt, model_a, model_b, vote, blind, created_at) VALUES (?, ?, ?, ?, 'a', 1, ?)",
                    [(i, f"prompt {i}", models[i % 20], models[(i + 1) % 20], str(now - dt.timedelta(minutes=i))) for i in range(1, 5001)])
    con.executemany("INSERT INTO eval_runs (id, name, status, models, source, params, examples, created_at) "
                    "VALUES (?, ?, 'completed', ?, 'pasted', '{}', '[]', ?)",
                    [(i, f"eval {i}", json.dumps(models[i % 20: i % 20 + 2]), str(now - dt.timedelta(hours=i))) for i in range(1, 501)])
    con.commit()
    con.execute("PRAGMA optimize")
    con.close()


def _flush(con: sqlite3.Connection, convs: list, msgs: list) -> None:
    con.executemany("INSERT INTO conversations (id, title, model, system_prompt, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)", convs)
    con.executemany("INSERT INTO messages (id, conversation_id, role, content, model, created_at, active, feedback) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 0)", msgs)
    con.commit()


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, int]:
    fn()  # warm the page cache for this query
    xs = []
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = fn()
        xs.append((time.perf_counter() - t0) * 1000)
        n = len(got) if hasattr(got, "__len__") else 0
    xs.sort()
    return statistics.median(xs), xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))], n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--conversations", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args()
    machine_line = machine()
    print(f"machine: {machine_line}")

    from storage import chats, connect
    from storage.history import Filters, search, timeline

    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        path = Path(tmp) / "studio.db"
        t0 = time.perf_counter()
        print(f"building {args.messages:,} messages in {args.conversations:,} conversations...")
        build(path, args.messages, args.conversations)
        build_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
        print(f"built in {build_s:.0f} s ({size_mb:.0f} MB)")
        db = connect(f"sqlite:///{path}")

        cursor = None
        for _ in range(19):  # walk to the 20th page once; only fetching that page is timed
            page = timeline(before=cursor, limit=50)
            cursor = (page[-1].at, page[-1].kind, page[-1].id)

        def deep() -> list:
            return timeline(before=cursor, limit=50)

        cases = {
            "timeline (first page, every kind)": lambda: timeline(limit=50),
            "timeline (20th page, keyset)": deep,
            "timeline (one model)": lambda: timeline(Filters(model="model-3"), limit=50),
            f"search rare word ({RARE})": lambda: search(RARE, limit=50),
            f"search common word ({COMMON})": lambda: search(COMMON, limit=50),
            "search Korean word without particle (수도)": lambda: search("수도", limit=50),
            "search two words (adapter sunflower)": lambda: search("adapter sunflower", limit=50),
            "Chat sidebar (newest 200)": lambda: chats.list_conversations(limit=200),
        }
        figures = {}
        for name, fn in cases.items():
            figures[name] = timed(fn, args.repeat)
            p50, p95, n = figures[name]
            print(f"{name:48s} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  ({n} items)")
        like = lambda: db.execute_sql("SELECT DISTINCT conversation_id FROM messages WHERE lower(content) LIKE ? LIMIT 50",  # noqa: E731
                                      (f"%{RARE}%",)).fetchall()
        base = timed(like, 3)
        print(f"{'baseline: LIKE scan for the rare word':48s} p50 {base[0]:7.1f} ms  p95 {base[1]:7.1f} ms")
        db.close()

    history_cases = [k for k in figures if not k.startswith("Chat sidebar")]
    worst = max(figures[k][1] for k in history_cases)
    rare = figures[f"search rare word ({RARE})"][0]
    lines = [
        f"{args.messages:,} messages, {args.conversations:,} conversations, 500 runs, 5,000 battles, 500 evaluations; "
        f"SQLite {size_mb:.0f} MB built in {build_s:.0f} s; {args.repeat} timed repeats per query (after one warm-up)",
        "| query | p50 ms | p95 ms | items |",
        "|---|---|---|---|",
        *(f"| {k} | {v[0]:.1f} | {v[1]:.1f} | {v[2]} |" for k, v in figures.items()),
        f"| baseline: LIKE scan over every message (rare word) | {base[0]:.1f} | {base[1]:.1f} | – |",
        f"worst History p95: {worst:.1f} ms (target < {TARGET_MS:.0f} ms: {'met' if worst < TARGET_MS else 'NOT met'}); "
        f"FTS rare-word search is {base[0] / rare:.0f}x faster than the LIKE scan (p50)",
    ]
    report("history_scale", lines, machine_line)
    return 0


if __name__ == "__main__":
    run_main(main)
