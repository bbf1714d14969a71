"""The OpenAI-compatible gateway at /v1: `GET /v1/models` and `POST /v1/chat/completions` (stream or not).

Any OpenAI client (the `openai` SDK, LangChain's ChatOpenAI, curl) chats through the studio with a studio API key as
the Bearer token. Every exchange is a conversation of the key's owner (source "api"), with the UI's guarantees: the
request's messages are stored before the model is called, the answer is written as it streams, a client that goes
away leaves the partial answer marked "stopped", and timings and token counts are recorded.

Continuing a conversation: send its id as `"conversation_id": N` in the body (the SDK's `extra_body=`) or as the
header `X-Studio-Conversation: N`; then only the user messages after your last assistant message are added. Every
response names its conversation in the `X-Studio-Conversation` header and a `conversation_id` field."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import NotAuthenticated, resolve_actor
from engines import conversations as turns
from engines.accounts import Actor
from engines.conversations import ConversationNotFound
from engines.inference import ChatParams, ContextTooLong, InferenceError, RequestTimedOut, ServerUnavailable, UnknownModel

if TYPE_CHECKING:
    from engines.services import Services

CONVERSATION_HEADER = "X-Studio-Conversation"
CHECK_MODELS_AGE_S = 10.0
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call")  # the studio's chats are text only


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        """The content as plain text; a list of parts may hold text parts only."""
        if isinstance(self.content, list):
            parts = []
            for part in self.content:
                if part.get("type") != "text":
                    raise ValueError(f"Only text content is supported, not {part.get('type')!r} parts.")
                parts.append(str(part.get("text") or ""))
            return "".join(parts)
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    conversation_id: int | None = Field(None, ge=1)

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def params(self) -> ChatParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return ChatParams(temperature=self.temperature, top_p=self.top_p, seed=self.seed, stop=stop,
                          max_tokens=self.max_completion_tokens or self.max_tokens)

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class GatewayError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, code: str, kind: str = "invalid_request_error",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind, self.param = status, message, code, kind, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def inference_error(exc: InferenceError) -> GatewayError:
    """The engines' inference errors as the status codes OpenAI clients know."""
    if isinstance(exc, UnknownModel):
        return GatewayError(404, str(exc), code="model_not_found", param="model")
    if isinstance(exc, ContextTooLong):
        return GatewayError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, ServerUnavailable):
        return GatewayError(503, str(exc), code="server_unavailable", kind="server_error")
    if isinstance(exc, RequestTimedOut):
        return GatewayError(504, str(exc), code="timeout", kind="server_error")
    return GatewayError(502, str(exc), code=exc.kind, kind="server_error")


def check_model(services: Services, model: str) -> None:
    """Refuse an unknown model (404) or one whose server is not ready (503) before anything is stored."""
    servers = services.servers
    # A list up to CHECK_MODELS_AGE_S old will do: a model unloaded since is answered 404 by its server (after the
    # user's message is stored, as an error). The default age (2 s) started a background refresh, an HTTP call to every
    # server, on nearly every request, beside the store on the path to the first token.
    if model in {r.name for r in servers.served_models(max_age=CHECK_MODELS_AGE_S)}:
        return
    # The list above may be seconds old: an adapter loaded since (by another studio or a script on a shared server)
    # is looked for once more, now, before the request is refused.
    if model in {r.name for r in servers.served_models(max_age=0)}:
        return
    if servers.endpoint_for(model) is not None and model in servers.status():
        raise GatewayError(503, f"The server for {model} is not ready yet; try again shortly.", code="server_unavailable",
                           kind="server_error")
    raise GatewayError(404, f"The model {model!r} does not exist or is not served. GET /v1/models lists what is.",
                       code="model_not_found", param="model")


def _request_conversation(request: Request, body: ChatRequest) -> int | None:
    if body.conversation_id:
        return body.conversation_id
    raw = (request.headers.get(CONVERSATION_HEADER) or "").strip()
    if not raw:
        return None
    try:
        return turns.conversation_id(raw)
    except ConversationNotFound as exc:
        raise GatewayError(400, str(exc), code="invalid_conversation", param="conversation_id") from None


