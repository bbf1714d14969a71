"""Fine-tunes and merges on a real Ray cluster through the Ray Jobs REST API (the `ray` job backend), with no shared
file system.

The module starts a real Ray head (`ray start --head --num-cpus=1`, token auth on, every address on 127.0.0.1) and a
real `mlflow server` (artifact proxying) on loopback, and stops both at the end. The studio side is a JobManager
with RAY_ADDRESS and MLFLOW_TRACKING_URI set and its own DATA_DIR; the worker runs in the Ray job's working directory
(a scratch folder under the system's temp folder) and must never read or write that DATA_DIR: an audit hook
(`sys.addaudithook`, loaded into every Python process of the cluster through `sitecustomize`) records every file
operation under it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from engines.accounts import Actor
from engines.compute import mlflow_store
from engines.events import read_events
from engines.models.exports import BUNDLE_JOB, REMOTE_FILE, ExportManager
from engines.paths import is_inside
from engines.processes import stop_tree, working_in
from engines.training import JobManager
from storage import catalog, runs
from tests.conftest import MODELS_DIR

pytestmark = pytest.mark.training

BIN = Path(sys.executable).parent
DATASET = "assets/datasets/studio-helper-en.jsonl"

AUDIT_HOOK = '''\
"""Test-only: record file operations under STUDIO_TEST_FORBIDDEN (the studio's DATA_DIR) to STUDIO_TEST_AUDIT_LOG."""
import os
import sys

_root = os.environ.get("STUDIO_TEST_FORBIDDEN")
_log = os.environ.get("STUDIO_TEST_AUDIT_LOG")
_EVENTS = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.symlink",
           "os.link", "os.truncate", "os.chmod", "os.chown", "os.utime", "os.chdir", "shutil.copyfile", "shutil.copymode",
           "shutil.copystat", "shutil.copytree", "shutil.move", "shutil.rmtree", "glob.glob", "os.exec", "os.spawn",
           "subprocess.Popen"}


def _note(line):
    with open(_log, "a") as fh:
        fh.write(line + "\\n")


def _hook(event, args):
    if event not in _EVENTS:
        return
    for arg in args[:2]:
        if isinstance(arg, (list, tuple)):
            arg = " ".join(map(str, arg))
        if not isinstance(arg, (str, bytes, os.PathLike)):
            continue
        text = os.fsdecode(arg)
        if _root in text:  # a command line naming the folder counts too
            _note(f"{os.getpid()} {event} {text}")
            continue
        try:
            path = os.path.realpath(text)
        except (OSError, ValueError):
            continue
        if path == _root or path.startswith(_root + os.sep):
            _note(f"{os.getpid()} {event} {path}")


if _root and _log:
    _root = os.path.realpath(_root)
    try:  # sys.argv is not filled in yet while site runs; the kernel's copy is
        _cmd = open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
    except OSError:
        _cmd = ""
    if "engines.training.worker" in _cmd or "engines.models.export" in _cmd:
        _note(f"{os.getpid()} armed {_cmd}")
    sys.addaudithook(_hook)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, **kw) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2, **kw).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@dataclass(frozen=True)
