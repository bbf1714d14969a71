"""One chat turn, persisted as it streams: the user's message is stored before the model is called,
the answer is flushed while it grows, and a stop, an error or a crash leaves the partial text saved."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from engines import monitoring
from engines.accounts import Actor
from engines.inference import (
    Accepted,
    ChatParams,
    Delta,
    Finished,
    InferenceError,
    ServerUnavailable,
    UnknownModel,
    stream_chat,
)
from engines.serving import ServerManager
from engines.settings import Settings
from storage import chats, database
from storage.models import Conversation, Message

log = structlog.get_logger(__name__)

FLUSH_EVERY_S = 0.5


@dataclass(frozen=True)
class TurnUpdate:
    """What a UI needs after each step of a turn."""

    message_id: int
    text: str
    finished: Finished | None = None
    error: InferenceError | None = None


def openai_messages(conversation_id: int, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The active history as OpenAI chat messages; failed empty answers are left out."""
    out: list[dict[str, str]] = []
    if system_prompt and system_prompt.strip():
        out.append({"role": "system", "content": system_prompt.strip()})
    for m in chats.active_messages(conversation_id):
        if m.role == "assistant" and not m.content:
            continue
        out.append({"role": m.role, "content": m.content})
    return out


@dataclass(frozen=True)
class OpenedAnswer:
    """An answer about to be asked for: the history sent to the model and its empty, stored row."""

    history: list[dict[str, str]]
    message_id: int


def open_answer(conversation_id: int, model: str, params: ChatParams, *, system_prompt: str | None = None) -> OpenedAnswer:
    """Read the history and store the empty answer row (blocking; a server may call it in a worker thread)."""
    history = openai_messages(conversation_id, system_prompt)
    with database.atomic():  # one commit before the call, not two
        chats.touch(conversation_id, model=model, system_prompt=system_prompt or None)
        row = chats.add_message(
            conversation_id, "assistant", "", model=model, params=json.dumps(params.as_dict()), finish_reason="streaming"
        )
    return OpenedAnswer(history, row.id)


async def answer(
    servers: ServerManager,
    conversation_id: int,
    model: str,
    params: ChatParams,
    *,
    system_prompt: str | None = None,
    timeout: float = 120.0,
    opened: OpenedAnswer | None = None,
    announce: bool = False,
) -> AsyncIterator[TurnUpdate]:
    """Stream the assistant's reply to the conversation's active history, writing it as it grows.

    `opened`: the result of `open_answer` for this turn when the caller already ran it off the event loop.
    `announce`: a first update with no text as soon as the model's server took the request (see `Accepted`)."""
    if opened is None:
        opened = open_answer(conversation_id, model, params, system_prompt=system_prompt)
    history, row_id = opened.history, opened.message_id
    text, last_flush, outcome = "", time.monotonic(), "stopped"
    try:
        endpoint = servers.endpoint_for(model)
        if endpoint is None:
            known = {r.name for r in servers.served_models()}
            if model in known:
                raise ServerUnavailable(f"The server for {model} is not ready yet.")
            raise UnknownModel(f"No running server serves {model!r}. Pick another model or start its server.")
        async for event in stream_chat(endpoint, history, params, timeout=timeout, announce=announce):
            if isinstance(event, Accepted):
                yield TurnUpdate(row_id, text)
            elif isinstance(event, Delta):
                text += event.text
                if time.monotonic() - last_flush >= FLUSH_EVERY_S:
                    chats.update_message(row_id, content=text)
                    last_flush = time.monotonic()
                yield TurnUpdate(row_id, text)
            else:
                outcome = "done"
                chats.update_message(
                    row_id, content=text, finish_reason=event.finish_reason, ttft_ms=event.ttft_ms,
                    prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens,
                    tok_per_s=event.tok_per_s, duration_ms=event.duration_ms,
                )
                monitoring.record_chat(event.ttft_ms, event.completion_tokens)
                yield TurnUpdate(row_id, text, finished=event)
    except InferenceError as exc:
        outcome = "error"
        monitoring.record_error(exc.kind)
        chats.update_message(row_id, content=text, finish_reason="error", error=f"{exc.kind}: {exc}")
        log.warning("chat.error", conversation_id=conversation_id, model=model, kind=exc.kind, partial_chars=len(text))
        yield TurnUpdate(row_id, text, error=exc)
    finally:
        if outcome == "stopped":  # cancelled by the user (stop button) or the consumer went away
            chats.update_message(row_id, content=text, finish_reason="stopped")
            log.info("chat.stopped", conversation_id=conversation_id, model=model, partial_chars=len(text))


