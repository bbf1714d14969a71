"""What the Fine-tune tab renders: progress bar state, stale heartbeat, curves typed for the plot, estimate wording."""

from __future__ import annotations

import datetime as dt

from engines.training.estimate import Estimate
from engines.training.hardware import Gpu, Hardware
from engines.training.jobs import History
from engines.training.planning import NoEstimate
from storage import runs
from storage.models import utcnow
from studio.finetune_view import curves, errors_markdown, estimate_markdown, progress_html, runs_frame


def _run(**fields):
    return _run_named("r1", **fields)


def _run_named(name, **fields):
    r = runs.create_run(name=name, base_model="SmolLM2-135M-Instruct", dataset="d.jsonl", method="lora", spec={},
                        run_dir=f"/tmp/{name}")
    runs.update_run(r.id, **fields)
    return runs.get_run(r.id)


def test_progress_bar_carries_step_total_and_eta(db):
    run = _run(status="running", step=5, total_steps=20, heartbeat_at=utcnow())
    h = History(progress={"step": 5, "total_steps": 20, "eta_s": 75, "tokens_per_s": 512.0, "steps_per_s": 0.5})
    out = progress_html("en", run, h)
    assert "data-step='5'" in out and "data-total='20'" in out and "width:25.0%" in out
    assert "ETA 75s" in out and "512 tok/s" in out
    assert "heartbeat" not in out and "Ray" not in out
    ray = _run_named("r9", status="running", step=1, total_steps=4, compute="ray", remote_job_id="chat-studio-9-r9-ab12cd34")
    assert "Ray chat-studio-9-r9-ab12cd34" in progress_html("en", ray, None)  # where the run runs


def test_a_silent_worker_is_flagged(db):
    run = _run(status="running", step=1, total_steps=20, heartbeat_at=utcnow() - dt.timedelta(seconds=300))
    assert "No heartbeat from the worker for 300 s" in progress_html("en", run, History())
    assert "하트비트" in progress_html("ko", run, History())


def test_served_and_failed_serving_are_shown(db):
    run = _run(status="completed", step=4, total_steps=4, metrics={"served": True})
    assert "data-served='true'" in progress_html("en", run, None)
    r2 = runs.create_run(name="r2", base_model="b", dataset="d.jsonl", method="lora", spec={}, run_dir="/tmp/r2")
    runs.update_run(r2.id, status="completed", metrics={"served": False, "serve_error": "rank 128 > 64"})
    out = progress_html("en", runs.get_run(r2.id), None)
    assert "data-served='false'" in out and "rank 128 &gt; 64" in out


def test_runs_table_is_translated(db):
    _run(status="interrupted", step=3, total_steps=10, metrics={"loss": 1.23456})
    en, ko = runs_frame("en", runs.list_runs()), runs_frame("ko", runs.list_runs())
    assert list(en.columns)[:4] == ["#", "Name", "Base", "Status"] and list(ko.columns)[1] == "이름"
    assert en.iloc[0]["Loss"] == "1.2346" and "interrupted" in en.iloc[0]["Status"] and en.iloc[0]["Steps"] == "3/10"


def test_curves_are_numeric_even_when_empty():
    loss, lr = curves(None)
    assert str(loss["loss"].dtype) == "float64" and str(lr["step"].dtype) == "int64"
    loss, lr = curves(History(metrics=[{"step": 1, "loss": 2.0, "learning_rate": 1e-4}, {"step": 2, "eval_loss": 1.5}]))
    assert loss.to_dict("records") == [{"step": 1, "loss": 2.0, "series": "train"}, {"step": 2, "loss": 1.5, "series": "eval"}]
    assert lr["learning_rate"].tolist() == [1e-4]


def test_a_preference_run_draws_its_reward_margin_and_rewards_beside_the_loss():
    h = History(metrics=[{"step": 1, "loss": 0.69, "rewards/margins": 0.0, "rewards/chosen": 0.01, "rewards/rejected": 0.01,
                          "rewards/accuracies": 0.5, "learning_rate": 1e-4},
                         {"step": 2, "loss": 0.6, "rewards/margins": 0.2, "rewards/chosen": 0.15, "rewards/rejected": -0.05}])
    loss, _ = curves(h, "en")
    assert sorted(set(loss["series"])) == ["chosen", "margin", "rejected", "train"]  # short: the legend fits beside "train"
    assert loss[loss["series"] == "margin"]["loss"].tolist() == [0.0, 0.2]
    assert "보상 차이" in set(curves(h, "ko")[0]["series"])
    assert set(curves(History(metrics=[{"step": 1, "loss": 1.0}]), "en")[0]["series"]) == {"train"}  # SFT: as before
    held_out = History(metrics=[*h.metrics, {"step": 2, "eval_loss": 0.65, "eval_rewards/margins": 0.1}])
    eval_margin = curves(held_out, "en")[0]
    assert eval_margin[eval_margin["series"] == "eval margin"].to_dict("records") == [{"step": 2, "loss": 0.1, "series": "eval margin"}]


def test_estimate_says_plainly_when_it_will_not_fit():
    est = Estimate(params=8_000_000_000, trainable=40_000_000, memory_gb=30.5, memory_parts={"weights": 16.0}, budget_gb=22,
                   fits=False, steps=100, seconds=3600, tokens_per_step=4096, device="NVIDIA L4")
    l4 = Hardware(cpus=8, ram_total_gb=64, ram_available_gb=40, gpus=[Gpu(0, "NVIDIA L4", 22)])
    out = estimate_markdown("en", est, l4)
    assert "Will not fit" in out and "30.5" in out and "NVIDIA L4" in out and "100 steps" in out
    assert "failed" not in estimate_markdown("en", NoEstimate("no_model"), None)
    assert "base model is on disk" in estimate_markdown("en", NoEstimate("no_model"), None)
    assert "x.jsonl: no such file" in estimate_markdown("ko", NoEstimate("dataset", "x.jsonl: no such file"), None)


def test_estimate_and_machine_in_korean():
    """The line under the form is all Korean: the machine, the memory parts and the time (the engine gives numbers)."""
    est = Estimate(params=135_000_000, trainable=2_440_000, memory_gb=1.7, memory_parts={"weights": 0.5, "lora+optimizer": 0.04,
                   "activations": 0.26, "logits": 0.13, "runtime": 0.8}, budget_gb=17, fits=True, steps=200, seconds=600,
                   tokens_per_step=2048, device="CPU RAM")
    cpu = Hardware(cpus=2, ram_total_gb=24, ram_available_gb=17)
    ko = estimate_markdown("ko", est, cpu)
    assert "코어 2개" in ko and "가중치 0.50" in ko and "LoRA+옵티마이저 0.04" in ko and "~10분" in ko
    assert not any(w in ko for w in ("cores", "free", "weights", "activations", "runtime", "min"))
    en = estimate_markdown("en", est, cpu)
    assert "CPU only: 2 cores, 17 of 24 GiB RAM free" in en and "GiB: weights 0.50, lora+optimizer 0.04" in en and "~10 min" in en
    assert "Batch size" in errors_markdown("en", {"batch_size": "must be ≥ 1"})
    assert "배치 크기" in errors_markdown("ko", {"batch_size": "must be ≥ 1"})
