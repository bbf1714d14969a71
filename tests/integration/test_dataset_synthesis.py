"""Batch generation and synthetic examples against the real CPU vLLM server: ordered, bounded, nothing dropped."""

from __future__ import annotations

import asyncio

import pytest

from engines.datasets import draft
from engines.datasets.synthetic import synthesize
from engines.datasets.versions import create_empty
from engines.inference import ChatParams, generate_many
from engines.serving import Endpoint

pytestmark = pytest.mark.server
SHORT = ChatParams(temperature=0.0, max_tokens=12)


def test_results_come_back_in_order_one_per_prompt(live_endpoint):
    prompts = [[{"role": "user", "content": f"Say the number {i}."}] for i in range(6)]
    seen: list[int] = []
    results = asyncio.run(generate_many(live_endpoint, prompts, SHORT, concurrency=3, on_progress=lambda d, t: seen.append(d)))
    assert [r.index for r in results] == list(range(6))
    assert all(r.text and not r.error for r in results)
    assert seen == [1, 2, 3, 4, 5, 6]


def test_failures_are_retried_then_recorded_never_dropped(live_endpoint):
    down = Endpoint(base_url="http://127.0.0.1:9/v1", model=live_endpoint.model)
    results = asyncio.run(generate_many(down, [[{"role": "user", "content": "hi"}]] * 3, SHORT, retries=1, timeout=5))
    assert len(results) == 3 and all(r.error and r.text is None and r.attempts == 2 for r in results)
    unknown = Endpoint(base_url=live_endpoint.base_url, model="no-such-model")
    results = asyncio.run(generate_many(unknown, [[{"role": "user", "content": "hi"}]] * 2, SHORT, retries=3))
    assert all(r.error and r.attempts == 1 for r in results)  # the same request would fail the same way: not retried


def test_synthetic_rows_are_added_for_review_and_undoable(db, owner, live_endpoint):
    ds = create_empty("synthetic", actor=owner)
    steps: list[float] = []
    report = asyncio.run(synthesize(live_endpoint, ds, actor=owner, n=3, seeds=["What is LoRA?", "What is QLoRA?"],
                                    params=ChatParams(temperature=0.0, max_tokens=24), concurrency=2,
                                    on_progress=lambda f, _: steps.append(f)))
    assert report.added + report.failed == 3 and report.added >= 1
    rows = draft.all_rows(ds)
    assert [r.messages[0]["content"] for r in rows] == ["What is LoRA?", "What is QLoRA?", "What is LoRA?"][: report.added]
    assert all(r.category == "synthetic" and r.messages[-1]["role"] == "assistant" for r in rows)
    assert steps and steps == sorted(steps) and steps[-1] <= 1.0
    report = asyncio.run(synthesize(live_endpoint, ds, actor=owner, n=2, topic="fine-tuning small models",
                                    params=ChatParams(temperature=0.7, max_tokens=24), concurrency=2))
    assert report.added + report.failed == 2
    assert draft.count(ds) == len(rows) + report.added
    assert draft.undo(ds, actor=owner) == "synthetic" and draft.count(ds) == len(rows)