class ConversationNotFound(LookupError):
    """No such conversation of the acting user (another person's conversation is reported the same way)."""


def conversation_id(value: Any) -> int:
    """A conversation id from a form or an API call, or one clear sentence."""
    try:
        cid = int(str(value).strip())
    except (TypeError, ValueError):
        raise ConversationNotFound(f"A conversation id is a whole number, not {str(value)[:40]!r}.") from None
    if cid < 1:
        raise ConversationNotFound(f"There is no conversation {cid}.")
    return cid


def own_conversation(actor: Actor, value: Any) -> Conversation:
    """The actor's conversation with this id; conversations are private, so another's is 'not found' too."""
    cid = conversation_id(value)
    conv = chats.get_conversation(cid)
    if conv is None or conv.owner_id != actor.id:
        raise ConversationNotFound(f"There is no conversation {cid} of yours.")
    return conv


def list_conversations(actor: Actor, search: str = "", limit: int = 200) -> list[Conversation]:
    """The actor's conversations, newest first."""
    return chats.list_conversations(search, limit, owner_id=actor.id)


def conversations_page(actor: Actor, *, search: str = "", before: tuple[dt.datetime, int] | None = None,
                       limit: int = 50) -> list[Conversation]:
    """The actor's conversations, newest first, older than `before` = (updated_at, id) of a previous page's last one;
    `search` matches titles and message text (the REST API's cursor pagination)."""
    return chats.list_conversations(search, limit, owner_id=actor.id, before=before)


def active_messages(actor: Actor, value: Any) -> list[Message]:
    return chats.active_messages(own_conversation(actor, value).id)


def store_user_turn(actor: Actor, conversation_id: int | None, text: str, *, model: str | None = None,
                    system_prompt: str | None = None, source: str = "ui") -> int:
    """Create the conversation if needed and store the user's message, in one commit; returns its id."""
    with database.atomic():
        cid = start_conversation(actor, conversation_id, model=model, system_prompt=system_prompt, source=source)
        add_user_message(cid, text)
    return cid


def _request_parts(messages: list[dict[str, str]]) -> tuple[str | None, list[dict[str, str]]]:
    """An OpenAI-style request as (system prompt, the other messages in order); the last message must be the user's."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system").strip() or None
    turns = [m for m in messages if m["role"] != "system"]
    if not turns or turns[-1]["role"] != "user":
        raise ValueError("The last message must be the user's (role 'user').")
    return system, turns


def _check_user_messages(messages: list[dict[str, str]]) -> None:
    if any(not m["content"].strip() for m in messages if m["role"] == "user"):
        raise ValueError("A user message is empty.")


def store_api_turn(actor: Actor, conversation_id: int | None, messages: list[dict[str, str]], *,
                   model: str | None = None) -> tuple[int, str | None]:
    """An OpenAI-style request's messages, stored before the model is called, in one commit: (conversation, system prompt).

    Without a conversation id, a new conversation (source "api") holds the whole request: its system messages become
    the system prompt, the other messages are stored in order. Naming one of the actor's conversations continues it:
    only the user messages after the request's last assistant message are added, and the request's system message
    (if any) replaces the stored one. Either way the last message must be the user's."""
    system, turns = _request_parts(messages)
    if conversation_id:
        conv = own_conversation(actor, conversation_id)
        last_assistant = max((i for i, m in enumerate(turns) if m["role"] == "assistant"), default=-1)
        new = turns[last_assistant + 1:]
        system = system or conv.system_prompt
    else:
        conv, new = None, turns
    _check_user_messages(new)
    with database.atomic():
        cid = conv.id if conv is not None else chats.create_conversation(
            model=model, system_prompt=system, owner_id=actor.id, source="api").id
        for m in new:
            if m["role"] == "user":
                add_user_message(cid, m["content"])
            else:  # an earlier answer the client sends back: kept as it was given, marked as such
                chats.add_message(cid, "assistant", m["content"], finish_reason="given")
    return cid, system


