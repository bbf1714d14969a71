"""Batch evaluation on the real CPU server: every prompt × model recorded, failures retried then kept, stop/resume
and an app restart lose nothing, a malformed judge verdict is an error, and the run reaches MLflow."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from engines.evaluation.judge import judge_pair
from engines.evaluation.runner import EvalError, EvalManager
from engines.inference import ChatParams
from engines.serving import Endpoint
from storage import evals

pytestmark = pytest.mark.server

PROMPTS = [{"messages": [{"role": "user", "content": q}], "reference": ref, "category": None} for q, ref in [
    ("What is the capital of France?", "Paris"), ("Name a primary colour.", "Red"),
    ("What is 2 + 2?", "4"), ("Say hello in Korean.", "안녕하세요")]]


def wait_done(manager: EvalManager, eval_id: int, timeout: float = 300) -> evals.EvalRun:
    manager.wait(eval_id, timeout)
    run = evals.get_eval(eval_id)
    assert run.status not in evals.ACTIVE, f"still {run.status} after {timeout} s"
    return run


def routing(live: Endpoint, dead_url: str):
    def endpoint_for(model: str) -> Endpoint | None:
        if model == "dead-server":
            return Endpoint(base_url=dead_url, model=model)
        if model == "unknown-model":
            return Endpoint(base_url=live.base_url, model="no-such-model")
        if model == "not-served":
            return None
        return Endpoint(base_url=live.base_url, model=model)
    return endpoint_for


def dead_url() -> str:
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}/v1"


def test_every_prompt_times_model_is_recorded_and_failures_are_retried_then_kept(db, owner, settings, live_endpoint, served_adapter):
    manager = EvalManager(settings, routing(live_endpoint, dead_url()))
    models = [live_endpoint.model, served_adapter, "dead-server", "unknown-model"]
    eid = manager.submit(actor=owner, name="four models", models=models, judge=live_endpoint.model, examples=PROMPTS, source="pasted",
                         params={"max_tokens": 24, "retries": 1, "concurrency": 4, "judge_max_tokens": 24})
    run = wait_done(manager, eid)
    assert run.status == "completed", run.error
    rows = evals.results(eid)
    assert len(rows) == len(PROMPTS) * len(models)  # nothing silently dropped
    assert {(r.example, r.model) for r in rows} == {(i, m) for i in range(len(PROMPTS)) for m in models}
    by_model = {m: [r for r in rows if r.model == m] for m in models}
    for m in (live_endpoint.model, served_adapter):
        assert all(r.output is not None and r.error is None and r.attempts == 1 for r in by_model[m])
        assert all(r.rouge_l is not None and r.bleu is not None and r.exact is not None for r in by_model[m])
    assert all(r.output is None and r.error and r.attempts == 2 for r in by_model["dead-server"])  # retried once, then kept
    assert all(r.output is None and "no-such-model" in r.error and r.attempts == 1 for r in by_model["unknown-model"])
    assert all(r.judge_outcome in ("win", "loss", "tie", "error") for r in by_model[served_adapter])
    assert all(r.judge_outcome == "skipped" for r in by_model["dead-server"])
    assert all(r.judge_outcome is None for r in by_model[live_endpoint.model])  # the baseline is not judged against itself
    # each verdict was bounded by judge_max_tokens (24 tokens, far below the 512 the judge writes by default)
    raws = [raw for r in by_model[served_adapter] for raw in evals.loads(r.judge_detail, {}).get("raw", [])]
    assert len(raws) == 2 * len(PROMPTS) and all(0 < len(raw) < 200 for raw in raws), raws
    summary = evals.loads(run.summary, {})
    assert summary["models"]["dead-server"]["failed"] == len(PROMPTS)
    assert summary["models"][live_endpoint.model]["answered"] == len(PROMPTS)
    # Logged to MLflow: the run exists with per-model metrics and the results table as an artifact.
    assert run.mlflow_run_id, summary.get("mlflow_error")
    con = sqlite3.connect(settings.mlflow_uri.removeprefix("sqlite:///"))
    keys = {k for (k,) in con.execute("SELECT key FROM metrics WHERE run_uuid = ?", (run.mlflow_run_id,))}
    con.close()
    assert f"{live_endpoint.model}/answered" in keys and "dead-server/failed" in keys
    assert (settings.data_dir / "evals" / str(eid) / "results.csv").is_file()


def test_a_model_that_is_not_served_is_refused_before_anything_starts(db, owner, settings, live_endpoint):
    manager = EvalManager(settings, routing(live_endpoint, dead_url()))
    with pytest.raises(EvalError, match="not-served"):
        manager.submit(actor=owner, name="x", models=[live_endpoint.model, "not-served"], examples=PROMPTS, source="pasted")
    with pytest.raises(EvalError, match="at least two"):
        manager.submit(actor=owner, name="x", models=[live_endpoint.model], judge=live_endpoint.model, examples=PROMPTS, source="pasted")
    assert evals.list_evals() == []


def test_stop_keeps_the_answers_and_resume_asks_only_for_the_rest(db, owner, settings, live_endpoint):
    manager = EvalManager(settings, routing(live_endpoint, dead_url()))
    many = [{"messages": [{"role": "user", "content": f"Write a sentence about the number {i}."}], "reference": None}
            for i in range(12)]
    eid = manager.submit(actor=owner, name="stop me", models=[live_endpoint.model], examples=many, source="pasted",
                         params={"max_tokens": 48, "concurrency": 1})
    deadline = time.monotonic() + 120
    while evals.count_results(eid) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert manager.cancel(eid, actor=owner)
    run = wait_done(manager, eid)
    assert run.status == "cancelled"
    kept = {r.example: (r.id, r.output) for r in evals.results(eid)}
    assert 2 <= len(kept) < 12
    manager.resume(eid, actor=owner)
    run = wait_done(manager, eid)
    assert run.status == "completed", run.error
    after = {r.example: (r.id, r.output) for r in evals.results(eid)}
    assert len(after) == 12
    assert all(after[i] == kept[i] for i in kept)  # the answers saved before the stop were not asked again


def test_an_evaluation_left_running_by_a_closed_app_carries_on_at_the_next_start(db, settings, live_endpoint):
    run = evals.create_eval(name="restart", models=[live_endpoint.model], judge=None, source="pasted",
                            params={"max_tokens": 16, "concurrency": 2}, examples=PROMPTS)
    evals.update_eval(run.id, status="running", phase="generate")  # the app died here
    evals.save_result(run.id, 0, live_endpoint.model, output="saved before the crash", attempts=1)
    manager = EvalManager(settings, routing(live_endpoint, dead_url()))
    assert manager.start() == [run.id]
    done = wait_done(manager, run.id)
    assert done.status == "completed", done.error
    rows = evals.results(run.id)
    assert len(rows) == len(PROMPTS) and rows[0].output == "saved before the crash"


def test_a_malformed_judge_verdict_is_an_error_never_a_win(live_endpoint):
    # One token cannot hold "[[A]]": the real model's answer is malformed by construction.
    j = asyncio.run(judge_pair(live_endpoint, "Which is better?", "answer one", "answer two",
                               params=ChatParams(temperature=0.0, max_tokens=1)))
    assert j.outcome == "error" and "verdict" in j.error and len(j.raw) == 2
    down = Endpoint(base_url=dead_url(), model="judge")
    j = asyncio.run(judge_pair(down, "q", "a", "b", timeout=5))
    assert j.outcome == "error" and "failed" in j.error
