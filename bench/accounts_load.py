"""Shared safely under load: many logged-in people chatting at once, each message stored under its own account.

Starts one CPU vLLM server on the bundled model (ServerManager, its own temporary DATA_DIR), then runs the same
chat load twice against studios that use it through VLLM_BASE_URL, each on a fresh DATA_DIR:

  accounts  `launch.py users add NAME --role ROLE --password-stdin` for every account but the first admin, which
            is AUTH=NAME:PASSWORD; every session logs in through the real login form (POST /login, then
            Gradio's cookie on every call), so the login gate and Gradio's auth check sit on every request
  open      no AUTH and no accounts: the same sessions, no login (the passwordless local owner)

Load: --sessions (default 32) sessions spread round-robin over --accounts (default 8: --admins 2, the rest
members). After one warm-up message each, every session loops for --seconds (default 60): send a message
through the studio's `/send` event (Gradio's HTTP API: POST /gradio_api/call/send, then its SSE stream), read
the stream to the end, repeat; every 3rd message starts a new conversation. Temperature 0, max_tokens 32,
fixed seed; each run's prompts start with a run tag, so vLLM's prefix cache cannot carry one run's prompts
into the other.

Figures:
  * per account (accounts run): messages sent vs user messages stored in the studio's SQLite (conversations.owner_id
    joined with users.name; must be equal), answers stored, conversations; and isolation, checked through the API
    as each account: every conversation list `/send` returned and `/search_chats ''` list only that account's own
    conversations (the latter exactly all of them), and `/open_chat` of another account's conversation gets nothing;
    in SQLite every conversation a session created is owned by its account.
    `/open_chat` of one of its own conversations must work (else the refusals would prove nothing).
  * TTFT (send -> first non-empty answer text at the client) p50/p95 of each run and accounts/open ratios
    (target <= 1.05), with answers per second to show both runs carried the same load. Under this load TTFT is
    mostly vLLM's queue, so the time to the first update (the stored message sent back, before any token: the
    studio's own path with its login checks) is reported too, with its ratios.

Run: .venv/bin/python bench/accounts_load.py [--seconds 60] [--sessions 32] [--accounts 8] [--admins 2] [--rounds 1]
With --rounds N the two runs alternate which goes first. Results are appended to bench/results/accounts_load.md.
No assertion on timings; the script exits non-zero when a count or the isolation is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import (
    MODEL,
    MODEL_CACHE,
    PYTHON,
    ROOT,
    BenchError,
    free_port,
    machine,
    percentile,
    report,
    run_main,
    spawn,
    stop,
    wait_http_ok,
)
from relay_overhead import PROMPTS, flatten

MAX_TOKENS = 32
SEED = 1234
TURNS_PER_CONVERSATION = 3
TTFT_TARGET = 1.05
LOCAL_OWNER = "owner"  # who a studio without accounts stores conversations for (engines.accounts.LOCAL_OWNER)


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    password: str


@dataclass
class Session:
    """One logged-in browser's worth of traffic: its own cookie jar, its own loop of messages."""

    index: int
    account: Account
    http: httpx.Client
    sent: int = 0  # /send calls made (warm-up included)
    answered: int = 0  # streams that finished with answer text
    ttfts: list[float] = field(default_factory=list)  # measured window only
    echoes: list[float] = field(default_factory=list)  # send -> first update (the message back, no token yet)
    created: set[int] = field(default_factory=set)  # conversation ids /send returned to this session
    listed: set[int] = field(default_factory=set)  # every id the conversation lists in /send's answers showed
    errors: list[str] = field(default_factory=list)


@dataclass
class Run:
    label: str  # accounts | open
    sessions: list[Session]
    data_dir: tempfile.TemporaryDirectory  # kept until the figures are read, then deleted
    api_lists: dict[str, set[int]] = field(default_factory=dict)  # account -> ids /search_chats '' listed
    foreign_opened: dict[str, int] = field(default_factory=dict)  # account -> other accounts' chats it could open
    foreign_tried: dict[str, int] = field(default_factory=dict)
    own_opened: dict[str, bool] = field(default_factory=dict)  # the probe's control: its own chat does open

    @property
    def ttfts(self) -> list[float]:
        return [x for s in self.sessions for x in s.ttfts]

    @property
    def echoes(self) -> list[float]:
        return [x for s in self.sessions for x in s.echoes]

    @property
    def db(self) -> Path:
        return Path(self.data_dir.name) / "studio.db"


