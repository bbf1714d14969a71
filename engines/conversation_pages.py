"""One person's conversations a page at a time (the REST API's cursor pagination).

Kept beside `engines.conversations` (which others are changing now); `conversations_page` belongs there later."""

from __future__ import annotations

import datetime as dt

from engines.accounts import Actor
from storage import chats
from storage.models import Conversation


def conversations_page(actor: Actor, *, search: str = "", before: tuple[dt.datetime, int] | None = None,
                       limit: int = 50) -> list[Conversation]:
    """The actor's conversations, newest first, older than `before` = (updated_at, id) of a previous page's last one;
    `search` matches titles and message text."""
    return chats.list_conversations(search, limit, owner_id=actor.id, before=before)
