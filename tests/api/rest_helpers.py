"""Rows made the way a client makes them, for the REST tests: battles through /api/v1/arena, chats through /v1."""

from __future__ import annotations

import uuid

import httpx


def word() -> str:
    """A word no other test uses (to find exactly one's rows by search)."""
    return "w" + uuid.uuid4().hex[:10]


def battle(studio, key: str, prompt: str, **extra) -> dict:
    """A battle of the session's model against itself, a few tokens each; the stored battle as the API answers it."""
    body = {"prompt": prompt, "model_a": studio.model, "model_b": studio.model, "max_tokens": 4, "temperature": 0, **extra}
    with studio.client(key) as c:
        r = c.post("/arena/battles", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def chat(studio, key: str, text: str, conversation_id: int | None = None) -> int:
    """One turn through the OpenAI-compatible gateway (POST /v1/chat/completions); the conversation it was stored in."""
    body = {"model": studio.model, "messages": [{"role": "user", "content": text}], "max_tokens": 8, "temperature": 0}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    r = httpx.post(studio.url.rstrip("/") + "/v1/chat/completions", json=body,
                   headers={"Authorization": f"Bearer {key}"}, timeout=120)
    assert r.status_code == 200, r.text
    return int(r.json()["conversation_id"])
