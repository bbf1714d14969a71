"""`stream_chat`: deltas as they arrive, then one `Finished` with finish reason, usage and timings."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import asdict, dataclass

import httpx
import structlog

from engines.endpoints import Endpoint

log = structlog.get_logger(__name__)


class InferenceError(RuntimeError):
    """Base of every error a chat call can raise; `str()` is a sentence for the user."""

    kind = "error"


class ServerUnavailable(InferenceError):
    kind = "server_down"


class UnknownModel(InferenceError):
    kind = "unknown_model"


class ContextTooLong(InferenceError):
    kind = "context_too_long"


class RequestTimedOut(InferenceError):
    kind = "timeout"


class StreamInterrupted(InferenceError):
    """The connection broke after the answer had started; the partial text is still valid."""

    kind = "interrupted"


@dataclass(frozen=True)
class ChatParams:
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int | None = 512  # None: up to the model's context (what an OpenAI client that names none expects)
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def as_request(self) -> dict:
        req: dict = {"temperature": self.temperature, "top_p": self.top_p}
        if self.max_tokens is not None:
            req["max_tokens"] = self.max_tokens
        if self.seed is not None:
            req["seed"] = self.seed
        if self.stop:
            req["stop"] = list(self.stop)
        return req

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Accepted:
    """The server took the request (HTTP 200); the first token is still to come. Only for callers that ask for it
    (`stream_chat(announce=True)`): a relay can open its own stream now, while the model reads the prompt, so its
    client's response handling is off the path of the first token."""


@dataclass(frozen=True)
class Finished:
    finish_reason: str
    prompt_tokens: int | None
    completion_tokens: int | None
    ttft_ms: float | None
    duration_ms: float
    tok_per_s: float | None  # decode speed: completion tokens after the first, over the time after it


_clients: dict[tuple, httpx.AsyncClient] = {}