def _validate(payload: Any) -> ChatRequest:
    try:
        body = ChatRequest.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        raise GatewayError(400, f"{where}: {err.get('msg')}" if where else str(err.get("msg")), code="invalid_value",
                           param=where or None) from None
    for name in UNSUPPORTED:
        if (body.model_extra or {}).get(name):
            raise GatewayError(400, f"'{name}' is not supported: the studio's chats are text only.", code="unsupported",
                               param=name)
    if body.n != 1:
        raise GatewayError(400, "Only n=1 is supported.", code="unsupported", param="n")
    return body


def _chunk(cid: int, mid: int, created: int, model: str, delta: dict, finish: str | None = None) -> str:
    data = {"id": f"chatcmpl-{mid}", "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "conversation_id": cid}
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _usage(finished: Any) -> dict[str, int]:
    prompt, completion = finished.prompt_tokens or 0, finished.completion_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _timings(finished: Any) -> dict[str, float | None]:
    """The studio's own numbers for the answer (also stored on the message)."""
    return {"ttft_ms": finished.ttft_ms, "duration_ms": finished.duration_ms, "tok_per_s": finished.tok_per_s}


@dataclass(frozen=True)
class Turn:
    """A chat request of a known caller, checked, for a served model: what is left is to store it and call the model."""

    actor: Actor
    body: ChatRequest
    messages: list[dict[str, str]]
    wanted: int | None  # the conversation it continues


def check_turn(services: Services, request: Request, raw: bytes) -> Turn:
    """Who is calling, the request's form and its model, checked (blocking: run it in a worker thread)."""
    try:
        actor = resolve_actor(request)
    except NotAuthenticated as exc:
        raise GatewayError(401, exc.message, code="invalid_api_key") from None
    try:
        payload = json.loads(raw)
    except ValueError:
        raise GatewayError(400, "The body is not valid JSON.", code="invalid_json") from None
    body = _validate(payload)
    try:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
    except ValueError as exc:
        raise GatewayError(400, str(exc), code="unsupported", param="messages") from None
    wanted = _request_conversation(request, body)
    check_model(services, body.model)
    return Turn(actor, body, messages, wanted)


def store_turn(turn: Turn) -> tuple[int, str | None, turns.OpenedAnswer]:
    """The request's messages and the empty answer row, stored before the model is called (one commit)."""
    try:
        return turns.store_api_turn_and_open(turn.actor, turn.wanted, turn.messages, model=turn.body.model,
                                             params=turn.body.params())
    except ConversationNotFound as exc:
        raise GatewayError(404, str(exc), code="conversation_not_found", param="conversation_id") from None
    except ValueError as exc:
        raise GatewayError(400, str(exc), code="invalid_value", param="messages") from None


@dataclass
class Accepted:
    """A checked request whose messages and empty answer row are stored: what the stream needs."""

    turn: Turn
    conversation_id: int
    system: str | None
    opened: turns.OpenedAnswer


def accept_turn(services: Services, request: Request, raw: bytes) -> Accepted:
    """Check the request, store its messages and open the answer row (blocking: one worker-thread hop for all)."""
    turn = check_turn(services, request, raw)
    cid, system, opened = store_turn(turn)
    return Accepted(turn, cid, system, opened)


def build_gateway(services: Services) -> FastAPI:
    app = FastAPI(title="Chat Studio OpenAI-compatible gateway", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    timeout = services.settings.request_timeout

    @app.exception_handler(GatewayError)
    async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:  # no such route, wrong method
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return GatewayError(exc.status_code, str(exc.detail), code=code).response()

    async def actor_of(request: Request):  # noqa: ANN202
        try:
            return await anyio.to_thread.run_sync(resolve_actor, request)
        except NotAuthenticated as exc:
            raise GatewayError(401, exc.message, code="invalid_api_key") from None

    @app.get("/models")
    async def list_models(request: Request) -> dict:
        await actor_of(request)
        # A listing is asked for rarely and must be current (a client picks a model from it): fetched now.
        records = await anyio.to_thread.run_sync(lambda: services.servers.served_models(max_age=0))
        data = [{"id": r.name, "object": "model", "created": 0, "owned_by": "chat-studio",
                 "parent": r.parent if r.kind == "adapter" else None, "kind": r.kind} for r in records]
        return {"object": "list", "data": data}

    @app.get("/models/{model:path}")
    async def get_model(model: str, request: Request) -> dict:
        await actor_of(request)
        records = await anyio.to_thread.run_sync(lambda: services.servers.served_models(max_age=0))
        for r in records:
            if r.name == model:
                return {"id": r.name, "object": "model", "created": 0, "owned_by": "chat-studio",
                        "parent": r.parent if r.kind == "adapter" else None, "kind": r.kind}
        raise GatewayError(404, f"The model {model!r} does not exist or is not served.", code="model_not_found",
                           param="model")

    @app.post("/chat/completions")
    async def chat_completions(request: Request) -> Any:
        raw = await request.body()
        # Checks and stores run in one worker thread: each hop between the event loop and a thread costs 1-2 ms of the
        # time to the first token on a busy 2-core machine, and SQLite commits on the loop stall every other stream.
        # Concurrent stores wait for each other: the database takes write transactions immediately (storage/db.py).
        accepted = await anyio.to_thread.run_sync(accept_turn, services, request, raw)
        cid, body = accepted.conversation_id, accepted.turn.body
        headers = {CONVERSATION_HEADER: str(cid)}
        updates = turns.answer(services.servers, cid, body.model, body.params(), system_prompt=accepted.system,
                               timeout=timeout, opened=accepted.opened, announce=body.stream)
        created = int(time.time())
        if not body.stream:
            return await _complete(updates, cid, body.model, created, headers)
        # The first update decides the status: the model's server refusing the request (an unknown adapter, a prompt
        # too long, the server down) is an HTTP error, not a 200 stream. Once it took the request (an update with no
        # text yet), the stream opens, as vLLM's own does: the client handles the response's headers and first chunk
        # while the model reads the prompt, not after its first token.
        first = await anext(updates, None)
        if first is not None and first.error is not None:
            await updates.aclose()
            return inference_error(first.error).response(headers)
        return StreamingResponse(_stream(updates, first, cid, body.model, created, body.include_usage()),
                                 media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})

    return app


async def _complete(updates: AsyncIterator, cid: int, model: str, created: int, headers: dict[str, str]) -> JSONResponse:
    last = None
    async with aclosing(updates):
        async for upd in updates:
            last = upd
    if last is None or last.error is not None:
        err = last.error if last is not None else ServerUnavailable(f"{model} gave no answer.")
        return inference_error(err).response(headers)
    finished = last.finished
    body = {
        "id": f"chatcmpl-{last.message_id}", "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": last.text},
                     "logprobs": None, "finish_reason": finished.finish_reason if finished else "stop"}],
        "usage": _usage(finished) if finished else None, "conversation_id": cid,
        "studio": {"message_id": last.message_id, **(_timings(finished) if finished else {})},
    }
    return JSONResponse(body, headers=headers)