def store_api_turn_and_open(actor: Actor, conversation_id: int | None, messages: list[dict[str, str]], *, model: str,
                            params: ChatParams) -> tuple[int, str | None, OpenedAnswer]:
    """`store_api_turn` and `open_answer` in one write transaction (the gateway's hot path: one commit, not two):
    (conversation, system prompt, the opened answer)."""
    if conversation_id:
        with database.atomic():
            cid, system = store_api_turn(actor, conversation_id, messages, model=model)
            return cid, system, open_answer(cid, model, params, system_prompt=system)
    # A new conversation (most API calls): its history is the request itself, so nothing needs to be read back.
    system, turns = _request_parts(messages)
    _check_user_messages(turns)
    rows = [(m["role"], m["content"].strip(), None) if m["role"] == "user" else (m["role"], m["content"], "given")
            for m in turns]
    cid, answer_id = chats.start_with_answer(owner_id=actor.id, source="api", model=model, system_prompt=system,
                                             messages=rows, params=json.dumps(params.as_dict()))
    history = ([{"role": "system", "content": system}] if system else []) + [
        {"role": role, "content": content} for role, content, _ in rows if role == "user" or content]
    return cid, system, OpenedAnswer(history, answer_id)


def start_conversation(actor: Actor, conversation_id: int | None, *, model: str | None = None,
                       system_prompt: str | None = None, source: str = "ui") -> int:
    """The actor's conversation with this id if it exists, else a new one (another person's id is refused)."""
    if conversation_id:
        conv = chats.get_conversation(int(conversation_id))
        if conv is not None:
            return own_conversation(actor, conv.id).id
    return chats.create_conversation(model=model, system_prompt=system_prompt, owner_id=actor.id, source=source).id


def rename_conversation(actor: Actor, value: Any, title: str) -> None:
    chats.rename_conversation(own_conversation(actor, value).id, title)


def delete_conversation(actor: Actor, value: Any) -> None:
    chats.delete_conversation(own_conversation(actor, value).id)


def set_feedback(actor: Actor, value: Any, message_index: Any, feedback: Any) -> int:
    """👍 (1), 👎 (-1) or clear (0) on the active message at `message_index` of the actor's conversation; returns its id."""
    rows = chats.active_messages(own_conversation(actor, value).id)
    try:
        index, vote = int(str(message_index).strip()), int(str(feedback).strip())
    except (TypeError, ValueError):
        raise ValueError("The message index and the feedback are whole numbers (feedback: 1, 0 or -1).") from None
    if vote not in (-1, 0, 1):
        raise ValueError("Feedback is 1 (👍), -1 (👎) or 0 (clear).")
    if not 0 <= index < len(rows):
        raise ValueError(f"There is no message at index {index} (the conversation has {len(rows)}).")
    chats.set_feedback(rows[index].id, vote)
    return rows[index].id


def export_conversation(actor: Actor, value: Any) -> dict[str, Any]:
    return chats.conversation_export(own_conversation(actor, value).id)


def export_conversation_files(settings: Settings, actor: Actor, value: Any) -> tuple[Path, Path]:
    """One of the actor's conversations written as JSON and Markdown under EXPORTS/user-<id>/ (per person, so one
    person's export never overwrites, or is served as, another's); returns (json file, markdown file)."""
    data = export_conversation(actor, value)
    folder = settings.exports_path / f"user-{actor.id}"
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"conversation-{data['id']}.json", folder / f"conversation-{data['id']}.md"
    json_path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    md_path.write_text(conversation_markdown(data), encoding="utf-8")
    return json_path, md_path