# ---- Gradio's HTTP API -----------------------------------------------------------------------------------------

def call(http: httpx.Client, api: str, data: list[Any]) -> Iterator[tuple[str, Any]]:
    """One event over Gradio's HTTP API: POST /gradio_api/call/<api>, then yield (event, data) from its SSE stream."""
    r = http.post(f"/gradio_api/call/{api}", json={"data": data})
    if r.status_code != 200:
        raise BenchError(f"POST /gradio_api/call/{api} answered {r.status_code}: {r.text[:200]}")
    event = ""
    with http.stream("GET", f"/gradio_api/call/{api}/{r.json()['event_id']}") as resp:
        if resp.status_code != 200:
            raise BenchError(f"GET /gradio_api/call/{api}/… answered {resp.status_code}")
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                payload = line[5:].strip()
                yield event, json.loads(payload) if payload else None


def call_once(http: httpx.Client, api: str, data: list[Any]) -> Any:
    """The final outputs of a non-streaming event; an `error` event becomes BenchError."""
    out = None
    for event, payload in call(http, api, data):
        if event == "error":
            raise BenchError(f"/{api} failed: {str(payload)[:300]}")
        if event == "complete":
            out = payload
    return out


def choice_ids(update: Any) -> set[int] | None:
    """Conversation ids in a Radio update's choices ([title, id] pairs), None when the output is not such an update."""
    if not isinstance(update, dict) or "choices" not in update:
        return None
    ids = set()
    for choice in update["choices"] or []:
        value = choice[1] if isinstance(choice, list | tuple) else choice
        ids.add(int(value))
    return ids


def login(url: str, account: Account | None) -> httpx.Client:
    """A client with its own cookie jar, logged in through the login form when `account` is given."""
    http = httpx.Client(base_url=url, timeout=httpx.Timeout(300.0, connect=30.0))
    if account is not None:
        r = http.post("/login", data={"username": account.name, "password": account.password})
        if r.status_code != 200 or not http.cookies:
            http.close()
            raise BenchError(f"login as {account.name} failed: HTTP {r.status_code} {r.text[:200]}")
    return http


def send(session: Session, text: str, cid: str, model: str) -> tuple[float, float, str]:
    """One message through /send, read to the end: (seconds to the first update, to the first answer text, conversation id).

    The first update carries the stored message back before any token: the studio's own path (login checks
    included) without vLLM's queue, which dominates TTFT under load."""
    t0 = time.perf_counter()
    echo, first, got_cid, answer = None, None, cid, ""
    # message, conversation id ("" = new), model, system prompt, temperature, top_p, max_tokens, seed, language
    for event, data in call(session.http, "send", [text, cid, model, "", 0.0, 1.0, MAX_TOKENS, SEED, "en"]):
        if event == "error":
            raise BenchError(f"/send failed: {str(data)[:300]}")
        if event not in ("generating", "complete") or not data:
            continue
        echo = echo or time.perf_counter()
        chat = data[0]
        if isinstance(chat, list) and chat and chat[-1].get("role") == "assistant":
            answer = flatten(chat[-1]["content"])
            if answer and first is None:
                first = time.perf_counter()
        if isinstance(data[1], str) and data[1].isdigit():
            got_cid = data[1]
        listed = choice_ids(data[3]) if len(data) > 3 else None
        if listed is not None:
            session.listed |= listed
    if first is None:
        raise BenchError(f"/send returned no answer text for {text!r}")
    session.created.add(int(got_cid))
    return echo - t0, first - t0, got_cid


