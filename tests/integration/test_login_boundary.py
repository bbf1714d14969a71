"""The login boundary of a real studio (`launch.py --no-serve` in a subprocess on a temporary DATA_DIR, real SQLite,
real HTTP): one studio per DATA_DIR, nothing but the login form for a logged-out visitor, accounts from the command
line, throttled and unlogged passwords, /metrics behind an account, and answers a crash cut off marked interrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, stop_studio
from tests.conftest import start_studio as _start_studio

BOSS, BOSS_PW = "boss", "boss-pass-Q7x9v"  # AUTH: the first admin
DORA, DORA_PW = "dora", "dora-pass-K2m4w"  # a member added from the command line while the studio runs
WRONG_PW = "wrong-pass-Z3k8y"
# Things a logged-in page shows in its dropdowns; none may reach a logged-out visitor.
SECRET_DATASET = "leaky-dataset-Xq71"
SECRET_UPLOAD = "secret-upload-Jw52"
SECRET_RUN = "secret-adapter-Pz93"


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATA_DIR": str(data_dir)}
    env.pop("AUTH", None)
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, input=stdin, capture_output=True, text=True,
                          timeout=60, env=env)


def start_studio(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, Path]:
    """A studio that serves no model (`--no-serve`); the URL without its trailing slash."""
    proc, url, out = _start_studio(data_dir, env or {}, "--no-serve", *args)
    return proc, url.rstrip("/"), out


stop = stop_studio


def seed(data_dir: Path) -> dict[str, int]:
    """Before the start: a dataset with a version file, an upload, a finished run and an answer a crash cut off."""
    from storage import chats, connect, datasets, runs

    db = connect(f"sqlite:///{(data_dir / 'studio.db').resolve()}")
    try:
        version_file = data_dir / "datasets" / "versions" / SECRET_DATASET / "v1.jsonl"
        version_file.parent.mkdir(parents=True)
        row = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
        version_file.write_text(row + "\n")
        uploads = data_dir / "datasets" / "uploads"
        uploads.mkdir(parents=True)
        (uploads / f"{SECRET_UPLOAD}.jsonl").write_text(row + "\n")
        ds = datasets.create_dataset(SECRET_DATASET)
        datasets.add_version(ds, path=str(version_file), content_hash="0" * 64, row_count=1)
        run = runs.create_run(name=SECRET_RUN, base_model="SmolLM2-135M-Instruct", dataset=str(version_file), method="lora",
                              spec={}, run_dir=str(data_dir / "runs" / SECRET_RUN))
        runs.finish_run(run.id, "completed")
        conv = chats.create_conversation(title="cut off")
        chats.add_message(conv.id, "user", "tell me a story")
        cut = chats.add_message(conv.id, "assistant", "Once upon a", finish_reason="streaming")
        done = chats.add_message(conv.id, "assistant", "The end.", finish_reason="stop")
        return {"cut": cut.id, "done": done.id}
    finally:
        db.close()


def login(url: str, name: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    r = client.post("/login", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return client


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("boundary")
    ids = seed(data_dir)
    proc, url, out = start_studio(data_dir, env={"AUTH": f"{BOSS}:{BOSS_PW}", "LOGIN_MAX_FAILURES": "1"})
    yield {"dir": data_dir, "url": url, "proc": proc, "out": out, **ids}
    stop(proc)


def test_a_second_studio_on_the_same_data_dir_exits_naming_the_first(studio):
    r = subprocess.run([sys.executable, "launch.py", "--no-serve", "--port", str(free_port())], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "DATA_DIR": str(studio["dir"])})
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    port = studio["url"].rsplit(":", 1)[1]
    assert f"pid {studio['proc'].pid}" in lines[0] and f"port {port}" in lines[0]
    # The first is unharmed: it still answers, and its lock file still names it.
    assert studio["proc"].poll() is None
    assert httpx.get(studio["url"] + "/healthz", timeout=10).status_code == 200
    assert f"pid={studio['proc'].pid}" in (studio["dir"] / "studio.lock").read_text()


def test_a_logged_out_visitor_gets_the_login_form_and_nothing_else(studio):
    url = studio["url"]
    page = httpx.get(url + "/", timeout=30)
    assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
    bodies = {"/": page.text}
    for path in ("/config", "/info", "/gradio_api/info", "/gradio_api/openapi.json", "/gradio_api/info?all_endpoints=True",
                 "/gradio_api/queue/data?session_hash=x", "/gradio_api/app_id", "/gradio_api/runs", "/monitoring",
                 f"/gradio_api/file={studio['dir'] / 'studio.db'}"):
        r = httpx.get(url + path, timeout=30)
        assert r.status_code in (401, 404), (path, r.status_code)
        bodies[path] = r.text
    r = httpx.post(url + "/gradio_api/call/list_models", json={"data": []}, timeout=30)
    assert r.status_code == 401
    bodies["call"] = r.text
    # The page's own route (the server badge's digest) exists and is behind the gate like Gradio's.
    r = httpx.get(url + "/studio/status", timeout=30)
    assert r.status_code == 401 and "sig" not in r.text, r.text
    bodies["/studio/status"] = r.text

    # Logged in, the same page carries the app: the secrets are there to leak (so this test can fail).
    client = login(url, BOSS, BOSS_PW)
    inside = client.get("/").text
    assert client.get("/config").status_code == 200 and client.get("/gradio_api/info").status_code == 200
    assert len(client.get("/studio/status").json()["sig"]) == 16
    client.close()
    assert "named_endpoints" in inside and "/send" in inside
    shown = [s for s in (SECRET_DATASET, SECRET_UPLOAD, SECRET_RUN) if s in inside]
    assert SECRET_UPLOAD in shown and SECRET_DATASET in shown, shown
    for path, body in bodies.items():
        for secret in [*shown, "named_endpoints", '"/send"', "list_models", "SmolLM2", str(studio["dir"])]:
            assert secret not in body, (path, secret)

    # /healthz stays public (numbers only); /metrics asks for an account.
    health = httpx.get(url + "/healthz", timeout=10)
    assert health.status_code == 200 and set(health.json()) <= {"status", "db", "servers", "time"}
    assert httpx.get(url + "/metrics", timeout=10).status_code == 401
    assert httpx.get(url + "/metrics", auth=(BOSS, WRONG_PW), timeout=30).status_code == 401
    assert httpx.get(url + "/metrics", auth=(BOSS, BOSS_PW), timeout=30).status_code == 200


def test_gradio_client_logs_in_through_the_gate(studio):
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    client = Client(studio["url"], auth=(BOSS, BOSS_PW), verbose=False)
    assert "/list_models" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    with pytest.raises((AuthenticationError, ValueError)):
        Client(studio["url"], verbose=False)


def test_accounts_from_the_command_line_while_the_studio_runs(studio):
    url, data_dir = studio["url"], studio["dir"]
    r = cli(data_dir, "users", "add", DORA, "--role", "member", "--password-stdin", stdin=DORA_PW + "\n")
    assert r.returncode == 0, r.stderr
    r = cli(data_dir, "users", "add", DORA, "--password-stdin", stdin=DORA_PW + "\n")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "already" in r.stderr
    r = cli(data_dir, "users", "list")
    rows = {line.split()[0]: line.split()[1:3] for line in r.stdout.splitlines()}
    assert r.returncode == 0 and rows[BOSS] == ["admin", "enabled"] and rows[DORA] == ["member", "enabled"]

    dora = login(url, DORA, DORA_PW)
    assert dora.get("/config").status_code == 200
    assert httpx.get(url + "/metrics", auth=(DORA, DORA_PW), timeout=30).status_code == 200  # any enabled account

    # A wrong password is refused; a disabled account is refused, and its open session ends.
    assert httpx.post(url + "/login", data={"username": DORA, "password": WRONG_PW}, timeout=30).status_code == 400
    r = cli(data_dir, "users", "disable", DORA)
    assert r.returncode == 0, r.stderr
    assert "disabled" in cli(data_dir, "users", "list").stdout
    assert httpx.post(url + "/login", data={"username": DORA, "password": DORA_PW}, timeout=30).status_code == 400
    assert httpx.get(url + "/metrics", auth=(DORA, DORA_PW), timeout=30).status_code == 401
    deadline = time.monotonic() + 20
    while dora.get("/config").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert dora.get("/config").status_code == 401
    assert "auth_required" in dora.get("/").text and "named_endpoints" not in dora.get("/").text

    # Enabled again with a new password: the old one no longer works, the new one does.
    assert cli(data_dir, "users", "enable", DORA).returncode == 0
    r = cli(data_dir, "users", "passwd", DORA, "--password-stdin", stdin="dora-new-pass-8812\n")
    assert r.returncode == 0, r.stderr
    assert httpx.post(url + "/login", data={"username": DORA, "password": DORA_PW}, timeout=30).status_code == 400
    fresh = login(url, DORA, "dora-new-pass-8812")
    assert fresh.get("/config").status_code == 200
    # A password reset ends the sessions that logged in before it (a stolen session does not outlive it) ...
    r = cli(data_dir, "users", "passwd", DORA, "--password-stdin", stdin="dora-third-pass-5521\n")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 20
    while fresh.get("/config").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert fresh.get("/config").status_code == 401
    # ... and a session that logs in right after it is not thrown away.
    newest = login(url, DORA, "dora-third-pass-5521")
    for _ in range(3):
        assert newest.get("/config").status_code == 200
        time.sleep(2.5)
    newest.close()
    fresh.close()
    r = cli(data_dir, "users", "role", DORA, "overlord")
    assert r.returncode == 2
    assert cli(data_dir, "users", "disable", "nobody-here").returncode == 2
    dora.close()


def test_api_keys_from_the_command_line(studio):
    data_dir = studio["dir"]
    r = cli(data_dir, "keys", "create", BOSS, "--label", "ci")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key.startswith("cs-") and "\n" not in key
    listing = cli(data_dir, "keys", "list")
    assert listing.returncode == 0 and key not in listing.stdout and key[:10] in listing.stdout
    key_id = int(next(line for line in listing.stdout.splitlines() if key[:10] in line).split()[0])

    from engines import accounts
    from storage import connect

    db = connect(f"sqlite:///{(data_dir / 'studio.db').resolve()}")
    try:
        actor = accounts.actor_for_api_key(key)
        assert actor is not None and actor.name == BOSS and actor.is_admin
        r = cli(data_dir, "keys", "revoke", str(key_id))
        assert r.returncode == 0, r.stderr
        assert accounts.actor_for_api_key(key) is None
        assert "revoked" in cli(data_dir, "keys", "list").stdout
        assert cli(data_dir, "keys", "revoke", "99999").returncode == 2
        assert cli(data_dir, "keys", "create", "nobody-here").returncode == 2
    finally:
        db.close()


def test_repeated_failures_are_slowed_without_stalling_the_studio_and_passwords_never_logged(studio):
    url = studio["url"]
    # LOGIN_MAX_FAILURES=1: the 2nd try in a row waits 0.5 s, the 3rd 1 s, the 4th 2 s (an unknown name is slowed too).
    for _ in range(3):
        assert httpx.post(url + "/login", data={"username": "mallory", "password": WRONG_PW}, timeout=60).status_code == 400
    slow = {}

    def fourth() -> None:
        t0 = time.monotonic()
        slow["status"] = httpx.post(url + "/login", data={"username": "mallory", "password": WRONG_PW}, timeout=60).status_code
        slow["seconds"] = time.monotonic() - t0

    worker = threading.Thread(target=fourth)
    worker.start()
    time.sleep(0.3)
    # While that try waits, everyone else is served (the wait happens off the event loop).
    assert httpx.get(url + "/healthz", timeout=60).status_code == 200
    assert worker.is_alive()
    worker.join(60)
    assert slow["status"] == 400

    login(url, BOSS, BOSS_PW).close()
    logs = "".join(p.read_text(errors="replace") for p in (studio["dir"] / "logs").glob("*.jsonl*"))
    failed = [json.loads(line) for line in logs.splitlines() if '"login.failed"' in line and '"mallory"' in line]
    assert [e["delayed_s"] for e in failed[-4:]] == [0.0, 0.5, 1.0, 2.0]
    assert slow["seconds"] >= 2.0  # the delay the log reports was really waited
    assert '"login.ok"' in logs
    everything = logs + studio["out"].read_text(errors="replace")
    for password in (BOSS_PW, DORA_PW, WRONG_PW, "dora-new-pass-8812"):
        assert password not in everything


def test_an_answer_cut_off_by_a_crash_is_marked_interrupted_at_the_next_start(studio):
    from storage import chats, connect

    db = connect(f"sqlite:///{(studio['dir'] / 'studio.db').resolve()}")
    try:
        assert chats.get_message(studio["cut"]).finish_reason == "interrupted"
        assert chats.get_message(studio["done"]).finish_reason == "stop"
    finally:
        db.close()


def test_accounts_alone_allow_a_non_loopback_host_and_ask_for_a_login(tmp_path):
    r = cli(tmp_path, "users", "add", "owner1", "--role", "admin", "--password-stdin", stdin="owner1-pass-991\n")
    assert r.returncode == 0, r.stderr
    # 127.0.0.2 is not in the loopback allow-list (so it needs a password) yet stays on this machine.
    proc, url, _ = start_studio(tmp_path, "--host", "127.0.0.2", env={"AUTH": ""})
    try:
        page = httpx.get(url + "/", timeout=30).text
        assert "auth_required" in page and "named_endpoints" not in page
        assert httpx.get(url + "/config", timeout=30).status_code == 401
        client = login(url, "owner1", "owner1-pass-991")
        assert client.get("/config").status_code == 200
        client.close()
    finally:
        stop(proc)
    from engines.instance_lock import acquire

    acquire(tmp_path, port=1).release()  # a stopped studio leaves its lock free
    r = cli(tmp_path, "users", "disable", "owner1")
    assert r.returncode == 2 and "last admin" in r.stderr


def test_a_studio_without_accounts_asks_for_logins_once_the_first_account_exists(tmp_path):
    proc, url, _ = start_studio(tmp_path, env={"AUTH": ""})
    try:
        assert "named_endpoints" in httpx.get(url + "/", timeout=30).text  # a laptop studio: no login, as before
        assert httpx.get(url + "/metrics", timeout=30).status_code == 200
        r = cli(tmp_path, "users", "add", "first", "--role", "admin", "--password-stdin", stdin="first-pass-5521\n")
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 20
        while httpx.get(url + "/config", timeout=30).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        page = httpx.get(url + "/", timeout=30).text
        assert "auth_required" in page and "named_endpoints" not in page
        assert httpx.get(url + "/config", timeout=30).status_code == 401
        assert httpx.get(url + "/metrics", timeout=30).status_code == 401
        client = login(url, "first", "first-pass-5521")
        assert client.get("/config").status_code == 200
        client.close()
    finally:
        stop(proc)
