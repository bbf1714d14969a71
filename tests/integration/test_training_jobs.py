"""Real training workers (subprocesses) driven by the JobManager: done, cancel, kill -9, app restart, resume,
MLflow, and an adapter trained on the bundled model answering from the running CPU vLLM server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from engines.events import read_events
from engines.serving.manager import pid_alive
from engines.training import JobManager
from storage import catalog, runs

pytestmark = pytest.mark.training


def spec(model: Path | str, dataset: Path, name: str, **over) -> dict:
    return {"base_model": str(model), "dataset": str(dataset), "output_name": name, "lora_r": 8, "lora_alpha": 16,
            "batch_size": 2, "max_seq_len": 256, "learning_rate": 1e-3, "lr_scheduler": "constant", "warmup_ratio": 0.0,
            "save_steps": 1000, **over}


def wait_for(pred, timeout: float = 180.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s")


def status(run_id: int) -> str:
    return runs.get_run(run_id).status


def event_types(jm: JobManager, run_id: int) -> list[str]:
    return [e["type"] for e in jm.events(run_id)[0]]


@pytest.fixture
def jobs(db, settings):
    jm = JobManager(settings, None, poll_s=0.3)
    jm.start()
    yield jm
    jm.stop()
    for r in runs.list_runs():
        if r.pid and pid_alive(r.pid):
            os.killpg(r.pid, signal.SIGKILL)


def test_tiny_job_runs_to_done_with_events_adapter_and_mlflow(jobs, owner, settings, tiny_model, tiny_dataset):
    rid = jobs.submit(spec(tiny_model, tiny_dataset, "tiny-done", max_steps=4, eval_split=0.2, eval_steps=2), actor=owner)
    wait_for(lambda: status(rid) in ("completed", "failed"))
    run = runs.get_run(rid)
    assert run.status == "completed", run.error
    kinds = event_types(jobs, rid)
    assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds and "metric" in kinds
    assert run.step == 4 and run.total_steps == 4 and run.backend == "transformers"
    adapter = Path(run.adapter_path)
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    assert (adapter / "adapter_model.safetensors").stat().st_size > 0
    assert catalog.get_model("tiny-done").run_id == rid  # lineage: adapter model -> run -> base, dataset
    assert run.base_model == str(tiny_model) and run.dataset == str(tiny_dataset)
    h = jobs.history(rid)
    assert [m["step"] for m in h.metrics if "loss" in m] == [1, 2, 3, 4]
    assert any("eval_loss" in m for m in h.metrics)
    # The FLOP model's time per step was noted at the start; with the measured one it calibrates the next estimate.
    summary = runs.run_metrics(run)
    assert summary["estimate"]["step_s"] > 0 and summary["estimate"]["steps"] == 4 and summary["steps_per_s"] > 0
    from engines.training.calibration import calibration

    cal = calibration(gpu=False)
    assert cal is not None and cal.runs >= 1 and cal.factor > 0 and cal.overhead_s > 0

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    mrun = client.get_run(run.mlflow_run_id)
    assert mrun.info.status == "FINISHED"
    assert mrun.data.params["lora_r"] == "8" and mrun.data.params["method"] == "lora"
    assert [m.step for m in client.get_metric_history(run.mlflow_run_id, "loss")] == [1, 2, 3, 4]
    # History's lineage reads the same curve back from MLflow's store (no mlflow import in the app).
    from engines.history.lineage import run_curves

    curves, source = run_curves(settings, run)
    assert source == "mlflow" and list(curves[curves.series.str.endswith("train")].step) == [1, 2, 3, 4]
    artifacts = {a.path for a in client.list_artifacts(run.mlflow_run_id, "adapter")}
    assert "adapter/adapter_config.json" in artifacts

    # "Open in MLflow": the UI starts on demand on 127.0.0.1 and links straight to this run.
    import httpx

    from engines.serving import MlflowUI

    ui = MlflowUI(settings)
    try:
        url = ui.run_url(run.mlflow_run_id)
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/runs/{run.mlflow_run_id}") and "/#/experiments/" in url
        assert httpx.get(url.split("#")[0], timeout=10).status_code == 200
    finally:
        ui.stop()
    assert ui.proc is None


def test_qlora_trains_on_cpu_through_bitsandbytes_4bit(jobs, owner, tiny_model, tiny_dataset):
    rid = jobs.submit(spec(tiny_model, tiny_dataset, "tiny-qlora", method="qlora", max_steps=2), actor=owner)
    wait_for(lambda: status(rid) in ("completed", "failed", "interrupted"))
    assert status(rid) == "completed", runs.get_run(rid).error
    info = next(e for e in jobs.events(rid)[0] if e["type"] == "log" and "load_in_4bit" in e)
    assert info["load_in_4bit"] is True and info["device"] == "cpu"
    assert (Path(runs.get_run(rid).adapter_path) / "adapter_model.safetensors").is_file()


def test_invalid_spec_and_taken_name_are_refused_before_anything_starts(jobs, owner, tiny_model, tiny_dataset):
    from engines.training import SpecError

    with pytest.raises(SpecError) as err:
        jobs.submit(spec(tiny_model, tiny_dataset, "x", lora_r=0), actor=owner)
    assert {"lora_r"} <= set(err.value.fields)
    with pytest.raises(SpecError) as err:
        jobs.submit(spec(tiny_model, "/etc/hosts.jsonl", "outside"), actor=owner)
    assert "dataset" in err.value.fields
    jobs.submit(spec(tiny_model, tiny_dataset, "taken", max_steps=1), actor=owner)
    with pytest.raises(SpecError) as err:
        jobs.submit(spec(tiny_model, tiny_dataset, "taken"), actor=owner)
    assert "output_name" in err.value.fields
    assert runs.run_by_name("outside") is None


def _started(jobs: JobManager, rid: int, step: int = 2) -> bool:
    run = runs.get_run(rid)
    return run.status == "running" and run.step >= step


def test_cancel_stops_the_worker_and_marks_the_run_cancelled(jobs, owner, tiny_model, tiny_dataset):
    rid = jobs.submit(spec(tiny_model, tiny_dataset, "tiny-cancel", max_steps=5000), actor=owner)
    wait_for(lambda: _started(jobs, rid))
    pid = runs.get_run(rid).pid
    assert jobs.cancel(rid, actor=owner) == "cancelling"
    wait_for(lambda: status(rid) == "cancelled", timeout=60)
    assert not pid_alive(pid)
    assert "cancelled" in event_types(jobs, rid)
    assert runs.get_run(rid).pid is None


def test_kill_9_marks_the_run_interrupted_and_keeps_its_log(jobs, owner, tiny_model, tiny_dataset):
    rid = jobs.submit(spec(tiny_model, tiny_dataset, "tiny-kill", max_steps=5000), actor=owner)
    wait_for(lambda: _started(jobs, rid))
    run = runs.get_run(rid)
    os.killpg(run.pid, signal.SIGKILL)
    wait_for(lambda: status(rid) in ("interrupted", "failed"), timeout=30)
    run = runs.get_run(rid)
    assert "-9" in (run.error or "")
    assert "engines.training.worker" in (Path(run.run_dir) / "train.log").read_text()


def test_a_restarted_manager_adopts_a_running_job_and_sees_it_finish(db, owner, settings, tiny_model, tiny_dataset):
    first = JobManager(settings, None, poll_s=0.3)
    first.start()
    rid = first.submit(spec(tiny_model, tiny_dataset, "tiny-adopt", max_steps=40), actor=owner)
    wait_for(lambda: _started(first, rid, 1))
    first.stop()  # the app goes away; the worker does not
    pid = runs.get_run(rid).pid
    assert pid_alive(pid)
    second = JobManager(settings, None, poll_s=0.3)
    second.start()  # reconcile: the live worker is adopted, not marked interrupted
    try:
        assert status(rid) == "running"
        wait_for(lambda: status(rid) in ("completed", "failed", "interrupted"))
        assert status(rid) == "completed" and runs.get_run(rid).step == 40
    finally:
        second.stop()


def test_reconcile_marks_a_job_whose_worker_died_while_the_app_was_down(db, owner, settings, tiny_model, tiny_dataset):
    first = JobManager(settings, None, poll_s=0.3)
    first.start()
    rid = first.submit(spec(tiny_model, tiny_dataset, "tiny-dead", max_steps=5000), actor=owner)
    wait_for(lambda: _started(first, rid, 1))
    first.stop()
    os.killpg(runs.get_run(rid).pid, signal.SIGKILL)
    time.sleep(0.5)
    second = JobManager(settings, None, poll_s=0.3)
    second.reconcile()
    assert status(rid) == "interrupted"


def test_resume_continues_from_the_last_checkpoint(jobs, owner, tiny_model, tiny_dataset):
    rid = jobs.submit(spec(tiny_model, tiny_dataset, "tiny-resume", max_steps=40, save_steps=3), actor=owner)
    wait_for(lambda: _started(jobs, rid, 5))
    jobs.cancel(rid, actor=owner)  # graceful: the worker saves a checkpoint at the step it stops on
    wait_for(lambda: status(rid) == "cancelled", timeout=60)
    stopped_at = max(e["step"] for e in jobs.events(rid)[0] if e["type"] == "checkpoint")
    assert stopped_at >= 5
    _, offset = jobs.events(rid)
    jobs.resume(rid, actor=owner)
    wait_for(lambda: status(rid) in ("completed", "failed", "interrupted"))
    assert status(rid) == "completed", runs.get_run(rid).error
    after, _ = read_events(Path(runs.get_run(rid).run_dir) / "events.jsonl", offset)
    start = next(e for e in after if e["type"] == "start")
    assert start["resume_from"] == f"checkpoint-{stopped_at}"
    steps = [e["step"] for e in after if e["type"] == "progress"]
    assert steps[0] == stopped_at and steps[-1] == 40  # the count continues; it does not restart at 0
    assert runs.get_run(rid).mlflow_run_id == next(e for e in jobs.events(rid)[0] if e["type"] == "start")["mlflow_run_id"]


def test_bundled_model_adapter_is_loaded_into_the_running_server_and_answers(db, owner, settings, server_manager, endpoint, bundled_model):
    from engines.inference import ChatParams, stream_chat
    from engines.inference.chat import Delta

    jm = JobManager(settings, server_manager, poll_s=0.5)
    jm.start()
    try:
        rid = jm.submit({"base_model": bundled_model.name, "dataset": "assets/datasets/studio-helper-en.jsonl",
                         "output_name": "bundled-helper", "max_steps": 3, "batch_size": 2, "max_seq_len": 384,
                         "lora_r": 8, "lora_alpha": 16, "learning_rate": 5e-4}, actor=owner)
        wait_for(lambda: status(rid) in ("completed", "failed", "interrupted"), timeout=400, every=1)
        run = runs.get_run(rid)
        assert run.status == "completed", f"{run.error}\n{jm.log_tail(rid)}"
        wait_for(lambda: runs.run_metrics(runs.get_run(rid)).get("served") is not None, timeout=120)
        assert runs.run_metrics(runs.get_run(rid)).get("served") is True, runs.run_metrics(runs.get_run(rid))
    finally:
        jm.stop()
    served = {m.name: m for m in server_manager.served_models(max_age=0)}
    assert served["bundled-helper"].kind == "adapter" and served["bundled-helper"].parent == bundled_model.name
    ep = server_manager.endpoint_for("bundled-helper")

    async def ask() -> str:
        parts = []
        async for ev in stream_chat(ep, [{"role": "user", "content": "What is LoRA?"}], ChatParams(max_tokens=16, temperature=0)):
            if isinstance(ev, Delta):
                parts.append(ev.text)
        return "".join(parts)

    assert asyncio.run(ask()).strip()
    # A server started later for this base brings the saved adapter back by itself.
    assert any(a.name == "bundled-helper" for a in server_manager.saved_adapters(bundled_model.name))
    assert "--lora-modules" in server_manager.command(bundled_model, 1234)
