"""Grow a dataset from Chat: one answer (with the turns before it), a whole conversation, or every 👍 answer."""

from __future__ import annotations

from engines.datasets import draft
from engines.datasets.formats import Row
from storage import chats
from storage.models import Message

USABLE = ("stop", "length", None)  # finished answers; stopped, failed or streaming ones are left out


def conversation_row(conversation_id: int, upto_message_id: int | None = None) -> Row:
    """The conversation's system prompt and active turns, up to (and including) one assistant answer."""
    conv = chats.get_conversation(conversation_id)
    if conv is None:
        raise KeyError(conversation_id)
    msgs = [{"role": "system", "content": conv.system_prompt}] if (conv.system_prompt or "").strip() else []
    for m in chats.active_messages(conversation_id):
        if m.role == "assistant" and (m.finish_reason not in USABLE or not m.content.strip()):
            continue
        msgs.append({"role": m.role, "content": m.content})
        if upto_message_id is not None and m.id == upto_message_id:
            break
    while msgs and msgs[-1]["role"] != "assistant":  # a trailing question teaches nothing
        msgs.pop()
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValueError("This conversation has no finished answer to learn from.")
    return Row(msgs, "from-chat")


def add_conversation(dataset_id: int, conversation_id: int, upto_message_id: int | None = None) -> int:
    return draft.add_row(dataset_id, conversation_row(conversation_id, upto_message_id).messages, "from-chat",
                         action="from_chat", conversation_id=conversation_id)


def thumbs_up_rows() -> list[Row]:
    """Every active 👍 answer as a row (the turns before it included)."""
    liked = Message.select().where((Message.feedback == 1) & (Message.role == "assistant") & (Message.active == True))  # noqa: E712
    rows, seen = [], set()
    for m in liked.order_by(Message.id):
        try:
            row = conversation_row(m.conversation_id, m.id)
        except ValueError:
            continue
        key = repr(row.messages)
        row.extra["conversation_id"] = m.conversation_id
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def add_thumbs_up(dataset_id: int) -> int:
    """Append all 👍 answers not already in the dataset (one undoable change); returns how many were added."""
    have = {repr(r.messages) for r in draft.all_rows(dataset_id)}
    new = [r for r in thumbs_up_rows() if repr(r.messages) not in have]
    return draft.fill(dataset_id, new, replace=False, action="thumbs_up") if new else 0