def session_loop(session: Session, model: str, tag: str, seconds: float, barrier: threading.Barrier, window: dict) -> None:
    """One warm-up message, wait for every session, then messages until the shared deadline (the last one finishes)."""
    n, cid = 0, ""

    def one(measured: bool) -> None:
        nonlocal n, cid
        prompt = PROMPTS[(session.index + n) % len(PROMPTS)]
        text = f"[{tag} s{session.index} m{n}] {prompt}"
        cid = "" if n % TURNS_PER_CONVERSATION == 0 else cid
        n += 1
        session.sent += 1
        try:
            echo, ttft, cid = send(session, text, cid, model)
        except (BenchError, httpx.HTTPError, ValueError) as exc:
            session.errors.append(f"{exc.__class__.__name__}: {exc}"[:300])
            cid = ""
            time.sleep(0.5)  # a failing studio must not be hammered in a tight loop
            return
        session.answered += 1
        if measured:
            session.ttfts.append(ttft)
            session.echoes.append(echo)

    try:
        one(measured=False)
    finally:
        barrier.wait(timeout=600)  # every session starts the measured window together
    while time.perf_counter() < window["end"]:
        one(measured=True)


# ---- the studios -----------------------------------------------------------------------------------------------

def add_users(data_dir: Path, accounts: list[Account], env: dict[str, str]) -> None:
    """Every account but the first admin (that one is AUTH) through the studio's own command line."""
    for acc in accounts[1:]:
        r = subprocess.run([PYTHON, "launch.py", "users", "add", acc.name, "--role", acc.role, "--password-stdin"],
                           cwd=ROOT, env=env, input=acc.password + "\n", capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise BenchError(f"`launch.py users add {acc.name}` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")


def wait_for_model(http: httpx.Client, timeout: float = 120.0) -> str:
    """The name the studio lists for the bundled model (it reaches the server through VLLM_BASE_URL)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = call_once(http, "list_models", []) or []
        names = names[0] if names and isinstance(names[0], list) else names
        for name in names:
            if MODEL in str(name):
                return str(name)
        time.sleep(0.5)
    raise BenchError(f"the studio did not list {MODEL} within {timeout:.0f}s")


def run_load(label: str, base_url: str, accounts: list[Account], args: argparse.Namespace, tag: str) -> Run:
    """Start a studio on a fresh DATA_DIR (with accounts or open), drive the load, check isolation, stop it."""
    tmp = tempfile.TemporaryDirectory(prefix=f"bench-accounts-{label}-")
    data_dir = Path(tmp.name)
    env = {k: v for k, v in os.environ.items() if k not in ("AUTH", "VLLM_BASE_URL", "VLLM_API_KEY", "PORT")}
    env.update(DATA_DIR=str(data_dir), MODEL_CACHE_DIR=str(MODEL_CACHE), VLLM_BASE_URL=base_url)
    with_login = label == "accounts"
    if with_login:
        add_users(data_dir, accounts, env)
        env["AUTH"] = f"{accounts[0].name}:{accounts[0].password}"
    port = free_port()
    log = data_dir / "app.log"
    app = None
    sessions: list[Session] = []
    done = False
    try:
        print(f"[{label}] starting the studio (fresh DATA_DIR, VLLM_BASE_URL, {'AUTH + accounts' if with_login else 'no login'})...")
        app = spawn([PYTHON, "launch.py", "--port", str(port)], env=env, log=log)
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/", app, 180.0, log=log)
        for i in range(args.sessions):
            acc = accounts[i % len(accounts)]
            sessions.append(Session(i, acc, login(url, acc if with_login else None)))
        model = wait_for_model(sessions[0].http)
        if with_login:  # the figures must be about logged-in sessions: no way in without the right password
            probe = httpx.post(f"{url}/login", data={"username": accounts[-1].name, "password": "wrong-password"})
            anonymous = httpx.post(f"{url}/gradio_api/call/list_models", json={"data": []})
            if probe.status_code == 200 or anonymous.status_code < 400:
                raise BenchError(f"the studio let a request in without a login (wrong password: HTTP {probe.status_code}, "
                                 f"no cookie: HTTP {anonymous.status_code})")

        window: dict[str, float] = {}
        barrier = threading.Barrier(len(sessions), action=lambda: window.update(end=time.perf_counter() + args.seconds))
        print(f"[{label}] {len(sessions)} sessions: one warm-up message each, then {args.seconds:.0f} s of chat...")
        threads = [threading.Thread(target=session_loop, args=(s, model, tag, args.seconds, barrier, window), daemon=True)
                   for s in sessions]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if not window:
            raise BenchError(f"[{label}] the sessions never started the measured window{_errors(sessions)}")
        run = Run(label, sessions, tmp)
        if with_login:
            check_through_api(run)
        done = True
    finally:
        for s in sessions:
            s.http.close()
        stop(app)  # the counts are read from its SQLite afterwards, with nothing writing
        if not done:
            tmp.cleanup()
    return run


def opens(http: httpx.Client, cid: int) -> bool:
    """Whether /open_chat gives this session the messages or the id of conversation `cid`."""
    out = call_once(http, "open_chat", [str(cid), "en"])
    return bool(out and (out[0] or (isinstance(out[1], str) and out[1] == str(cid))))


def check_through_api(run: Run) -> None:
    """As each account: its conversation list, and whether another account's conversation opens (its own must)."""
    first: dict[str, Session] = {}
    for s in run.sessions:
        first.setdefault(s.account.name, s)
    names = list(first)
    for i, name in enumerate(names):
        http = first[name].http
        out = call_once(http, "search_chats", [""])
        run.api_lists[name] = choice_ids(out[0] if out else None) or set()
        own = sorted(first[name].created)
        run.own_opened[name] = bool(own) and opens(http, own[0])
        others = sorted(first[names[(i + 1) % len(names)]].created)[:3] if len(names) > 1 else []
        run.foreign_tried[name] = len(others)
        run.foreign_opened[name] = sum(opens(http, cid) for cid in others)


def _errors(sessions: list[Session]) -> str:
    errs = [e for s in sessions for e in s.errors]
    return f"; {len(errs)} errors, first: {errs[0]}" if errs else ""


# ---- what the studio stored --------------------------------------------------------------------------------------

@dataclass
class Stored:
    user_messages: dict[str, int]  # owner name -> user messages
    answers: dict[str, int]  # owner name -> finished assistant answers
    conversations: dict[str, set[int]]  # owner name -> conversation ids


def read_db(db: Path) -> Stored:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        owner_of = {cid: name or "(no owner)" for cid, name in con.execute(
            "SELECT c.id, u.name FROM conversations c LEFT JOIN users u ON u.id = c.owner_id")}
        conversations: dict[str, set[int]] = {}
        for cid, name in owner_of.items():
            conversations.setdefault(name, set()).add(cid)
        users, answers = {}, {}
        for name, role, count in con.execute(
                "SELECT COALESCE(u.name, '(no owner)'), m.role, COUNT(*) FROM messages m "
                "JOIN conversations c ON c.id = m.conversation_id LEFT JOIN users u ON u.id = c.owner_id "
                "WHERE m.role = 'user' OR (m.role = 'assistant' AND m.finish_reason IN ('stop', 'length')) "
                "GROUP BY 1, 2"):
            (users if role == "user" else answers)[name] = count
    finally:
        con.close()
    return Stored(users, answers, conversations)


def account_rows(run: Run, stored: Stored) -> tuple[list[str], list[str]]:
    """Table rows per account and the problems found (counts that differ, anything visible across accounts)."""
    rows, problems = [], []
    by_account: dict[str, list[Session]] = {}
    for s in run.sessions:
        by_account.setdefault(s.account.name, []).append(s)
    owner_of = {cid: name for name, ids in stored.conversations.items() for cid in ids}
    for name, sessions in by_account.items():
        sent = sum(s.sent for s in sessions)
        answered = sum(s.answered for s in sessions)
        own = stored.conversations.get(name, set())
        created = set().union(*(s.created for s in sessions))
        listed = set().union(*(s.listed for s in sessions))
        api_list = run.api_lists.get(name, set())
        user_msgs, answers = stored.user_messages.get(name, 0), stored.answers.get(name, 0)
        wrong_owner = {cid for cid in created if owner_of.get(cid) != name}
        foreign_listed = (listed | api_list) - own
        isolated = (not wrong_owner and not foreign_listed and api_list == own and run.foreign_opened.get(name, 0) == 0
                    and run.own_opened.get(name, False) and bool(listed))
        if user_msgs != sent:
            problems.append(f"{name}: {sent} messages sent, {user_msgs} stored")
        if answers != answered:
            problems.append(f"{name}: {answered} answers streamed, {answers} stored")
        if wrong_owner:
            problems.append(f"{name}: conversations {sorted(wrong_owner)[:5]} it created are owned by someone else")
        if foreign_listed:
            problems.append(f"{name}: saw other accounts' conversations {sorted(foreign_listed)[:5]}")
        if api_list != own:
            problems.append(f"{name}: /search_chats listed {len(api_list)} conversations, it owns {len(own)}")
        if run.foreign_opened.get(name):
            problems.append(f"{name}: opened {run.foreign_opened[name]} of another account's conversations")
        if not run.own_opened.get(name):  # else "nothing opened" would prove nothing about the refusals
            problems.append(f"{name}: /open_chat did not open its own conversation")
        if not listed:  # else "nothing foreign listed" would prove nothing
            problems.append(f"{name}: no /send answer carried a conversation list")
        rows.append(f"| {name} | {sessions[0].account.role} | {len(sessions)} | {sent} | {user_msgs} | {answered} | {answers} | "
                    f"{len(own)} | {len(api_list)} | {run.foreign_opened.get(name, 0)}/{run.foreign_tried.get(name, 0)} | "
                    f"{'yes' if isolated else 'NO'} |")
    strays = set(stored.user_messages) - set(by_account)
    if strays:
        problems.append(f"messages stored for accounts that sent none: {sorted(strays)}")
    return rows, problems


def ms(x: float) -> str:
    return f"{x * 1000:7.1f} ms"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="measured chat time per run")
    p.add_argument("--sessions", type=int, default=32, help="concurrent sessions (spread round-robin over the accounts)")
    p.add_argument("--accounts", type=int, default=8, help="accounts the sessions log in as")
    p.add_argument("--admins", type=int, default=2, help="how many of the accounts are admins (the first is AUTH)")
    p.add_argument("--rounds", type=int, default=1, help="pairs of runs; the order alternates")
    args = p.parse_args()
    if args.seconds <= 0 or args.rounds < 1 or not 1 <= args.admins <= args.accounts or args.sessions < args.accounts:
        raise BenchError("need --seconds > 0, --rounds >= 1, 1 <= --admins <= --accounts <= --sessions")
    command = " ".join([".venv/bin/python", "bench/accounts_load.py", *sys.argv[1:]])
    machine_line = machine()
    print(f"machine: {machine_line}")

    from engines.models import resolve_base_model
    from engines.serving import ServerManager
    from engines.settings import load_settings

    accounts = [Account(f"admin{i + 1}" if i < args.admins else f"member{i - args.admins + 1}",
                        "admin" if i < args.admins else "member", secrets.token_urlsafe(12)) for i in range(args.accounts)]
    tmp = tempfile.TemporaryDirectory(prefix="bench-accounts-vllm-")
    settings = load_settings(data_dir=Path(tmp.name), model_cache_dir=MODEL_CACHE)
    manager = ServerManager(settings)
    runs: dict[str, list[Run]] = {"accounts": [], "open": []}
    try:
        try:
            print("starting the vLLM server (ServerManager.ensure, once for every run)...")
            endpoint = manager.ensure(resolve_base_model(settings, MODEL))
            for r in range(args.rounds):
                order = ("accounts", "open") if r % 2 == 0 else ("open", "accounts")
                for label in order:
                    run = run_load(label, endpoint.base_url, accounts, args, tag=f"{label[0]}{r}-{secrets.token_hex(3)}")
                    runs[label].append(run)
                    print(f"[{label}] {sum(s.answered for s in run.sessions)} answers, TTFT p50 {ms(percentile(run.ttfts, 50))}, "
                          f"p95 {ms(percentile(run.ttfts, 95))}{_errors(run.sessions)}")
        finally:
            manager.stop_all()
            tmp.cleanup()
        return figures(runs, args, command, machine_line)
    finally:
        for run in (r for rs in runs.values() for r in rs):
            run.data_dir.cleanup()