class Cluster:
    ray_url: str
    token: str
    mlflow_url: str
    studio_dir: Path  # the studio's DATA_DIR: the workers must never touch it
    audit_log: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head and an MLflow server on loopback for this module (started side by side), stopped at the end."""
    studio_dir = tmp_path_factory.mktemp("ray-studio")
    base = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: Ray's socket paths must stay under 107 characters
    hooks = base / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT_HOOK)
    audit_log = base / "audit.log"
    token = secrets.token_hex(16)
    ray_port, dash_port = free_port(), free_port()
    ray_env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` on the node = this venv's
        "PYTHONPATH": str(hooks),
        "STUDIO_TEST_FORBIDDEN": str(studio_dir), "STUDIO_TEST_AUDIT_LOG": str(audit_log),
        # Keep every Ray address on 127.0.0.1 (Ray otherwise swaps loopback for the machine's own address).
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0",
    }
    ray_log = base / "ray-head.log"
    with open(ray_log, "wb") as fh:
        head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=1", f"--temp-dir={base / 'ray'}",
             "--node-ip-address=127.0.0.1", f"--port={ray_port}", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dash_port}", f"--ray-client-server-port={free_port()}",
             f"--dashboard-agent-listen-port={free_port()}", "--include-dashboard=true", "--disable-usage-stats"],
            cwd=base, env=ray_env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    mlflow_port = free_port()
    mlflow_log = base / "mlflow.log"
    with open(mlflow_log, "wb") as fh:
        mlflow = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}", "--artifacts-destination", str(base / "artifacts"),
             "--serve-artifacts"],
            cwd=base, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, stdout=fh, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        ray_url, mlflow_url = f"http://127.0.0.1:{dash_port}", f"http://127.0.0.1:{mlflow_port}"
        wait_http(f"{ray_url}/api/version", head, ray_log, 180, headers={"Authorization": f"Bearer {token}"})
        wait_http(f"{mlflow_url}/health", mlflow, mlflow_log, 120)
        yield Cluster(ray_url=ray_url, token=token, mlflow_url=mlflow_url, studio_dir=studio_dir, audit_log=audit_log)
    finally:
        stop_tree(head.pid, proc=head, grace=10)
        stop_tree(mlflow.pid, proc=mlflow, grace=5)
        for pid in working_in(base):  # a job's worker runs in a session of its own; if a test failed mid-job, stop it too
            stop_tree(pid, grace=5)
        shutil.rmtree(base, ignore_errors=True)


def studio_settings(cluster: Cluster, session_dir: Path, **over):
    """The studio's settings: its own DATA_DIR, the shared model cache, RAY_ADDRESS (+ token) and the MLflow server."""
    from engines.settings import load_settings

    return load_settings(**{"data_dir": cluster.studio_dir, "model_cache_dir": MODELS_DIR,
                            "model_dirs": str(session_dir / "local-models"), "ray_address": cluster.ray_url,
                            "ray_auth_token": cluster.token, "mlflow_tracking_uri": cluster.mlflow_url,
                            "train_cancel_grace": 60, **over})


@pytest.fixture
def ray_settings(cluster, session_dir):
    return studio_settings(cluster, session_dir)


