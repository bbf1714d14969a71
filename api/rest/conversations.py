"""REST routes: the caller's own conversations — list and search, read, rename, delete, feedback, export, and the
kept versions of the last turn.

Conversations are private: another person's conversation answers 404 exactly like one that does not exist. Chatting
(adding a turn) is not here: it goes through the OpenAI-compatible gateway, POST /v1/chat/completions, with
`"conversation_id": N` in the body to continue conversation N."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from api.auth import acting_user
from api.rest.errors import ERRORS
from api.rest.pages import MAX_ID, CursorParam, Limit, Page, Timestamp, decode_cursor, encode_cursor
from engines import conversations
from engines.accounts import Actor
from engines.conversations import conversations_page

router = APIRouter(prefix="/conversations", tags=["conversations"], responses=ERRORS)

ConversationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The conversation's id.")]


class ConversationSummary(BaseModel):
    id: int
    title: str
    model: str | None = Field(None, description="The model of its last answer.")
    source: str = Field(description="Where it was started: `ui` (the Chat tab) or `api` (the /v1 gateway).")
    created_at: Timestamp
    updated_at: Timestamp


class MessageOut(BaseModel):
    index: int = Field(description="Position among the active messages (what the feedback route takes).")
    id: int
    role: str = Field(description="user | assistant")
    content: str
    model: str | None = None
    finish_reason: str | None = Field(None, description="stop | length | stopped | error | interrupted | …")
    ttft_ms: float | None = Field(None, description="Time to the first token, milliseconds.")
    tok_per_s: float | None = Field(None, description="Decode speed, tokens per second.")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    feedback: int = Field(0, description="1 👍, -1 👎, 0 none.")
    created_at: Timestamp


class TurnVersionsOut(BaseModel):
    index: int = Field(description="the kept version of the last turn shown now (1-based; 0: not answered yet)")
    total: int = Field(description="how many the last turn has (Regenerate and Edit each keep one more)")


class ConversationDetail(ConversationSummary):
    system_prompt: str | None = None
    messages: list[MessageOut] = Field(description="The active messages in order (regenerated or edited ones left out).")
    last_turn_versions: TurnVersionsOut


class Rename(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class Feedback(BaseModel):
    feedback: Literal[-1, 0, 1] = Field(description="1 👍, -1 👎, 0 clears.")


class ExportedMessage(BaseModel):
    role: str
    content: str
    model: str | None = None
    params: dict[str, Any] | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tok_per_s: float | None = None
    finish_reason: str | None = None
    feedback: int = 0
    created_at: str


class ConversationExport(BaseModel):
    id: int
    title: str
    model: str | None = None
    system_prompt: str | None = None
    created_at: str
    updated_at: str
    messages: list[ExportedMessage]


def summary(conv: Any) -> ConversationSummary:
    return ConversationSummary(id=conv.id, title=conv.title, model=conv.model, source=conv.source or "ui",
                               created_at=conv.created_at, updated_at=conv.updated_at)


def detail(actor: Actor, conversation_id: int) -> ConversationDetail:
    conv = conversations.own_conversation(actor, conversation_id)
    tv = conversations.turn_versions(actor, conv.id)
    rows = conversations.active_messages(actor, conv.id)
    messages = [MessageOut(index=i, id=m.id, role=m.role, content=m.content, model=m.model, finish_reason=m.finish_reason,
                           ttft_ms=m.ttft_ms, tok_per_s=m.tok_per_s, prompt_tokens=m.prompt_tokens,
                           completion_tokens=m.completion_tokens, feedback=m.feedback or 0, created_at=m.created_at)
                for i, m in enumerate(rows)]
    return ConversationDetail(**summary(conv).model_dump(), system_prompt=conv.system_prompt, messages=messages,
                              last_turn_versions=TurnVersionsOut(index=tv.index, total=tv.total))


@router.get("", response_model=Page[ConversationSummary], summary="Your conversations, newest first")
def list_conversations(
    limit: Limit = 50, cursor: CursorParam = None,
    search: Annotated[str, Query(max_length=200, description="Words in the title or the messages.")] = "",
    actor: Actor = Depends(acting_user),
) -> Page[ConversationSummary]:
    before = decode_cursor(cursor, str, int)
    rows = conversations_page(actor, search=search, limit=limit + 1,
                              before=(dt.datetime.fromisoformat(before[0]), before[1]) if before else None)
    shown = rows[:limit]
    nxt = encode_cursor(shown[-1].updated_at.isoformat(), shown[-1].id) if len(rows) > limit else None
    return Page[ConversationSummary](items=[summary(c) for c in shown], next_cursor=nxt)


@router.get("/{conversation_id}", response_model=ConversationDetail, summary="A conversation with its messages")
def get_conversation(conversation_id: ConversationId, actor: Actor = Depends(acting_user)) -> ConversationDetail:
    """One of your conversations with its active messages and their numbers.

    To continue it, chat through the OpenAI-compatible gateway: `POST /v1/chat/completions` with
    `"conversation_id": <id>` in the body (the OpenAI SDK's `extra_body=`); the new turn is stored here."""
    return detail(actor, conversation_id)


@router.patch("/{conversation_id}", response_model=ConversationSummary, summary="Rename a conversation")
def rename_conversation(conversation_id: ConversationId, body: Rename,
                        actor: Actor = Depends(acting_user)) -> ConversationSummary:
    conversations.rename_conversation(actor, conversation_id, body.title)
    return summary(conversations.own_conversation(actor, conversation_id))


@router.delete("/{conversation_id}", status_code=204, response_class=Response, summary="Delete a conversation")
def delete_conversation(conversation_id: ConversationId, actor: Actor = Depends(acting_user)) -> Response:
    conversations.delete_conversation(actor, conversation_id)
    return Response(status_code=204)


@router.put("/{conversation_id}/messages/{index}/feedback", response_model=MessageOut,
            summary="👍 / 👎 on a message (by its index among the active messages)")
def set_feedback(conversation_id: ConversationId, index: Annotated[int, Path(ge=0, le=MAX_ID)], body: Feedback,
                 actor: Actor = Depends(acting_user)) -> MessageOut:
    conversations.set_feedback(actor, conversation_id, index, body.feedback)
    return detail(actor, conversation_id).messages[index]


@router.put("/{conversation_id}/last-turn/{index}", response_model=ConversationDetail,
            summary="Show another kept version of the last turn (its question and answer)")
def show_last_turn_version(conversation_id: ConversationId, index: Annotated[int, Path(ge=1, le=MAX_ID)],
                           actor: Actor = Depends(acting_user)) -> ConversationDetail:
    """Regenerate and Edit keep the earlier question and answer of the last turn: this makes version `index` (1 =
    the first) the active one, as the Chat tab's ‹ › do. Nothing is deleted; 400 for a version the turn lacks."""
    conversations.show_version(actor, conversation_id, index)
    return detail(actor, conversation_id)


@router.get("/{conversation_id}/export", response_model=ConversationExport, summary="Export as JSON or Markdown",
            responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}}}})
def export_conversation(conversation_id: ConversationId,
                        format: Annotated[Literal["json", "markdown"], Query(description="json or markdown")] = "json",
                        actor: Actor = Depends(acting_user)) -> Any:
    """The conversation with its active messages and their numbers; `format=markdown` gives a readable transcript."""
    data = conversations.export_conversation(actor, conversation_id)
    if format == "markdown":
        return PlainTextResponse(conversations.conversation_markdown(data), media_type="text/markdown; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="conversation-{data["id"]}.md"'})
    return ConversationExport(**data)