def add_user_message(conversation_id: int, text: str) -> Message:
    text = text.strip()
    if not text:
        raise ValueError("The message is empty.")
    return chats.add_message(conversation_id, "user", text)


def last_user_message(conversation_id: int) -> Message | None:
    """The last active user message (callers check ownership first: own_conversation)."""
    users = [m for m in chats.active_messages(conversation_id) if m.role == "user"]
    return users[-1] if users else None


def retire_last_answer(conversation_id: int) -> bool:
    """Before a regenerate: keep the old answer(s) after the last user message, but inactive."""
    last = last_user_message(conversation_id)
    if last is None:
        return False
    after = [m for m in chats.active_messages(conversation_id) if m.id > last.id]
    if after:
        chats.retire_from(conversation_id, after[0].id)
    return True


def replace_user_message(conversation_id: int, message_id: int, new_text: str) -> Message:
    """Edit = keep the old message and its answers inactive, then add the new text as a fresh message of the same
    turn (so the old question and its answers stay reachable as an earlier version of it)."""
    new_text = new_text.strip()
    if not new_text:
        raise ValueError("The message is empty.")
    old = chats.get_message(message_id)
    with database.atomic():
        chats.retire_from(conversation_id, message_id)
        return chats.add_message(conversation_id, "user", new_text,
                                 turn=(old.turn or old.id) if old is not None and old.conversation_id == conversation_id else None)


@dataclass
class TurnVersions:
    """The kept versions of a conversation's last turn (each a question and its answer, after Regenerate or Edit)."""

    index: int  # 1-based: the one shown now (0 when the turn has no finished answer)
    total: int


def _last_turn(conversation_id: int) -> tuple[int | None, list[tuple[Message, Message]]]:
    """(the last turn's id, its versions as (question, answer) in the order they were made). An answer still streaming
    is not a version yet."""
    active = chats.active_messages(conversation_id)
    last_user = next((m for m in reversed(active) if m.role == "user"), None)
    if last_user is None or last_user.turn is None:
        return None, []
    messages = chats.turn_messages(conversation_id, last_user.turn)
    questions = {m.id: m for m in messages if m.role == "user"}
    return last_user.turn, [(questions[m.reply_to], m) for m in messages
                            if m.role == "assistant" and m.reply_to in questions and m.finish_reason != "streaming"]


def turn_versions(actor: Actor, value: Any) -> TurnVersions:
    """Which kept version of the last turn the conversation shows, and how many there are."""
    conv = own_conversation(actor, value)
    _, versions = _last_turn(conv.id)
    shown = next((i for i, (q, a) in enumerate(versions, 1) if q.active and a.active), 0)
    return TurnVersions(shown, len(versions))


def show_version(actor: Actor, value: Any, index: int) -> TurnVersions:
    """Show the `index`-th (1-based) kept version of the last turn: its question and answer become the active ones,
    the others stay kept. Nothing is deleted; ValueError for an index the turn does not have."""
    conv = own_conversation(actor, value)
    turn, versions = _last_turn(conv.id)
    if turn is None or not 1 <= int(index) <= len(versions):
        raise ValueError(f"This conversation's last turn has no version {index}.")
    question, answer = versions[int(index) - 1]
    chats.show_turn_version(conv.id, turn, question.id, answer.id)
    return TurnVersions(int(index), len(versions))


def conversation_markdown(export: dict[str, Any]) -> str:
    """A readable Markdown transcript of `storage.chats.conversation_export(...)`."""
    lines = [f"# {export['title']}", ""]
    if export.get("model"):
        lines += [f"*Model:* `{export['model']}`  ", f"*Created:* {export['created_at']}", ""]
    if export.get("system_prompt"):
        lines += ["> **System:** " + export["system_prompt"].replace("\n", "\n> "), ""]
    for m in export["messages"]:
        who = "User" if m["role"] == "user" else f"Assistant ({m.get('model') or '?'})"
        lines += [f"### {who}", "", m["content"] or "*(no text)*", ""]
        if m["role"] == "assistant" and m.get("ttft_ms") is not None:
            tps = f"{m['tok_per_s']:.1f} tok/s" if m.get("tok_per_s") else "—"
            lines += [f"<sub>TTFT {m['ttft_ms']:.0f} ms · {tps} · {m.get('completion_tokens') or 0} tokens</sub>", ""]
    return "\n".join(lines).rstrip() + "\n"