def _client(endpoint: Endpoint, timeout: float) -> httpx.AsyncClient:
    """One HTTP client (and connection pool) per endpoint and event loop: no new TCP handshake per message.

    Plain httpx, not the openai SDK: the SDK spends ~1.3 ms building each request and parses every chunk into pydantic
    models, on the path of every token the studio relays; the wire format (JSON, then one `data:` line per chunk) is
    all the studio needs."""
    try:
        loop_id = id(asyncio.get_running_loop())
    except RuntimeError:
        loop_id = 0
    key = (loop_id, endpoint.base_url, endpoint.api_key, timeout)
    client = _clients.get(key)
    if client is None or client.is_closed:
        client = _clients[key] = httpx.AsyncClient(
            base_url=endpoint.base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {endpoint.api_key}"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )  # no retries: retrying a half-streamed answer would duplicate text
    return client


def _error_message(status: int, body: bytes) -> str:
    """The server's own sentence from an error body (OpenAI's {"error": {"message"}} or vLLM's {"message"})."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300] or f"HTTP {status}"
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(err, str):
        return err
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return str(data)[:300]


def _status_error(status: int, body: bytes, endpoint: Endpoint) -> InferenceError:
    """An HTTP error answer of the server as the engines' error."""
    msg = _error_message(status, body)
    if status == 404:
        return UnknownModel(f"The server does not serve a model named {endpoint.model!r}.")
    if status == 400:
        if "context length" in msg or "max_model_len" in msg or "too long" in msg:
            return ContextTooLong(f"The conversation is too long for {endpoint.model}: {msg}")
        return InferenceError(f"The server refused the request: {msg}")
    if status in (502, 503):
        return ServerUnavailable(f"The model server for {endpoint.model} is not available ({status}: {msg[:200]}).")
    return InferenceError(f"The server answered {status}: {msg[:300]}")


def _translate(exc: Exception, endpoint: Endpoint) -> InferenceError:
    """A transport error as the engines' error (status errors go through `_status_error`)."""
    if isinstance(exc, InferenceError):
        return exc
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return RequestTimedOut(f"{endpoint.model} did not answer in time.")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ServerUnavailable(f"The model server for {endpoint.model} is not reachable (it may be starting or restarting).")
    if isinstance(exc, (httpx.HTTPError, json.JSONDecodeError)):
        return StreamInterrupted(f"The connection to {endpoint.model} broke during the answer ({exc.__class__.__name__}).")
    return InferenceError(str(exc))


def _body(endpoint: Endpoint, messages: list[dict], params: ChatParams, *, stream: bool) -> dict:
    body = {"model": endpoint.model, "messages": messages, **params.as_request()}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def _may_fail_over(err: InferenceError) -> tuple[bool, bool]:
    """(try the next endpoint, the server is down): only before any text, and only when another server may do better."""
    if isinstance(err, ServerUnavailable):
        return True, True
    if isinstance(err, StreamInterrupted):  # broke before its first token: nothing was shown or stored
        return True, True
    if isinstance(err, UnknownModel):  # this endpoint lacks the adapter (its load failed there)
        return True, False
    return False, False


async def stream_chat(
    endpoint: Endpoint,
    messages: list[dict],
    params: ChatParams,
    *,
    timeout: float = 120.0,
    announce: bool = False,
) -> AsyncIterator[Accepted | Delta | Finished]:
    """Stream one chat completion. Cancelling the consumer closes the HTTP stream (vLLM aborts the request).

    A fleet endpoint (one with a router) tries its endpoints best first: one that fails before any text came back is
    skipped and the next answers, so the caller sees one answer; after the first text an error ends the stream.
    `announce`: an `Accepted` first, once a server took the request (again for the next endpoint after a failover)."""
    if endpoint.router is None:
        # aclosing: a consumer that stops early closes the HTTP stream now, not when the generator is collected.
        async with aclosing(_stream_once(endpoint, messages, params, timeout=timeout, started=time.perf_counter(),
                                         announce=announce)) as events:
            async for event in events:
                yield event
        return
    started = time.perf_counter()
    targets = endpoint.router.targets(endpoint)
    for i, target in enumerate(targets):
        text_seen = False
        try:
            with endpoint.router.track(target):
                async with aclosing(_stream_once(target, messages, params, timeout=timeout, started=started,
                                                 announce=announce)) as events:
                    async for event in events:
                        text_seen = text_seen or isinstance(event, Delta)
                        yield event
            return
        except InferenceError as err:
            retry, down = _may_fail_over(err)
            if text_seen or not retry:
                raise
            endpoint.router.failed(target, str(err), down=down)
            if i == len(targets) - 1:
                raise


async def _stream_once(
    endpoint: Endpoint, messages: list[dict], params: ChatParams, *, timeout: float, started: float,
    announce: bool = False,
) -> AsyncIterator[Accepted | Delta | Finished]:
    client = _client(endpoint, timeout)
    first: float | None = None
    finish_reason, usage = "stop", None
    chunks = 0
    try:
        request = client.build_request("POST", "chat/completions", json=_body(endpoint, messages, params, stream=True))
        response = await client.send(request, stream=True)
    except Exception as exc:
        raise _translate(exc, endpoint) from exc
    try:
        if response.status_code >= 400:
            raise _status_error(response.status_code, await response.aread(), endpoint)
        if announce:
            yield Accepted()
        async for line in response.aiter_lines():
            # Server-sent events: one `data: {json}` line per chunk, `data: [DONE]` at the end; other lines are blank
            # separators or comments.
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("error"):  # an error after the stream began (vLLM sends it as a chunk)
                raise InferenceError(f"The server stopped the answer: {_error_message(200, data.encode())}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter()
                    chunks += 1
                    yield Delta(text)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
    except InferenceError:
        raise
    except Exception as exc:
        if isinstance(exc, GeneratorExit):
            raise
        err = _translate(exc, endpoint)
        if first is not None and isinstance(err, ServerUnavailable):
            err = StreamInterrupted(f"The connection to {endpoint.model} broke during the answer.")
        raise err from exc
    finally:
        await response.aclose()  # a consumer that went away closes the stream: vLLM aborts the request
    ended = time.perf_counter()
    completion = usage.get("completion_tokens") if usage else chunks
    ttft = (first - started) * 1000 if first is not None else None
    decode_s = ended - first if first is not None else 0.0
    tps = (completion - 1) / decode_s if completion and completion > 1 and decode_s > 0 else None
    done = Finished(
        finish_reason=finish_reason,
        prompt_tokens=usage.get("prompt_tokens") if usage else None,
        completion_tokens=completion,
        ttft_ms=ttft,
        duration_ms=(ended - started) * 1000,
        tok_per_s=tps,
    )
    # Numbers only: message text never goes to the info log.
    log.info(
        "model.call", model=endpoint.model, prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens,
        ttft_ms=round(ttft, 1) if ttft else None, duration_ms=round(done.duration_ms, 1),
        tok_per_s=round(tps, 1) if tps else None, finish_reason=finish_reason,
    )
    yield done


async def complete_chat(
    endpoint: Endpoint, messages: list[dict], params: ChatParams, *, timeout: float = 120.0
) -> tuple[str, Finished]:
    """One chat completion without streaming (batch work: no per-token parsing in the app). A fleet endpoint moves on
    to its next endpoint when one cannot take the request."""
    if endpoint.router is None:
        return await _complete_once(endpoint, messages, params, timeout=timeout)
    targets = endpoint.router.targets(endpoint)
    for i, target in enumerate(targets):
        try:
            with endpoint.router.track(target):
                return await _complete_once(target, messages, params, timeout=timeout)
        except InferenceError as err:
            retry, down = _may_fail_over(err)
            if not retry:
                raise
            endpoint.router.failed(target, str(err), down=down)
            if i == len(targets) - 1:
                raise
    raise ServerUnavailable(f"No endpoint serves {endpoint.model}.")


async def _complete_once(
    endpoint: Endpoint, messages: list[dict], params: ChatParams, *, timeout: float
) -> tuple[str, Finished]:
    client = _client(endpoint, timeout)
    started = time.perf_counter()
    try:
        response = await client.post("chat/completions", json=_body(endpoint, messages, params, stream=False))
    except Exception as exc:
        raise _translate(exc, endpoint) from exc
    if response.status_code >= 400:
        raise _status_error(response.status_code, response.content, endpoint)
    try:
        data = response.json()
    except ValueError as exc:
        raise InferenceError(f"The server's answer is not JSON: {response.text[:200]}") from exc
    duration = (time.perf_counter() - started) * 1000
    choices = data.get("choices") or []
    choice = choices[0] if choices else {}
    usage = data.get("usage") or {}
    done = Finished(
        finish_reason=choice.get("finish_reason") or "stop",
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        ttft_ms=None, duration_ms=duration, tok_per_s=None,
    )
    return (choice.get("message") or {}).get("content") or "", done