async def _stream(updates: AsyncIterator, first: Any, cid: int, model: str, created: int,
                  include_usage: bool) -> AsyncIterator[str]:
    """SSE chunks as OpenAI sends them; a client that goes away closes `updates` (the partial answer is kept)."""
    sent = 0
    role_sent = False
    async with aclosing(updates):
        upd = first
        while upd is not None:
            mid = upd.message_id
            if not role_sent:
                yield _chunk(cid, mid, created, model, {"role": "assistant", "content": ""})
                role_sent = True
            if upd.error is not None:  # after the answer began: the partial text is stored, the client is told
                yield f"data: {json.dumps(inference_error(upd.error).body(), ensure_ascii=False)}\n\n"
                return
            if len(upd.text) > sent:
                yield _chunk(cid, mid, created, model, {"content": upd.text[sent:]})
                sent = len(upd.text)
            if upd.finished is not None:
                yield _chunk(cid, mid, created, model, {}, upd.finished.finish_reason)
                if include_usage:
                    data = {"id": f"chatcmpl-{mid}", "object": "chat.completion.chunk", "created": created, "model": model,
                            "choices": [], "usage": _usage(upd.finished), "conversation_id": cid}
                    yield f"data: {json.dumps(data)}\n\n"
                yield "data: [DONE]\n\n"
                return
            upd = await anext(updates, None)
