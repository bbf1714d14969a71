"""Shared fixtures: a real SQLite file per test, and — once per session — the bundled model converted,
a real CPU vLLM server on 127.0.0.1, the studio itself in a subprocess, and Debian's Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The converted bundled model is reused across runs (conversion takes ~40 s).
MODELS_DIR = Path(os.environ.get("STUDIO_TEST_MODELS", ROOT / "data" / "models")).resolve()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


@pytest.fixture
def db(tmp_path):
    """A fresh real SQLite file with every migration applied, bound to the models."""
    from storage import connect

    database = connect(f"sqlite:///{tmp_path / 'studio.db'}")
    yield database
    database.close()


@pytest.fixture
def owner(db):
    """The local owner (first admin) of a fresh database: rows made without an owner are theirs."""
    from engines import accounts

    return accounts.bootstrap(None)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("studio")


@pytest.fixture(scope="session")
def settings(session_dir):
    from engines.settings import load_settings

    # MODEL_DIRS: the session's own small models (tiny_model) may be fine-tuned and served from there.
    return load_settings(data_dir=session_dir, model_cache_dir=MODELS_DIR, model_dirs=str(session_dir / "local-models"),
                         vllm_start_timeout=400, request_timeout=60)


@pytest.fixture(scope="session")
def bundled_model(settings):
    from engines.models import resolve_base_model

    return resolve_base_model(settings, "SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def server_manager(settings):
    from engines.serving import ServerManager

    manager = ServerManager(settings)
    yield manager
    manager.stop_all()


@pytest.fixture(scope="session")
def endpoint(server_manager, bundled_model):
    """The real CPU vLLM server on the bundled model (started once; restarted if a test killed it)."""
    return server_manager.ensure(bundled_model)


@pytest.fixture
def live_endpoint(server_manager, bundled_model, endpoint):
    """Like `endpoint`, but waits for a restart if an earlier test killed the server."""
    return server_manager.ensure(bundled_model)


def free_port() -> int:
    from engines.serving.manager import free_port as _free_port

    return _free_port()


def start_studio(data_dir: Path, env: dict[str, str], *args: str, ready_path: str = "",
                 timeout: float = 120) -> tuple[subprocess.Popen, str, Path]:
    """`python launch.py ARGS` in its own session on a free port with `env` added; returns (process, base URL,
    output file) once GET base URL + `ready_path` answers 200. Output goes to data_dir/studio-PORT.log."""
    port = free_port()
    full_env = {**os.environ, "DATA_DIR": str(data_dir), "MODEL_CACHE_DIR": str(MODELS_DIR), "PORT": str(port), **env}
    log_path = data_dir / f"studio-{port}.log"
    with open(log_path, "wb") as log:  # the child keeps its own copy of the file descriptor
        proc = subprocess.Popen([sys.executable, "launch.py", *args], cwd=ROOT, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    host = next((a for i, a in enumerate(args) if i and args[i - 1] == "--host"), "127.0.0.1")
    url = f"http://{host}:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log_path.read_text()[-3000:])
        try:
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                return proc, url, log_path
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_studio(proc)
    raise RuntimeError(f"studio did not answer within {timeout:.0f} s: " + log_path.read_text()[-2000:])


def stop_studio(proc: subprocess.Popen) -> None:
    """SIGTERM to the studio's process group (its servers stop with it), then SIGKILL after 30 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def studio_url(session_dir, settings, endpoint, hub_mirror):
    """`python launch.py` in a subprocess on a free port, sharing the session's data dir (it reuses the server);
    Hub downloads go to the session's mirror."""
    proc, url, _ = start_studio(session_dir, {"HF_ENDPOINT": hub_mirror.url}, timeout=90)
    yield url
    stop_studio(proc)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale="en-US")
    p = context.new_page()
    p.set_default_timeout(30_000)
    yield p
    context.close()


