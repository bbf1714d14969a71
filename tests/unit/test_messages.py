from types import SimpleNamespace

from engines.conversations import conversation_markdown
from studio.messages import STATS_MARK, chatbot_to_openai, display_assistant, flatten_content, rows_to_chatbot, strip_stats


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
    assert display_assistant("en", "x", SimpleNamespace(ttft_ms=None, finish_reason="stopped", error=None)).endswith("stopped</sub>")


def test_markdown_export():
    md = conversation_markdown({
        "title": "T", "model": "m", "created_at": "2026", "system_prompt": "sys",
        "messages": [{"role": "user", "content": "q"},
                     {"role": "assistant", "content": "a", "model": "m", "ttft_ms": 10.0, "tok_per_s": 20.0, "completion_tokens": 5}],
    })
    assert md.startswith("# T") and "> **System:** sys" in md and "### Assistant (m)" in md and "20.0 tok/s" in md
