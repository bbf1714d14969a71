"""Conversion between Gradio Chatbot messages, stored rows and OpenAI chat messages."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from studio.i18n import t


def flatten_content(content: Any) -> str:
    """Gradio 6 gives content as a string, a list of blocks (`{"type": "text", "text": …}`), or a file dict."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if content.get("type") == "text":
            return str(content.get("text", ""))
        if "text" in content:
            return str(content["text"])
        if "file" in content or "path" in content:
            return ""
        return str(content.get("value", ""))
    if isinstance(content, Iterable):
        return "".join(flatten_content(part) for part in content)
    return str(content)


def chatbot_to_openai(history: list[dict], system_prompt: str | None = None) -> list[dict[str, str]]:
    """Chatbot history → OpenAI messages (text only; thoughts/metadata messages are dropped)."""
    out = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for msg in history or []:
        role = msg.get("role") if isinstance(msg, dict) else getattr(msg, "role", None)
        content = msg.get("content") if isinstance(msg, dict) else getattr(msg, "content", None)
        metadata = msg.get("metadata") if isinstance(msg, dict) else getattr(msg, "metadata", None)
        if role not in ("user", "assistant", "system") or (metadata and metadata.get("title")):
            continue
        out.append({"role": role, "content": strip_stats(flatten_content(content))})
    return out


STATS_MARK = "\n\n<sub class='msg-stats'>"


def strip_stats(text: str) -> str:
    """Remove the display-only stats line we append under answers."""
    return text.split(STATS_MARK, 1)[0]


def stats_line(lang: str, *, ttft_ms: float | None, tok_per_s: float | None, tokens: int | None) -> str:
    return t(
        lang, "chat.stats",
        ttft=f"{ttft_ms:.0f}" if ttft_ms is not None else "—",
        tps=f"{tok_per_s:.1f}" if tok_per_s else "—",
        tokens=tokens if tokens is not None else "—",
    )


def display_assistant(lang: str, text: str, row: Any | None = None, *, error: str | None = None) -> str:
    """The visible text of an answer: its content, then an error note or its numbers in small print."""
    shown = text
    finish = getattr(row, "finish_reason", None)
    stored = getattr(row, "error", None)  # stored as "kind: sentence"
    error = error or (stored.split(": ", 1)[-1] if stored else None)
    model = getattr(row, "model", None)
    # Which model wrote it: a conversation can switch models (or adapters) between answers.
    who = f"<span class='msg-model'>{html.escape(model)}</span> · " if isinstance(model, str) and model else ""
    if error:
        shown += f"\n\n⚠️ **{t(lang, 'chat.error')}:** {error}"
    elif row is not None and getattr(row, "ttft_ms", None) is not None:
        line = stats_line(lang, ttft_ms=row.ttft_ms, tok_per_s=row.tok_per_s, tokens=row.completion_tokens)
        shown += f"{STATS_MARK}{who}{line}</sub>"
    elif finish == "stopped":
        shown += f"{STATS_MARK}{who}<span class='msg-stopped'>{t(lang, 'chat.stopped')}</span></sub>"
    elif finish == "interrupted":  # cut off by a crash or restart (marked at the next start): never pass it off as finished
        shown += f"\n\n⚠️ *{t(lang, 'chat.interrupted')}*"
    return shown


def rows_to_chatbot(rows: Iterable[Any], lang: str) -> list[dict[str, str]]:
    """Stored messages → Chatbot value (system rows are not shown)."""
    out = []
    for r in rows:
        if r.role == "user":
            out.append({"role": "user", "content": r.content})
        elif r.role == "assistant":
            out.append({"role": "assistant", "content": display_assistant(lang, r.content, r)})
    return out


FEEDBACK_LABELS = {1: "Like", -1: "Dislike"}  # the Chatbot's own names: these two render as filled thumbs


def feedback_values(rows: Iterable[Any]) -> list[str | None]:
    """The Chatbot's `feedback_value` for stored rows: one entry per shown answer ("Like", "Dislike" or None).

    The Chatbot counts answers the way it draws them, consecutive assistant messages sharing one bubble, so a run
    of answers counts once (its last vote wins)."""
    out: list[str | None] = []
    previous = None
    for r in rows:
        if r.role == "assistant":
            label = FEEDBACK_LABELS.get(getattr(r, "feedback", 0) or 0)
            if previous == "assistant":
                out[-1] = label or out[-1]
            else:
                out.append(label)
        if r.role in ("user", "assistant"):
            previous = r.role
    return out