@pytest.fixture(scope="session")
def tiny_model(session_dir, bundled_model) -> Path:
    """A random 2-layer Llama with the bundled tokenizer: trains a step in well under a second."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = session_dir / "local-models" / "tiny-llama"  # inside the session settings' MODEL_DIRS
    tok = AutoTokenizer.from_pretrained(bundled_model.source)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def hub_mirror(tiny_model, session_dir):
    """A local Hub mirror (the real huggingface_hub client through HF_ENDPOINT): the tiny model as
    studio-test/tiny-llama, a slow repo with two shards (6 and 40 MiB), a gated one and one without model files."""
    from tests.hub_mirror import HubMirror, MirrorRepo

    slow = session_dir / "hub-slow"
    slow.mkdir(exist_ok=True)
    (slow / "config.json").write_text('{"model_type": "llama"}')
    (slow / "model-00001-of-00002.safetensors").write_bytes(os.urandom(6 * 1024 * 1024))
    (slow / "model-00002-of-00002.safetensors").write_bytes(os.urandom(40 * 1024 * 1024))
    empty = session_dir / "hub-empty"
    empty.mkdir(exist_ok=True)
    (empty / "README.md").write_text("no weights here")
    (empty / "weights.bin").write_bytes(b"0" * 1024)
    mirror = HubMirror({
        "studio-test/tiny-llama": MirrorRepo(tiny_model),
        "studio-test/tiny-llama-e2e": MirrorRepo(tiny_model, bytes_per_s=4 * 1024 * 1024),
        "studio-test/slow": MirrorRepo(slow, bytes_per_s=6 * 1024 * 1024),
        "studio-test/gated": MirrorRepo(tiny_model, gated=True),
        "studio-test/empty": MirrorRepo(empty),
    })
    with mirror:
        yield mirror


@pytest.fixture(scope="session")
def tiny_dataset(settings) -> Path:
    """A few chat rows under the studio's data dir (where datasets may come from), English and Korean."""
    import json

    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}.\nTip: check the sum."}]} for i in range(10)]
    rows.append({"messages": [{"role": "system", "content": "You are Studio Helper."}, {"role": "user", "content": "안녕하세요"},
                              {"role": "assistant", "content": "안녕하세요! 무엇을 도와드릴까요?\n팁: 짧게 물어보세요."}]})
    path = settings.datasets_path / "tiny.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def served_adapter(session_dir, settings, server_manager, endpoint, bundled_model) -> str:
    """A LoRA adapter of the bundled model, trained for 2 steps by a real worker and loaded into the session's server."""
    name = "fixture-helper"
    if name in {m.name for m in server_manager.served_models(max_age=0)}:
        return name
    from engines.settings import load_settings
    from engines.training import JobManager
    from storage import connect, runs

    fixture_settings = load_settings(data_dir=session_dir / "fixture-data", model_cache_dir=MODELS_DIR)
    db = connect(f"sqlite:///{session_dir / 'fixture-adapter.db'}")
    try:
        from engines import accounts

        jm = JobManager(fixture_settings, None, poll_s=0.5)
        rid = jm.submit({"base_model": bundled_model.name, "dataset": "assets/datasets/studio-helper-en.jsonl",
                         "output_name": name, "max_steps": 2, "batch_size": 2, "max_seq_len": 256, "lora_r": 8},
                        actor=accounts.bootstrap(None))
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            jm.tick()
            run = runs.get_run(rid)
            if run.status not in ("queued", "running"):
                break
            time.sleep(1)
        assert run.status == "completed", f"{run.error}\n{jm.log_tail(rid)}"
        server_manager.load_adapter(bundled_model.name, name, run.adapter_path)
    finally:
        db.close()
    return name


@pytest.fixture(scope="session")
def served_adapter_path(session_dir, served_adapter) -> Path:
    """The PEFT folder of the session's `served_adapter` (trained by the fixture's own JobManager)."""
    path = session_dir / "fixture-data" / "runs" / served_adapter / "adapter"
    assert (path / "adapter_config.json").is_file(), path
    return path


@dataclass(frozen=True)
class ApiStudio:
    """A studio with accounts, reached over HTTP: `admin_key` (admin "boss") and `member_key` (member "ana")."""

    url: str
    admin_key: str
    member_key: str
    fuzz_key: str  # member "fuzz": for generated requests (schemathesis), so they never touch ana's or boss's rows
    data_dir: Path
    model: str

    def client(self, key: str | None = None, **kwargs) -> httpx.Client:
        """An httpx client on /api/v1 with `key` (default: the member's) as the Bearer token."""
        key = self.member_key if key is None else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url.rstrip("/") + "/api/v1", headers=headers, timeout=120, **kwargs)


def _cli(data_dir: Path, *args: str, stdin: str = "") -> str:
    env = {**os.environ, "DATA_DIR": str(data_dir), "MODEL_CACHE_DIR": str(MODELS_DIR)}
    out = subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, env=env, input=stdin, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="session")
def api_studio(tmp_path_factory, endpoint) -> ApiStudio:
    """`python launch.py` with accounts (AUTH=boss:…, member ana) and a key each, chatting through the session's
    CPU vLLM server (VLLM_BASE_URL: no second server), on its own data folder."""
    data_dir = tmp_path_factory.mktemp("api-studio")
    env = {"AUTH": "boss:boss-password-1", "VLLM_BASE_URL": endpoint.base_url}
    _cli(data_dir, "users", "add", "ana", "--password-stdin", stdin="ana-password-1\n")
    _cli(data_dir, "users", "add", "fuzz", "--password-stdin", stdin="fuzz-password-1\n")
    proc, url, _ = start_studio(data_dir, env, timeout=120, ready_path="healthz")
    try:
        admin_key = _cli(data_dir, "keys", "create", "boss", "--label", "tests")
        member_key = _cli(data_dir, "keys", "create", "ana", "--label", "tests")
        fuzz_key = _cli(data_dir, "keys", "create", "fuzz", "--label", "tests")
        yield ApiStudio(url=url, admin_key=admin_key, member_key=member_key, fuzz_key=fuzz_key, data_dir=data_dir,
                        model=endpoint.model)
    finally:
        stop_studio(proc)
