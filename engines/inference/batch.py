"""`generate_many`: many chat completions with bounded concurrency, retries, results in input order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from engines.endpoints import Endpoint
from engines.inference.chat import ChatParams, ContextTooLong, InferenceError, UnknownModel, complete_chat

log = structlog.get_logger(__name__)
NOT_RETRIED = (ContextTooLong, UnknownModel)  # the same request would fail the same way


@dataclass
class Generation:
    """One result: the text, or the error after the last attempt (never silently dropped)."""

    index: int
    text: str | None = None
    error: str | None = None
    attempts: int = 0
    tokens: int | None = None
    latency_ms: float | None = None


async def generate_many(
    endpoint: Endpoint, conversations: list[list[dict]], params: ChatParams, *, concurrency: int = 8, retries: int = 2,
    timeout: float = 120.0, on_progress: Callable[[int, int], None] | None = None,
    on_result: Callable[[Generation], None] | None = None, gate: asyncio.Semaphore | None = None,
) -> list[Generation]:
    """Answer every conversation; at most `concurrency` requests in flight (the server batches them).

    Pass one `gate` to several calls that share a server (a base and its adapters) to bound them together;
    `on_result` sees each result as soon as it is final (to store it before the batch ends).
    """
    gate = gate or asyncio.Semaphore(max(1, concurrency))
    done = 0
    results = [Generation(i) for i in range(len(conversations))]

    async def one(i: int, messages: list[dict]) -> None:
        nonlocal done
        res = results[i]
        async with gate:
            for attempt in range(1, retries + 2):
                res.attempts = attempt
                try:
                    text, fin = await complete_chat(endpoint, messages, params, timeout=timeout)
                    res.text, res.error, res.tokens, res.latency_ms = text, None, fin.completion_tokens, fin.duration_ms
                    break
                except NOT_RETRIED as exc:
                    res.error = str(exc)
                    break
                except InferenceError as exc:
                    res.error = str(exc)
                    await asyncio.sleep(min(4.0, 0.5 * 2 ** (attempt - 1)))
        done += 1
        if on_result:
            on_result(res)
        if on_progress:
            on_progress(done, len(conversations))

    await asyncio.gather(*(one(i, m) for i, m in enumerate(conversations)))
    failed = sum(1 for r in results if r.error)
    log.info("inference.batch", model=endpoint.model, requests=len(results), failed=failed, concurrency=concurrency)
    return results