def wait_for(pred, timeout: float = 240.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s")


def status(run_id: int) -> str:
    return runs.get_run(run_id).status


def running_at(run_id: int, step: int) -> bool:
    run = runs.get_run(run_id)
    assert run.status in ("queued", "running"), f"{run.status}: {run.error}"
    return run.status == "running" and run.step >= step


async def ask(ep, question: str) -> str:
    from engines.inference import ChatParams, stream_chat
    from engines.inference.chat import Delta

    parts = [ev.text async for ev in stream_chat(ep, [{"role": "user", "content": question}],
                                                 ChatParams(max_tokens=12, temperature=0)) if isinstance(ev, Delta)]
    return "".join(parts)


def spec(model: Path | str, name: str, **over) -> dict:
    return {"base_model": str(model), "dataset": DATASET, "output_name": name, "lora_r": 8, "lora_alpha": 16,
            "target_modules": ["q_proj", "v_proj"], "batch_size": 2, "max_seq_len": 256, "learning_rate": 1e-3,
            "lr_scheduler": "constant", "warmup_ratio": 0.0, "save_steps": 1000, **over}


def test_a_bundled_model_fine_tune_on_ray_cancels_to_a_checkpoint_resumes_and_its_adapter_comes_back(
        db, owner, cluster, ray_settings, bundled_model, server_manager, endpoint):
    jm = JobManager(ray_settings, server_manager, poll_s=0.3)  # the session's CPU vLLM serves what comes back
    jm.start()
    try:
        rid = jm.submit(spec(bundled_model.name, "ray-helper", max_steps=5), actor=owner)
        wait_for(lambda: running_at(rid, 1))
        first = runs.get_run(rid)
        assert first.compute == "ray" and first.remote_job_id.startswith(f"chat-studio-{rid}-ray-helper-")
        assert first.pid is None  # nothing of it runs under the studio

        assert jm.cancel(rid, actor=owner) == "cancelling"  # Ray's stop: SIGTERM, the worker checkpoints and exits
        wait_for(lambda: status(rid) in ("cancelled", "failed", "interrupted"), timeout=120)
        run = runs.get_run(rid)
        assert run.status == "cancelled", f"{run.error}\n{jm.log_tail(rid)}"
        events, offset = jm.events(rid)
        kinds = [e["type"] for e in events]
        assert kinds[0] == "start" and "progress" in kinds and kinds[-1] == "cancelled"
        assert any("loss" in e for e in events if e["type"] == "metric")  # loss points arrive through the job's log
        checkpoint = [e for e in events if e["type"] == "checkpoint"][-1]
        assert checkpoint["stored"] == "mlflow"
        stopped_at = checkpoint["step"]
        assert 1 <= stopped_at < 5
        assert f"checkpoints/checkpoint-{stopped_at}" in mlflow_store.list_dirs(cluster.mlflow_url, run.mlflow_run_id, "checkpoints")

        jm.resume(rid, actor=owner)  # a new Ray job, which fetches the checkpoint from the artifact store
        wait_for(lambda: status(rid) in ("completed", "failed", "interrupted", "cancelled"), timeout=300)
        run = runs.get_run(rid)
        assert run.status == "completed", f"{run.error}\n{jm.log_tail(rid)}"
        assert run.remote_job_id != first.remote_job_id and run.step == 5
        after, _ = read_events(Path(run.run_dir) / "events.jsonl", offset)
        start = next(e for e in after if e["type"] == "start")
        assert start["resume_from"] == f"checkpoint-{stopped_at}"
        steps = [e["step"] for e in after if e["type"] == "progress"]
        assert steps[0] == stopped_at and steps[-1] == 5
        assert run.mlflow_run_id == events[0]["mlflow_run_id"]  # one MLflow run across both jobs

        # The adapter came back from the artifact store into the studio's runs folder and was registered from there.
        adapter = Path(run.adapter_path)
        assert is_inside(adapter, (ray_settings.runs_path,)) and json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
        stored = dict(mlflow_store.list_files(cluster.mlflow_url, run.mlflow_run_id, "adapter"))
        assert {f"adapter/{p.relative_to(adapter).as_posix()}": p.stat().st_size for p in adapter.rglob("*") if p.is_file()} == stored
        assert catalog.get_model("ray-helper").run_id == rid and catalog.get_model("ray-helper").path == str(adapter)
        assert "submitted" in (Path(run.run_dir) / "train.log").read_text()  # the job's own log lines arrive too
        # ... and hot-loaded from there into the local CPU vLLM server of its base, where it answers a chat.
        wait_for(lambda: runs.run_metrics(runs.get_run(rid)).get("served") is not None, timeout=120)
        assert runs.run_metrics(runs.get_run(rid)).get("served") is True, runs.run_metrics(runs.get_run(rid))
        assert asyncio.run(ask(server_manager.endpoint_for("ray-helper"), "What is LoRA?")).strip()

        # The workers ran in scratch folders of their own, never in (or reading, or writing) the studio's data folder.
        starts = [e for e in read_events(Path(run.run_dir) / "events.jsonl")[0] if e["type"] == "start"]
        assert len(starts) == 2 and all(not is_inside(s["run_dir"], (cluster.studio_dir,)) for s in starts)
        audit = cluster.audit_log.read_text().splitlines()
        assert len([line for line in audit if " armed " in line]) >= 2, audit  # the hook watched both workers
        assert [line for line in audit if " armed " not in line] == []
    finally:
        jm.stop()


def test_an_app_restart_adopts_the_running_ray_job_and_sees_it_finish(db, owner, cluster, ray_settings, tiny_model):
    first = JobManager(ray_settings, None, poll_s=0.3)
    first.start()
    rid = first.submit(spec(tiny_model, "ray-adopt", max_steps=40), actor=owner)
    wait_for(lambda: running_at(rid, 1))
    first.stop()  # the app goes away; the Ray job does not
    job_id = runs.get_run(rid).remote_job_id
    assert httpx.get(f"{cluster.ray_url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {cluster.token}"},
                     timeout=10).json()["status"] in ("RUNNING", "PENDING")
    second = JobManager(ray_settings, None, poll_s=0.3)
    second.start()  # reconcile: the backend recorded in the row is asked, and the job is adopted
    try:
        assert status(rid) == "running"
        wait_for(lambda: status(rid) in ("completed", "failed", "interrupted"), timeout=240)
        run = runs.get_run(rid)
        assert run.status == "completed", f"{run.error}\n{second.log_tail(rid)}"
        assert run.step == 40 and run.remote_job_id == job_id
        assert (Path(run.adapter_path) / "adapter_config.json").is_file()
        steps = [e["step"] for e in second.events(rid)[0] if e["type"] == "progress"]
        assert steps == sorted(steps) and steps[-1] == 40  # nothing lost or read twice across the restart
    finally:
        second.stop()
    assert [line for line in cluster.audit_log.read_text().splitlines() if " armed " not in line] == []