class Prefetched:
    """Runs an update stream in its own task from the moment it is created, so the model request is in
    flight while the caller is still busy (e.g. Gradio rendering the user's message). `aclose()` (also
    called when iteration ends or is cancelled) cancels the task and waits, so the partial answer is saved.

    With `min_interval`, the consumer gets at most one update per interval: updates carry the whole text so far,
    so the ones that piled up meanwhile are merged into the newest. A model on a GPU can stream 100+ tokens a
    second; a browser re-rendering the whole answer for each falls behind and keeps "typing" after Stop.

    With `total_rate`, the streams of this process that set it share that many updates per second: with N of them
    live, each waits at least N / total_rate between updates. Each page update costs the server a few milliseconds
    (Gradio post-processes every output of the event again), so 32 chats at 20 updates/s each would keep the event
    loop busy and delay everyone's first token; one chat alone keeps `min_interval`. The first update, the last
    one and errors are never held back."""

    _END = object()
    _sharing = 0  # live streams with a total_rate (one event loop per process: no lock needed)

    def __init__(self, gen: AsyncIterator[TurnUpdate], *, min_interval: float = 0.0, total_rate: float = 0.0) -> None:
        self._queue: asyncio.Queue = asyncio.Queue()
        self._gen = gen
        self._min_interval = min_interval
        self._total_rate = total_rate
        self._counted = total_rate > 0
        if self._counted:
            Prefetched._sharing += 1
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for item in self._gen:
                await self._queue.put(item)
        except Exception as exc:  # re-raised on the consumer's side
            await self._queue.put(exc)
        finally:
            await self._queue.put(self._END)

    @staticmethod
    def _partial(item: Any) -> bool:
        return isinstance(item, TurnUpdate) and item.finished is None and item.error is None

    def _interval(self) -> float:
        if not self._total_rate:
            return self._min_interval
        return max(self._min_interval, Prefetched._sharing / self._total_rate)

    async def __aiter__(self) -> AsyncIterator[TurnUpdate]:
        held = None  # an item taken while merging that must still be handled in order (the end, an error, the last update)
        try:
            while True:
                item, held = (held, None) if held is not None else (await self._queue.get(), None)
                if item is self._END:
                    return
                if isinstance(item, Exception):
                    raise item
                while self._partial(item) and not self._queue.empty():
                    nxt = self._queue.get_nowait()
                    if not self._partial(nxt):
                        held = nxt
                        break
                    item = nxt
                yield item
                interval = self._interval()
                if interval and self._partial(item):
                    await self._wait_unless_done(interval)
        finally:
            await self.aclose()

    async def _wait_unless_done(self, interval: float) -> None:
        """Sleep `interval`, but wake early when the stream ends, so a long shared interval never delays the last update."""
        if not self._total_rate:
            await asyncio.sleep(interval)
        elif not self._task.done():  # once it is done, what is left (the end) is already queued
            await asyncio.wait([self._task], timeout=interval)

    async def aclose(self) -> None:
        if self._counted:
            self._counted = False
            Prefetched._sharing -= 1
        if not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)


async def _drain(gen: AsyncIterator[TurnUpdate]) -> TurnUpdate | None:
    last = None
    async for update in gen:
        last = update
    return last


def run_turn_sync(gen: AsyncIterator[TurnUpdate]) -> TurnUpdate | None:
    """Run a turn to completion from synchronous code (scripts, tests)."""
    return asyncio.run(_drain(gen))


def mark_interrupted_answers() -> int:
    """At start, before anyone can chat: answers cut off by a crash stop looking finished (shown as interrupted).

    Safe only while no other studio writes to the same database; launch.py holds the DATA_DIR lock first."""
    count = chats.mark_streaming_interrupted()
    if count:
        log.info("chat.interrupted_answers", count=count)
    return count
