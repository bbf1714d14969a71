"""Grow a dataset from Chat: one answer (with the turns before it), a whole conversation, or every 👍 answer.

Conversations are private: only the acting user's own chats are read. The dataset must be one they may change.
"""

from __future__ import annotations

from typing import Any

from engines.accounts import Actor, PermissionDenied
from engines.datasets import draft
from engines.datasets.formats import Row
from storage import chats
from storage.models import Conversation, Message

USABLE = ("stop", "length", None)  # finished answers; stopped, failed or streaming ones are left out


def own_conversation(actor: Actor, conversation_id: Any) -> Conversation:
    """The actor's own conversation (engines.conversations' rule: private even from admins, another person's reads as
    missing), refused here as PermissionDenied like every other dataset-side refusal."""
    from engines import conversations

    try:
        return conversations.own_conversation(actor, conversation_id)
    except conversations.ConversationNotFound as exc:
        raise PermissionDenied(str(exc)) from None


def conversation_row(conversation_id: int, upto_message_id: int | None = None, *, actor: Actor) -> Row:
    """The actor's conversation's system prompt and active turns, up to (and including) one assistant answer."""
    return _row(own_conversation(actor, conversation_id), upto_message_id)


def _row(conv: Conversation, upto_message_id: int | None = None) -> Row:
    conversation_id = conv.id
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


def add_conversation(dataset_id: int, conversation_id: int, upto_message_id: int | None = None, *, actor: Actor) -> int:
    """One row from the actor's own conversation into a dataset the actor may change (PermissionDenied otherwise)."""
    draft.writable(actor, dataset_id)
    conv = own_conversation(actor, conversation_id)
    return draft.add_row(dataset_id, _row(conv, upto_message_id).messages, "from-chat", actor=actor,
                         action="from_chat", conversation_id=conv.id)


def thumbs_up_rows(*, actor: Actor) -> list[Row]:
    """Every active 👍 answer in the actor's own conversations as a row (the turns before it included)."""
    liked = (Message.select(Message, Conversation).join(Conversation)
             .where((Message.feedback == 1) & (Message.role == "assistant") & (Message.active == True)  # noqa: E712
                    & (Conversation.owner_id == actor.id)))
    rows, seen = [], set()
    for m in liked.order_by(Message.id):
        try:
            row = _row(m.conversation, m.id)
        except ValueError:
            continue
        key = repr(row.messages)
        row.extra["conversation_id"] = m.conversation_id
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def add_thumbs_up(dataset_id: int, *, actor: Actor) -> int:
    """Append the actor's 👍 answers not already in the dataset (one undoable change); returns how many were added."""
    draft.writable(actor, dataset_id)
    have = {repr(r.messages) for r in draft.all_rows(dataset_id)}
    new = [r for r in thumbs_up_rows(actor=actor) if repr(r.messages) not in have]
    return draft.fill(dataset_id, new, actor=actor, replace=False, action="thumbs_up") if new else 0
