"""Synthetic examples from a served model: questions about a topic (or given seed prompts), then their answers.

Generated rows are appended to the dataset's working copy (one undoable change) for review before a version is saved.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from engines.accounts import Actor
from engines.datasets import draft
from engines.datasets.formats import Row
from engines.endpoints import Endpoint
from engines.inference import ChatParams, generate_many

QUESTION_PROMPT = (
    "Write one realistic question a user might ask an assistant about: {topic}. "
    "Make it different from typical questions (variation {i}). Reply with the question only."
)


@dataclass
class SynthesisReport:
    added: int
    failed: int
    errors: list[str]


def _clean_question(text: str) -> str:
    text = text.strip().strip('"').strip()
    text = re.sub(r"^(question|q)\s*[:.]\s*", "", text, flags=re.I)
    return text.splitlines()[0].strip() if text else ""


async def synthesize(
    endpoint: Endpoint, dataset_id: int, *, actor: Actor, n: int, topic: str = "", seeds: list[str] | None = None, system: str = "",
    params: ChatParams | None = None, concurrency: int = 8, on_progress: Callable[[float, str], None] | None = None,
) -> SynthesisReport:
    """Generate `n` rows (questions from `topic` unless `seeds` are given), answer them, append them (undoable).

    Refused before any request when `actor` may not change the dataset."""
    draft.writable(actor, dataset_id)
    if n < 1 or n > 10_000:
        raise ValueError("Generate between 1 and 10,000 examples at a time.")
    seeds = [s.strip() for s in (seeds or []) if s.strip()]
    if not seeds and not topic.strip():
        raise ValueError("Give a topic or at least one seed prompt.")
    params = params or ChatParams(temperature=0.8, max_tokens=256)
    errors: list[str] = []

    def progress(stage: float, label: str) -> Callable[[int, int], None]:
        return lambda done, total: on_progress and on_progress(stage + 0.5 * done / max(total, 1), f"{label} {done}/{total}")

    if seeds:
        questions = [seeds[i % len(seeds)] for i in range(n)]
        stage = 0.0
    else:
        asks = [[{"role": "user", "content": QUESTION_PROMPT.format(topic=topic.strip(), i=i + 1)}] for i in range(n)]
        qparams = replace(params, temperature=max(params.temperature, 0.9), max_tokens=96)
        qs = await generate_many(endpoint, asks, qparams, concurrency=concurrency, on_progress=progress(0.0, "questions"))
        questions = []
        for g in qs:
            q = _clean_question(g.text or "")
            if g.error or not q:
                errors.append(g.error or "empty question")
            questions.append(q)
        stage = 0.5
    prompts = [([{"role": "system", "content": system}] if system.strip() else []) + [{"role": "user", "content": q}]
               for q in questions if q]
    answers = await generate_many(endpoint, prompts, params, concurrency=concurrency, on_progress=progress(stage, "answers"))
    rows = []
    for p, g in zip(prompts, answers, strict=True):
        if g.error or not (g.text or "").strip():
            errors.append(g.error or "empty answer")
            continue
        rows.append(Row([*p, {"role": "assistant", "content": g.text.strip()}], "synthetic"))
    added = draft.fill(dataset_id, rows, actor=actor, replace=False, action="synthetic") if rows else 0
    return SynthesisReport(added=added, failed=n - added, errors=errors[:20])