def figures(runs: dict[str, list[Run]], args: argparse.Namespace, command: str, machine_line: str) -> int:
    """Counts from each studio's SQLite, isolation, TTFT percentiles; printed and appended to the results file."""
    problems: list[str] = []
    table = ["| account | role | sessions | sent | stored | answers streamed | answers stored | conversations "
             "| /search_chats lists | others' chats opened | only its own |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    open_sent = open_stored = 0
    for run in runs["accounts"]:
        stored = read_db(run.db)
        rows, found = account_rows(run, stored)
        table += rows
        problems += found
    for run in runs["open"]:
        stored = read_db(run.db)
        open_sent += sum(s.sent for s in run.sessions)
        open_stored += sum(stored.user_messages.values())
        if set(stored.user_messages) - {LOCAL_OWNER}:
            problems.append(f"open run: messages stored for {sorted(stored.user_messages)} (expected only {LOCAL_OWNER})")
    if open_sent != open_stored:
        problems.append(f"open run: {open_sent} messages sent, {open_stored} stored")
    errors = {label: [e for run in rs for s in run.sessions for e in s.errors] for label, rs in runs.items()}
    for label, errs in errors.items():
        if errs:
            problems.append(f"{label} run: {len(errs)} failed sends, first: {errs[0]}")

    ttft = {label: [x for run in rs for x in run.ttfts] for label, rs in runs.items()}
    rate = {label: sum(s.answered for run in rs for s in run.sessions) / (args.seconds * args.rounds) for label, rs in runs.items()}
    p50 = {label: percentile(xs, 50) for label, xs in ttft.items()}
    p95 = {label: percentile(xs, 95) for label, xs in ttft.items()}
    r50, r95 = p50["accounts"] / p50["open"], p95["accounts"] / p95["open"]
    echo = {label: [x for run in rs for x in run.echoes] for label, rs in runs.items()}
    e50 = {label: percentile(xs, 50) for label, xs in echo.items()}
    e95 = {label: percentile(xs, 95) for label, xs in echo.items()}
    lines = [
        f"command: `{command}`",
        f"{args.sessions} sessions over {args.accounts} accounts ({args.admins} admin(s), {args.accounts - args.admins} member(s)), "
        f"{args.seconds:.0f} s of chat per run after one warm-up message each, {args.rounds} round(s); max_tokens {MAX_TOKENS}, "
        f"temperature 0, a new conversation every {TURNS_PER_CONVERSATION} messages; one vLLM CPU server for both runs",
        *table,
        f"open run (no login): {open_sent} messages sent, {open_stored} stored",
    ]
    for label in ("accounts", "open"):
        lines.append(f"{label:<8} TTFT p50 {ms(p50[label])}, p95 {ms(p95[label])} over {len(ttft[label])} messages; "
                     f"{rate[label]:.2f} answers/s")
    lines.append(f"ratio accounts/open: TTFT p50 {r50:.3f}, p95 {r95:.3f} (target <= {TTFT_TARGET}: "
                 f"p50 {'met' if r50 <= TTFT_TARGET else 'NOT met'}, p95 {'met' if r95 <= TTFT_TARGET else 'NOT met'})")
    for label in ("accounts", "open"):
        lines.append(f"{label:<8} first update (the message back, before any token) p50 {ms(e50[label])}, p95 {ms(e95[label])}")
    lines.append(f"ratio accounts/open, first update: p50 {e50['accounts'] / e50['open']:.3f}, p95 {e95['accounts'] / e95['open']:.3f} "
                 "(the studio's own path, login checks included, without vLLM's queue)")
    lines.append("messages sent = stored for every account, and none visible to another: "
                 + ("yes" if not problems else "NO: " + "; ".join(problems)))
    report("accounts_load", lines, machine_line)
    if problems:
        raise BenchError(f"{len(problems)} problem(s): {problems[0]}")
    return 0


if __name__ == "__main__":
    run_main(main)