def test_a_cluster_that_cannot_be_reached_fails_the_run_with_one_clear_sentence(db, owner, cluster, session_dir, tiny_model):
    dead = studio_settings(cluster, session_dir, ray_address=f"http://127.0.0.1:{free_port()}")
    jm = JobManager(dead, None, poll_s=0.3)
    rid = jm.submit(spec(tiny_model, "ray-unreachable", max_steps=2), actor=owner)
    jm.tick()
    wait_for(lambda: status(rid) != "queued", timeout=60)
    run = runs.get_run(rid)
    assert run.status == "failed" and "cannot be reached" in run.error and "\n" not in run.error
    assert run.compute is None and run.remote_job_id is None


# ---- merges on Ray ------------------------------------------------------------------------------------------------------
ADMIN = Actor(id=1, name="admin", role="admin")  # exports are admin-only


def lora_adapter(settings, parent: str, base_folder: Path, name: str) -> Path:
    """A LoRA adapter of `base_folder` with random, non-zero weights (a merge changes the model), saved in the studio's
    runs folder and registered as `name` (its base: `parent`)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    folder = settings.runs_path / name / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(base_folder), config).save_pretrained(folder)
    catalog.upsert_model(name, "adapter", path=str(folder), parent=parent)
    return folder


def ray_job(cluster: Cluster, job_id: str) -> dict:
    return httpx.get(f"{cluster.ray_url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {cluster.token}"},
                     timeout=10).json()


def test_a_merge_on_ray_comes_back_into_the_studios_exports_as_a_model_that_loads(db, cluster, ray_settings, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora_adapter(ray_settings, str(tiny_model), tiny_model, "ray-merge-tiny")
    job_id = ExportManager(ray_settings).submit("merge", "ray-merge-tiny", actor=ADMIN)
    folder = ray_settings.exports_path / "jobs" / job_id
    first = ExportManager(ray_settings).job(job_id)
    assert first.compute == "ray" and first.remote_job_id.startswith("chat-studio-0-")
    assert json.loads((folder / "job.json").read_text())["compute"] == "ray"
    assert json.loads((folder / REMOTE_FILE).read_text())["job_id"] == first.remote_job_id
    assert not (folder / "pid").exists()  # nothing of it runs under the studio
    # The bundle carries the adapter, not the base model: the node reads that where it sees the model folders.
    assert json.loads((folder / BUNDLE_JOB).read_text())["base"] == str(tiny_model)

    job = ExportManager(ray_settings).wait(job_id, 240)  # a new manager each read: what a restarted app sees
    assert job.status == "done", (job.error, (folder / "export.log").read_text()[-3000:])
    out = ray_settings.exports_path / "merged" / "ray-merge-tiny-merged"
    assert job.result == str(out) and job.remote_job_id == first.remote_job_id
    wait_for(lambda: ray_job(cluster, job.remote_job_id)["status"] == "SUCCEEDED", timeout=30)  # its process exiting
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg.get("torch_dtype", cfg.get("dtype")) == "bfloat16" and "peft_type" not in cfg
    assert not (folder / "merged").exists() and not out.with_name(out.name + ".partial").exists()
    # Where it ran is shown: the Models tab's exports table and the REST API's job.
    from api.rest.models import job_out
    from studio.exports_panel import jobs_frame

    assert jobs_frame("en", [job]).iloc[0, 3] == "done · on Ray" and jobs_frame("ko", [job]).iloc[0, 3] == "완료 · Ray에서"
    rest = job_out(job, ray_settings)
    assert rest.compute == "ray" and rest.remote_job_id == first.remote_job_id and rest.status == "done"

    # A plain model: it loads without peft, its attention weights moved by the adapter, and it generates.
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], base.state_dict()[q])
    assert torch.equal(merged.state_dict()["model.layers.0.mlp.up_proj.weight"], base.state_dict()["model.layers.0.mlp.up_proj.weight"])
    tok = AutoTokenizer.from_pretrained(out)
    generated = merged.generate(**tok("Hello", return_tensors="pt"), max_new_tokens=1, do_sample=False)
    assert generated.shape[1] == len(tok("Hello")["input_ids"]) + 1

    # Where it ran: a scratch folder of the node's (gone now), never the studio's data folder.
    events = read_events(folder / "events.jsonl")[0]
    start = next(e for e in events if e["type"] == "start")
    assert not is_inside(start["work_dir"], (cluster.studio_dir,)) and not Path(start["work_dir"]).exists()
    assert [e["type"] for e in events][-2:] == ["done", "done"]  # the worker's (stored) and the studio's (fetched)
    assert "submitted" in (folder / "export.log").read_text()
    audit = cluster.audit_log.read_text().splitlines()
    assert any(" armed " in line and "engines.models.export" in line for line in audit), audit
    assert [line for line in audit if " armed " not in line] == []


def test_cancelling_a_merge_on_ray_stops_its_job_and_leaves_no_merged_folder(db, cluster, ray_settings, bundled_model):
    lora_adapter(ray_settings, bundled_model.name, Path(bundled_model.source), "ray-merge-cancel")
    exports = ExportManager(ray_settings)
    job_id = exports.submit("merge", "ray-merge-cancel", actor=ADMIN)
    folder = ray_settings.exports_path / "jobs" / job_id

    def merging() -> bool:
        j = exports.job(job_id)
        assert j.status == "running", (j.status, j.error, (folder / "export.log").read_text()[-3000:])
        return j.pct > 0  # the worker is loading the base model
    wait_for(merging, timeout=180)
    assert exports.cancel(job_id, actor=ADMIN)
    remote_id = exports.job(job_id).remote_job_id
    assert ray_job(cluster, remote_id)["status"] == "STOPPED"  # cancel waited for the cluster to stop it
    assert not exports.cancel(job_id, actor=ADMIN)  # not running any more

    time.sleep(2)  # a download that was under way would have finished by now: it must not land anywhere
    job = ExportManager(ray_settings).job(job_id)  # as a restarted app sees it
    assert job.status == "cancelled" and job.result is None
    out = ray_settings.exports_path / "merged" / "ray-merge-cancel-merged"
    assert not out.exists() and not out.with_name(out.name + ".partial").exists() and not (folder / "merged").exists()
    events = read_events(folder / "events.jsonl")[0]
    assert [e["type"] for e in events][-1] == "cancelled" and "done" not in [e["type"] for e in events]  # stopped mid-merge
    start = next(e for e in events if e["type"] == "start")
    wait_for(lambda: not Path(start["work_dir"]).exists(), timeout=30)  # the worker removed its scratch folder
    assert [line for line in cluster.audit_log.read_text().splitlines() if " armed " not in line] == []


def test_a_merge_the_cluster_cannot_take_is_an_error_job_with_one_sentence(db, cluster, session_dir, tiny_model):
    dead = studio_settings(cluster, session_dir, ray_address=f"http://127.0.0.1:{free_port()}")
    lora_adapter(dead, str(tiny_model), tiny_model, "ray-merge-unreachable")
    job = ExportManager(dead).job(ExportManager(dead).submit("merge", "ray-merge-unreachable", actor=ADMIN))
    assert job.status == "error" and job.compute == "ray" and job.remote_job_id is None
    assert "cannot be reached" in job.error and "\n" not in job.error
    assert not (dead.exports_path / "merged" / "ray-merge-unreachable-merged").exists()
