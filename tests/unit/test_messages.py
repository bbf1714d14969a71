from types import SimpleNamespace

from engines.conversations import conversation_markdown
from studio.messages import (
    STATS_MARK,
    chatbot_to_openai,
    display_assistant,
    feedback_values,
    flatten_content,
    rows_to_chatbot,
    strip_stats,
)


def test_flatten_gradio6_content_blocks():
    assert flatten_content([{"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}]) == "Hello world"
    assert flatten_content({"type": "text", "text": "x"}) == "x"
    assert flatten_content("plain") == "plain"
    assert flatten_content(None) == ""
    assert flatten_content([{"file": {"path": "/tmp/a.png"}, "type": "file"}]) == ""


def test_chatbot_history_to_openai_messages():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "안녕하세요"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi!" + STATS_MARK + "TTFT 9 ms</sub>"}]},
        {"role": "assistant", "content": "thinking", "metadata": {"title": "tool"}},
    ]
    assert chatbot_to_openai(history, "Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "안녕하세요"},
        {"role": "assistant", "content": "Hi!"},
    ]


def test_stored_rows_to_chatbot_with_stats_and_errors():
    rows = [
        SimpleNamespace(role="user", content="q"),
        SimpleNamespace(role="assistant", content="a", ttft_ms=95.2, tok_per_s=30.14, completion_tokens=8, finish_reason="stop", error=None),
        SimpleNamespace(role="assistant", content="part", ttft_ms=None, tok_per_s=None, completion_tokens=None, finish_reason="error",
                        error="server_down: The model server is not reachable"),
    ]
    out = rows_to_chatbot(rows, "en")
    assert out[0] == {"role": "user", "content": "q"}
    assert "TTFT 95 ms · 30.1 tok/s · 8 tokens" in out[1]["content"] and strip_stats(out[1]["content"]) == "a"
    assert out[2]["content"].startswith("part") and "not reachable" in out[2]["content"]
    assert "토큰/초" in rows_to_chatbot(rows, "ko")[1]["content"]
    stopped = display_assistant("en", "x", SimpleNamespace(ttft_ms=None, finish_reason="stopped", error=None, model="m<1>"))
    assert "stopped before the end" in stopped and "m&lt;1&gt;" in stopped and strip_stats(stopped) == "x"
    done = SimpleNamespace(ttft_ms=9.0, tok_per_s=1.0, completion_tokens=2, finish_reason="stop", error=None, model="SmolLM2")
    assert "SmolLM2</span> · TTFT 9 ms" in display_assistant("en", "y", done)  # which model wrote each answer


def test_stored_votes_become_the_chatbots_feedback_value():
    """One entry per answer bubble, in order: the Chatbot fills 👍/👎 from these when a chat is reopened."""
    rows = [
        SimpleNamespace(role="user", content="q1"), SimpleNamespace(role="assistant", content="a1", feedback=1),
        SimpleNamespace(role="user", content="q2"), SimpleNamespace(role="assistant", content="a2", feedback=0),
        SimpleNamespace(role="user", content="q3"), SimpleNamespace(role="assistant", content="a3", feedback=-1),
        SimpleNamespace(role="assistant", content="a3b", feedback=None),  # drawn in the bubble before: counted once
    ]
    assert feedback_values(rows) == ["Like", None, "Dislike"]
    assert feedback_values([]) == []


def test_markdown_export():
    md = conversation_markdown({
        "title": "T", "model": "m", "created_at": "2026", "system_prompt": "sys",
        "messages": [{"role": "user", "content": "q"},
                     {"role": "assistant", "content": "a", "model": "m", "ttft_ms": 10.0, "tok_per_s": 20.0, "completion_tokens": 5}],
    })
    assert md.startswith("# T") and "> **System:** sys" in md and "### Assistant (m)" in md and "20.0 tok/s" in md
