"""Helpers shared by the benchmark scripts: processes, HTTP waits, statistics and the results files."""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
MODEL_CACHE = ROOT / "data" / "models"
MODEL = "SmolLM2-135M-Instruct"
PYTHON = sys.executable

if str(ROOT) not in sys.path:  # `engines` / `storage` importable when run as `python bench/x.py`
    sys.path.insert(0, str(ROOT))


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the message says what."""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C so every `finally:` stops what it started."""


def _on_sigterm(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Terminated


def setup() -> None:
    """Quiet the studio's structlog output and turn SIGTERM into an exception so `finally:` blocks clean up."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    signal.signal(signal.SIGTERM, _on_sigterm)


def run_main(main: callable) -> None:
    """Run `main()`; any failure becomes one clear line on stderr and exit status 1."""
    setup()
    try:
        code = main()
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); everything started was stopped", file=sys.stderr)
        code = 130
    except Terminated:
        print("error: terminated (SIGTERM); everything started was stopped", file=sys.stderr)
        code = 143
    except Exception as exc:  # noqa: BLE001 - the whole point is a readable last line
        print(f"error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code or 0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd: Sequence[str], *, env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """Start a process in its own process group (so the whole tree can be stopped), output to `log`."""
    with open(log, "ab") as fh:
        return subprocess.Popen(
            list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the process group of `proc`, SIGKILL it after `grace` seconds, and reap it."""
    if proc is None or proc.poll() is not None and not _group_alive(proc.pid):
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (proc.poll() is None or _group_alive(proc.pid)):
            time.sleep(0.05)
        if proc.poll() is not None and not _group_alive(proc.pid):
            break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(group_pids(pgid))


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of one process group, read from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return out


def group_rss_gib(pgid: int) -> float:
    """Resident memory of every process in a group, in GiB."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in group_pids(pgid):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total / 2**30


def wait_http_ok(url: str, proc: subprocess.Popen, timeout: float, *, log: Path | None = None, poll: float = 0.02) -> float:
    """Poll `url` until it answers 200; returns time.perf_counter() of that answer. Fails if `proc` exits."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"process exited with code {proc.returncode} before {url} answered{log_tail(log)}")
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter()
            except httpx.HTTPError:
                pass
            time.sleep(poll)
    raise BenchError(f"{url} did not answer 200 within {timeout:.0f}s{log_tail(log)}")


def log_tail(log: Path | None, n: int = 25) -> str:
    if not log or not log.is_file():
        return ""
    lines = log.read_text(errors="replace").splitlines()[-n:]
    return f"; last lines of {log}:\n" + "\n".join(lines)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `xs`, interpolated between the nearest ranks; NaN when empty."""
    if not xs:
        return float("nan")
    ys = sorted(xs)
    k = (len(ys) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ys) - 1)
    return ys[lo] + (ys[hi] - ys[lo]) * (k - lo)


def machine() -> str:
    """One line: CPU count, RAM, CPU model, Python, load average and vLLM servers already running."""
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.machine(),
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"nproc {os.cpu_count()}, RAM {mem_kib / 2**20:.1f} GiB, {model}, "
        f"Python {platform.python_version()}, load avg {load}, other vLLM servers running: {vllm_servers_running()}"
    )


def vllm_servers_running() -> int:
    """vLLM API servers already running on this machine (other people's tests compete for the same cores)."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"vllm.entrypoints.openai.api_server" in (entry / "cmdline").read_bytes():
                count += 1
        except OSError:
            pass
    return count


def append_results(script: str, lines: Sequence[str], machine_line: str) -> Path:
    """Append a dated markdown section with the machine and the figures to bench/results/<script>.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{script}.md"
    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    section = [f"## {stamp}", "", f"- machine: {machine_line}", *_markdown(lines), "", ""]
    if not path.exists():
        section = [f"# {script}", "", *section]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(section))
    return path


def _markdown(lines: Sequence[str]) -> list[str]:
    """Figures as list items; rows of a markdown table (lines starting with '|') stay a table, between blank lines."""
    out: list[str] = []
    for line in lines:
        row = line.startswith("|")
        if row != (out[-1] if out else "- machine").startswith("|"):  # the machine line comes first
            out.append("")
        out.append(line if row else f"- {line}")
    return out


def report(script: str, lines: Sequence[str], machine_line: str) -> None:
    """Print the figures and append them to the results file."""
    lines = [*lines, "load avg at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())]
    print()
    for line in lines:
        print(line)
    path = append_results(script, lines, machine_line)
    print(f"\nappended to {path.relative_to(ROOT)}")
