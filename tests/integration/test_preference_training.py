"""DPO and ORPO through the real training worker (subprocess): a preference dataset built from stored arena votes,
preference metrics in the run's events and in MLflow, the adapter served by the CPU vLLM server and answering;
a second stage from an SFT adapter; and the LLM judge rating the same battles for judge–human agreement."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from engines.datasets import preference_files
from engines.datasets.preferences import PreferenceFilters, build_preferences
from engines.evaluation import agreement, compare
from engines.serving.manager import pid_alive
from engines.training import JobManager, SpecError
from storage import runs

pytestmark = pytest.mark.training
PREFERENCE_METRICS = ("rewards/margins", "rewards/chosen", "rewards/rejected")


def wait_for(pred, timeout: float = 400.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := pred():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s")


def finished(jm: JobManager, rid: int) -> runs.TrainingRun:
    wait_for(lambda: runs.get_run(rid).status in ("completed", "failed", "interrupted", "cancelled"))
    run = runs.get_run(rid)
    assert run.status == "completed", f"{run.error}\n{jm.log_tail(rid)}"
    return run


def metric_events(jm: JobManager, rid: int) -> list[dict]:
    return [e for e in jm.events(rid)[0] if e["type"] == "metric" and "loss" in e]


@pytest.fixture
def voted_dataset(db, owner, settings) -> tuple[Path, list[int]]:
    """Six arena battles the owner voted on (and one tie), built into a preference dataset version."""
    ids = []
    for i in range(6):
        bid = compare.start_battle(owner, f"What is {i} plus {i}?", "base", "tuned", blind=True)
        good, bad = f"{i} plus {i} is {2 * i}.", f"I am not sure, maybe {2 * i + 3}?"
        compare.save_battle_answers(owner, bid, *((good, bad) if i % 2 else (bad, good)))
        compare.record_vote(owner, bid, "b" if i % 2 == 0 else "a")
        ids.append(bid)
    tie = compare.start_battle(owner, "Say something", "base", "tuned", blind=True)
    compare.save_battle_answers(owner, tie, "something", "anything")
    compare.record_vote(owner, tie, "tie")
    report = build_preferences(owner, PreferenceFilters(sources=("battle",)), eval_fraction=0.2, seed=1)
    assert len(report.rows) == 6 and report.skipped == {"tie_or_both_bad": 1}
    version = preference_files.create_preference_dataset(settings, "votes", report.rows, actor=owner)
    return Path(version.path), ids + [tie]


@pytest.fixture
def jobs(db, settings):
    jm = JobManager(settings, None, poll_s=0.3)
    jm.start()
    yield jm
    jm.stop()
    for r in runs.list_runs():
        if r.pid and pid_alive(r.pid):
            os.killpg(r.pid, signal.SIGKILL)


def spec(model, dataset, name: str, **over) -> dict:
    return {"base_model": str(model), "dataset": str(dataset), "output_name": name, "lora_r": 8, "lora_alpha": 16,
            "batch_size": 2, "max_seq_len": 256, "learning_rate": 1e-3, "lr_scheduler": "constant", "warmup_ratio": 0.0,
            "save_steps": 1000, **over}


def test_objective_and_dataset_must_match_before_anything_starts(jobs, owner, tiny_model, tiny_dataset, voted_dataset):
    prefs, _ = voted_dataset
    with pytest.raises(SpecError) as err:
        jobs.submit(spec(tiny_model, prefs, "sft-on-prefs"), actor=owner)
    assert "dpo or orpo" in err.value.fields["dataset"]
    with pytest.raises(SpecError) as err:
        jobs.submit(spec(tiny_model, tiny_dataset, "dpo-on-chat", objective="dpo"), actor=owner)
    assert "preference dataset" in err.value.fields["dataset"]
    with pytest.raises(SpecError) as err:
        jobs.submit(spec(tiny_model, prefs, "second", objective="dpo", sft_adapter="no-such-run"), actor=owner)
    assert "no completed fine-tune run" in err.value.fields["sft_adapter"]
    assert runs.list_runs() == []


def test_dpo_second_stage_from_an_sft_adapter_and_orpo(jobs, owner, tiny_model, tiny_dataset, voted_dataset):
    prefs, _ = voted_dataset
    sft = finished(jobs, jobs.submit(spec(tiny_model, tiny_dataset, "tiny-sft", max_steps=2), actor=owner))
    dpo_id = jobs.submit(spec(tiny_model, prefs, "tiny-dpo", objective="dpo", beta=0.2, max_steps=2,
                              sft_adapter="tiny-sft"), actor=owner)
    dpo = finished(jobs, dpo_id)
    start = next(e for e in jobs.events(dpo_id)[0] if e["type"] == "log" and "trainable_params" in e)
    assert start["objective"] == "dpo" and start["sft_adapter"] == "tiny-sft"
    assert all(k in metric_events(jobs, dpo_id)[-1] for k in PREFERENCE_METRICS)
    adapter = Path(dpo.adapter_path)
    assert (adapter / "adapter_model.safetensors").is_file() and not (adapter / "ref").exists()  # the frozen copy stays out
    assert (adapter / "adapter_model.safetensors").read_bytes() != (Path(sft.adapter_path) / "adapter_model.safetensors").read_bytes()

    orpo_id = jobs.submit(spec(tiny_model, prefs, "tiny-orpo", objective="orpo", orpo_lambda=0.2, max_steps=2), actor=owner)
    finished(jobs, orpo_id)
    last = metric_events(jobs, orpo_id)[-1]
    assert {"log_odds_ratio", "log_odds_chosen", "nll_loss", "rewards/margins"} <= set(last)
    for rid in (dpo_id, orpo_id):  # tokens counted through TRL's own preference collator (count_trainer_tokens)
        done = next(e for e in jobs.events(rid)[0] if e["type"] == "done")
        assert done["tokens_per_s"] > 0, done


def test_dpo_on_the_bundled_model_logs_preference_metrics_and_the_adapter_answers(
        db, owner, settings, server_manager, endpoint, bundled_model, voted_dataset):
    from mlflow import MlflowClient

    from engines.inference import ChatParams, stream_chat
    from engines.inference.chat import Delta

    prefs, battle_ids = voted_dataset
    jm = JobManager(settings, server_manager, poll_s=0.5)
    jm.start()
    try:
        rid = jm.submit(spec(bundled_model.name, prefs, "bundled-dpo", objective="dpo", max_steps=3, eval_split=0.2,
                             eval_steps=3, learning_rate=5e-4), actor=owner)
        run = finished(jm, rid)
        wait_for(lambda: runs.run_metrics(runs.get_run(rid)).get("served") is not None, timeout=120)
        assert runs.run_metrics(runs.get_run(rid)).get("served") is True, runs.run_metrics(runs.get_run(rid))
    finally:
        jm.stop()
    steps = metric_events(jm, rid)
    assert [e["step"] for e in steps] == [1, 2, 3]
    assert all(isinstance(e[k], float) for e in steps for k in PREFERENCE_METRICS)
    assert any(e["rewards/margins"] != 0.0 for e in steps)  # the policy moved away from the reference
    assert any("eval_rewards/margins" in e for e in jm.events(rid)[0] if e["type"] == "metric")  # the held-out pairs
    summary = runs.run_metrics(runs.get_run(rid))
    assert "rewards/margins" in summary and summary["step"] == 3

    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    mrun = client.get_run(run.mlflow_run_id)
    assert mrun.info.status == "FINISHED" and mrun.data.params["objective"] == "dpo" and mrun.data.params["beta"] == "0.1"
    for key in PREFERENCE_METRICS:
        assert [m.step for m in client.get_metric_history(run.mlflow_run_id, key)] == [1, 2, 3]

    ep = server_manager.endpoint_for("bundled-dpo")

    async def ask() -> str:
        parts = []
        async for ev in stream_chat(ep, [{"role": "user", "content": "What is 2 plus 2?"}],
                                    ChatParams(max_tokens=12, temperature=0)):
            if isinstance(ev, Delta):
                parts.append(ev.text)
        return "".join(parts)

    assert asyncio.run(ask()).strip()

    # the served base model as a judge of the same battles: every verdict stored, agreement over the valid ones
    counts = asyncio.run(agreement.judge_battles(endpoint, bundled_model.name, owner, timeout=60, max_tokens=24))
    assert sum(counts.values()) == len(battle_ids) and set(counts) <= {"a", "b", "tie", "error"}
    (result,) = agreement.judge_agreement(owner)
    assert result.judge == bundled_model.name and result.n + result.errors == len(battle_ids)
    assert result.n == 0 or 0.0 <= result.agreement <= 1.0
    left = {b.id for b in agreement.unjudged_battles(owner, bundled_model.name)}
    assert len(left) == counts.get("error", 0)  # only failed verdicts are left to retry
