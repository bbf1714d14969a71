"""launch.py's refusals, and the UI process staying free of torch & co."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_launch(*args, env=None, timeout=60, input=None):
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, input=input)


def test_share_without_auth_is_refused(tmp_path):
    r = run_launch("--share", "--no-serve", env={"DATA_DIR": str(tmp_path), "AUTH": ""})
    assert r.returncode == 2 and "refusing to --share without a password" in r.stderr


def test_public_host_without_auth_is_refused(tmp_path):
    r = run_launch("--host", "0.0.0.0", "--no-serve", env={"DATA_DIR": str(tmp_path), "AUTH": ""})
    assert r.returncode == 2 and "without a password" in r.stderr


def test_invalid_setting_stops_with_one_line(tmp_path):
    r = run_launch("--no-serve", env={"DATA_DIR": str(tmp_path), "PORT": "seventy"})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "PORT='seventy'" in r.stderr


def test_building_the_app_imports_no_heavy_library(tmp_path):
    code = """
import sys
from engines.settings import load_settings
from engines.serving import ServerManager
from storage import connect
from studio.app import build_app
from studio.services import Services
s = load_settings(data_dir=sys.argv[1], ray_address="http://127.0.0.1:9", mlflow_tracking_uri="http://127.0.0.1:9")
connect(s.db_url)
from engines.serving import MlflowUI
from engines.training import JobManager
servers = ServerManager(s)
jobs = JobManager(s, servers)
build_app(Services(settings=s, servers=servers, jobs=jobs, mlflow_ui=MlflowUI(s), no_serve=True))
from engines.inference.chat import _client, Endpoint
_client(Endpoint(base_url="http://127.0.0.1:9/v1", model="m"), 5.0)   # the chat path too
heavy = sorted(m for m in ("torch", "transformers", "vllm", "unsloth", "peft", "trl", "bitsandbytes", "mlflow", "ray") if m in sys.modules)
assert "ray" in jobs.backends   # the Ray job backend was built (RAY_ADDRESS), over HTTP only
print("HEAVY", heavy)
"""
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "HEAVY []" in r.stdout


def test_the_data_dir_lock_names_its_holder_and_dies_with_it(tmp_path):
    from engines.instance_lock import AlreadyRunning, acquire

    # Held by another process, which is then killed -9: the kernel frees the lock, no stale file keeps us out.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from engines.instance_lock import acquire\nlock = acquire(Path(sys.argv[1]), port=7999)\n"
                               "print('held', flush=True)\ntime.sleep(120)\n", str(tmp_path)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        try:
            acquire(tmp_path, port=1)
            raise AssertionError("a second holder got the lock")
        except AlreadyRunning as exc:
            assert f"pid {holder.pid}, port 7999" in str(exc) and "\n" not in str(exc)
    finally:
        holder.kill()
        holder.wait(10)
    lock = acquire(tmp_path, port=8001)
    assert (tmp_path / "studio.lock").read_text().split() == [f"pid={os.getpid()}", "port=8001"]
    lock.update(port=8002)
    assert "port=8002" in (tmp_path / "studio.lock").read_text()
    lock.release()


def test_account_commands_start_nothing_and_import_no_gradio(tmp_path):
    code = "import sys, launch\nrc = launch.main(sys.argv[1:])\nprint('RC', rc, 'gradio' in sys.modules, 'studio.app' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code, "users", "add", "ann", "--role", "admin", "--password-stdin"], cwd=ROOT,
                       input="ann-password-1\n", capture_output=True, text=True, timeout=60, env={**os.environ, "DATA_DIR": str(tmp_path)})
    assert "RC 0 False False" in r.stdout, r.stderr
    assert not (tmp_path / "studio.lock").exists()  # the command line works next to a running studio
    r = run_launch("users", "add", "ben", "--password-stdin", env={"DATA_DIR": str(tmp_path)}, input="short\n")
    assert r.returncode == 2 and r.stderr.strip() == "error: A password needs at least 8 characters."
    r = run_launch("users", "list", env={"DATA_DIR": str(tmp_path)})
    assert r.returncode == 0 and r.stdout.split()[:3] == ["ann", "admin", "enabled"] and "ben" not in r.stdout


def test_repeated_login_failures_wait_longer_and_longer(db, monkeypatch):
    from engines import accounts

    accounts.add_user("carol", "carol-password-1", role="member")
    waits: list[float] = []
    monkeypatch.setattr(accounts.time, "sleep", waits.append)  # record the throttle's waits instead of waiting them
    for _ in range(20):
        assert accounts.check_login("carol", "not-her-password", max_failures=5) is False
    assert waits[:5] == [0.5, 1.0, 2.0, 4.0, 8.0] and waits[5:] == [8.0] * 10  # 5 free tries, then doubling to 8 s
    # Even the right password waits after a run of failures (a guesser cannot tell), then the count resets.
    assert accounts.check_login("carol", "carol-password-1", max_failures=5) is True
    assert waits[-1] == 8.0 and len(waits) == 16
    assert accounts.check_login("carol", "carol-password-1", max_failures=5) is True and len(waits) == 16
    accounts.set_disabled("carol", True)
    assert accounts.check_login("carol", "carol-password-1", max_failures=5) is False
