"""Conversations and messages: every read and write the Chat and History tabs need."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from peewee import fn

from storage.db import database
from storage.models import Conversation, Message, utcnow

TITLE_CHARS = 60


def create_conversation(*, title: str = "New chat", model: str | None = None, system_prompt: str | None = None,
                        owner_id: int | None = None, source: str = "ui") -> Conversation:
    return Conversation.create(title=title, model=model, system_prompt=system_prompt, owner_id=owner_id, source=source)


def get_conversation(conversation_id: int) -> Conversation | None:
    return Conversation.get_or_none(Conversation.id == conversation_id)


def list_conversations(search: str = "", limit: int = 200, *, owner_id: int | None = None,
                       before: tuple[dt.datetime, int] | None = None) -> list[Conversation]:
    """Newest first, of one owner when `owner_id` is given; `search` matches titles and message text (case-insensitive).
    `before` = (updated_at, id) of the last conversation of a previous page: only older ones follow (a cursor)."""
    q = Conversation.select().order_by(Conversation.updated_at.desc(), Conversation.id.desc())
    if owner_id is not None:
        q = q.where(Conversation.owner_id == owner_id)
    if before is not None:
        at, last_id = before
        q = q.where((Conversation.updated_at < at) | ((Conversation.updated_at == at) & (Conversation.id < last_id)))
    term = search.strip()
    if term:
        like = f"%{term.lower()}%"
        hits = Message.select(Message.conversation).where(fn.LOWER(Message.content) ** like)
        q = q.where((fn.LOWER(Conversation.title) ** like) | (Conversation.id.in_(hits)))
    return list(q.limit(limit))


def rename_conversation(conversation_id: int, title: str) -> None:
    title = " ".join(title.split())[:200]
    if not title:
        raise ValueError("A title cannot be empty.")
    Conversation.update(title=title, updated_at=utcnow()).where(Conversation.id == conversation_id).execute()


def delete_conversation(conversation_id: int) -> None:
    with database.atomic():
        Message.delete().where(Message.conversation == conversation_id).execute()
        Conversation.delete().where(Conversation.id == conversation_id).execute()


def touch(conversation_id: int, **fields: Any) -> None:
    Conversation.update(updated_at=utcnow(), **fields).where(Conversation.id == conversation_id).execute()


def active_messages(conversation_id: int) -> list[Message]:
    return list(
        Message.select()
        .where((Message.conversation == conversation_id) & (Message.active == True))  # noqa: E712
        .order_by(Message.id)
    )


def add_message(conversation_id: int, role: str, content: str, **fields: Any) -> Message:
    """Insert a message and bump the conversation; the first user message becomes the title."""
    with database.atomic():
        if "turn" not in fields and role != "user":  # an answer joins the question it answers (the last active one)
            last = (Message.select(Message.id, Message.turn)
                    .where((Message.conversation == conversation_id) & (Message.role == "user") & (Message.active == True))  # noqa: E712
                    .order_by(Message.id.desc()).first())
            fields["turn"] = (last.turn or last.id) if last else None
            fields.setdefault("reply_to", last.id if last else None)
        msg = Message.create(conversation=conversation_id, role=role, content=content, **fields)
        if role == "user" and msg.turn is None:  # a new question starts a turn of its own
            Message.update(turn=msg.id).where(Message.id == msg.id).execute()
            msg.turn = msg.id
        conv = Conversation.get_by_id(conversation_id)
        updates: dict[str, Any] = {"updated_at": utcnow()}
        if role == "user" and conv.title == "New chat":
            updates["title"] = " ".join(content.split())[:TITLE_CHARS] or "New chat"
        Conversation.update(**updates).where(Conversation.id == conversation_id).execute()
    return msg


def start_with_answer(*, owner_id: int | None, source: str, model: str, system_prompt: str | None,
                      messages: list[tuple[str, str, str | None]], params: str) -> tuple[int, int]:
    """A new conversation holding `messages` (role, content, finish_reason) and the empty answer row that follows them,
    in one transaction of n + 3 statements: (conversation id, answer id). What `create_conversation`, `add_message`
    for each message and the answer's `add_message` store, without their reads (the gateway's hot path)."""
    first_user = next((c for r, c, _ in messages if r == "user"), "")
    title = " ".join(first_user.split())[:TITLE_CHARS] or "New chat"
    now = utcnow()
    with database.atomic():
        cid = Conversation.insert(title=title, model=model, system_prompt=system_prompt, owner_id=owner_id,
                                  source=source, created_at=now, updated_at=now).execute()
        question: int | None = None  # the last user message: the turn (and question) of what follows it
        for role, content, finish in messages:
            if role == "user":
                question = Message.insert(conversation=cid, role=role, content=content, created_at=now).execute()
            else:
                Message.insert(conversation=cid, role=role, content=content, finish_reason=finish, turn=question,
                               reply_to=question, created_at=now).execute()
        # A new question starts a turn of its own: its id (one statement for all of them).
        Message.update(turn=Message.id).where((Message.conversation == cid) & (Message.role == "user")).execute()
        answer = Message.insert(conversation=cid, role="assistant", content="", model=model, params=params,
                                finish_reason="streaming", turn=question, reply_to=question, created_at=now).execute()
    return cid, answer


def get_message(message_id: int) -> Message | None:
    return Message.get_or_none(Message.id == message_id)


def update_message(message_id: int, **fields: Any) -> None:
    Message.update(**fields).where(Message.id == message_id).execute()


def set_feedback(message_id: int, value: int) -> None:
    if value not in (-1, 0, 1):
        raise ValueError("feedback is -1, 0 or 1")
    Message.update(feedback=value).where(Message.id == message_id).execute()


def retire_from(conversation_id: int, message_id: int) -> int:
    """Mark a message and everything after it inactive (regenerate / edit keep the old text)."""
    return (
        Message.update(active=False)
        .where((Message.conversation == conversation_id) & (Message.id >= message_id) & (Message.active == True))  # noqa: E712
        .execute()
    )


def turn_messages(conversation_id: int, turn: int) -> list[Message]:
    """Every message of one turn, active or kept: its questions (an edit adds one) and all their answers, by id."""
    return list(Message.select().where((Message.conversation == conversation_id) & (Message.turn == turn)).order_by(Message.id))


def show_turn_version(conversation_id: int, turn: int, question_id: int, answer_id: int) -> None:
    """Make one kept question + answer of a turn the active one; the turn's other messages are kept inactive."""
    with database.atomic():
        Message.update(active=False).where((Message.conversation == conversation_id) & (Message.turn == turn)).execute()
        Message.update(active=True).where((Message.conversation == conversation_id) & (Message.turn == turn)
                                          & (Message.id.in_([question_id, answer_id]))).execute()


def conversation_export(conversation_id: int) -> dict[str, Any]:
    """A conversation with its active messages and their numbers, ready for JSON."""
    conv = Conversation.get_by_id(conversation_id)
    return {
        "id": conv.id,
        "title": conv.title,
        "model": conv.model,
        "system_prompt": conv.system_prompt,
        "created_at": conv.created_at.isoformat(),
        "updated_at": conv.updated_at.isoformat(),
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "model": m.model,
                "params": json.loads(m.params) if m.params else None,
                "ttft_ms": m.ttft_ms,
                "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens,
                "tok_per_s": m.tok_per_s,
                "finish_reason": m.finish_reason,
                "feedback": m.feedback,
                "created_at": m.created_at.isoformat(),
            }
            for m in active_messages(conversation_id)
        ],
    }


def mark_streaming_interrupted() -> int:
    """Every answer still 'streaming' becomes 'interrupted' (its writer died mid-answer); returns how many."""
    return Message.update(finish_reason="interrupted").where(Message.finish_reason == "streaming").execute()
