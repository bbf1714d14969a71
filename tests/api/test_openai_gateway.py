"""The OpenAI-compatible gateway (/v1) with real clients — the `openai` SDK, LangChain's ChatOpenAI and httpx —
against a launched studio with accounts, answering from the real CPU vLLM server; every exchange is stored."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import httpx
import openai
import pytest

pytestmark = pytest.mark.api

SHORT = {"max_tokens": 12, "temperature": 0.0}


def rows(api_studio, sql: str, *args) -> list[tuple]:
    """Read the studio's own database (read-only) to check what was stored."""
    con = sqlite3.connect(f"file:{api_studio.data_dir / 'studio.db'}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def messages_of(api_studio, cid: int) -> list[tuple]:
    return rows(api_studio, "SELECT role, content, finish_reason, model, ttft_ms, prompt_tokens, completion_tokens "
                            "FROM messages WHERE conversation_id = ? AND active = 1 ORDER BY id", cid)


def sdk(api_studio, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=api_studio.url.rstrip("/") + "/v1", api_key=key or api_studio.member_key, max_retries=0)


def test_models_lists_what_is_served_and_a_plain_answer_is_stored_as_the_key_owners(api_studio) -> None:
    client = sdk(api_studio)
    assert api_studio.model in [m.id for m in client.models.list().data]
    raw = client.chat.completions.with_raw_response.create(
        model=api_studio.model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}],
        **SHORT)
    resp = raw.parse()
    cid = int(raw.headers["x-studio-conversation"])
    assert resp.model_extra["conversation_id"] == cid
    text = resp.choices[0].message.content
    assert text and resp.choices[0].finish_reason in ("stop", "length")
    assert resp.usage.completion_tokens >= 1 and resp.usage.prompt_tokens > 3
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    # Stored as ana's api conversation: the system prompt, the user turn, the answer with its numbers.
    owner, source, system = rows(api_studio, "SELECT u.name, c.source, c.system_prompt FROM conversations c "
                                             "JOIN users u ON u.id = c.owner_id WHERE c.id = ?", cid)[0]
    assert (owner, source, system) == ("ana", "api", "Be brief.")
    stored = messages_of(api_studio, cid)
    assert [r[0] for r in stored] == ["user", "assistant"]
    assert stored[0][1] == "Say hi." and stored[1][1] == text
    assert stored[1][2] == resp.choices[0].finish_reason and stored[1][3] == api_studio.model
    assert stored[1][4] is not None and stored[1][6] == resp.usage.completion_tokens


def test_a_stream_with_usage_continues_its_conversation(api_studio) -> None:
    client = sdk(api_studio)
    stream = client.chat.completions.create(model=api_studio.model, messages=[{"role": "user", "content": "Count to three."}],
                                            stream=True, stream_options={"include_usage": True}, **SHORT)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2  # it streamed, not one lump
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1  # the usage chunk comes last
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish and finish[-1] in ("stop", "length")
    cid = chunks[0].model_extra["conversation_id"]
    # The next turn names the conversation: only the new user message is added, and the model sees the history.
    follow = client.chat.completions.create(
        model=api_studio.model, extra_body={"conversation_id": cid},
        messages=[{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": text},
                  {"role": "user", "content": "And to four?"}], **SHORT)
    assert follow.model_extra["conversation_id"] == cid
    stored = messages_of(api_studio, cid)
    assert [r[0] for r in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1][1] == text and stored[2][1] == "And to four?"
    assert follow.usage.prompt_tokens > chunks[-1].usage.prompt_tokens  # the history went to the model
    # The header works too (curl users), and another person's conversation is "not found".
    raw = httpx.post(api_studio.url + "v1/chat/completions", headers={"Authorization": f"Bearer {api_studio.admin_key}",
                     "X-Studio-Conversation": str(cid)},
                     json={"model": api_studio.model, "messages": [{"role": "user", "content": "hi"}], **SHORT}, timeout=60)
    assert raw.status_code == 404 and raw.json()["error"]["code"] == "conversation_not_found"
    assert len(messages_of(api_studio, cid)) == 4  # nothing was added to ana's chat


def test_seed_repeats_and_stop_ends_the_answer(api_studio) -> None:
    client = sdk(api_studio)
    ask = {"model": api_studio.model, "messages": [{"role": "user", "content": "Write a short poem about rivers."}],
           "temperature": 1.0, "max_tokens": 24}
    a = client.chat.completions.create(seed=1234, **ask).choices[0].message.content
    b = client.chat.completions.create(seed=1234, **ask).choices[0].message.content
    assert a == b
    long = client.chat.completions.create(seed=1234, **{**ask, "max_tokens": 40}).choices[0].message.content
    word = next(w for w in long.split()[2:] if w.isalpha() and len(w) > 3)  # a word the seeded answer says later on
    cut = client.chat.completions.create(seed=1234, stop=[word], **{**ask, "max_tokens": 40})
    assert word not in cut.choices[0].message.content and cut.choices[0].finish_reason == "stop"
    assert long.startswith(cut.choices[0].message.content.rstrip())


def test_errors_come_in_openais_shape(api_studio) -> None:
    with pytest.raises(openai.AuthenticationError) as bad_key:
        sdk(api_studio, key="cs-wrong").chat.completions.create(model=api_studio.model, messages=[{"role": "user", "content": "x"}])
    assert bad_key.value.code == "invalid_api_key"
    before = rows(api_studio, "SELECT COUNT(*) FROM conversations")[0][0]
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk(api_studio).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.code == "model_not_found"
    assert rows(api_studio, "SELECT COUNT(*) FROM conversations")[0][0] == before  # refused before storing anything
    with pytest.raises(openai.BadRequestError) as too_long:
        sdk(api_studio).chat.completions.create(model=api_studio.model, max_tokens=8,
                                                messages=[{"role": "user", "content": "word " * 40_000}])
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as too_long_stream:  # refused by the model's server: a status, not a stream
        sdk(api_studio).chat.completions.create(model=api_studio.model, max_tokens=8, stream=True,
                                                messages=[{"role": "user", "content": "word " * 40_000}])
    assert too_long_stream.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as tools:
        sdk(api_studio).chat.completions.create(model=api_studio.model, messages=[{"role": "user", "content": "x"}],
                                                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    assert tools.value.code == "unsupported"
    r = httpx.post(api_studio.url + "v1/chat/completions", headers={"Authorization": f"Bearer {api_studio.member_key}"},
                   json={"model": api_studio.model, "messages": [{"role": "assistant", "content": "x"}]}, timeout=30)
    assert r.status_code == 400 and "user" in r.json()["error"]["message"]


def test_an_adapter_answers_by_name(api_studio, served_adapter) -> None:
    client = sdk(api_studio)
    assert served_adapter in [m.id for m in client.models.list().data]
    resp = client.chat.completions.create(model=served_adapter, messages=[{"role": "user", "content": "Hello"}], **SHORT)
    assert resp.model == served_adapter and resp.choices[0].message.content
    assert messages_of(api_studio, resp.model_extra["conversation_id"])[-1][3] == served_adapter


def test_a_stream_opens_when_the_model_takes_the_request_not_at_its_first_token(api_studio) -> None:
    # The headers and the role chunk come while the model reads the prompt, as vLLM's own stream does: a client's
    # handling of the response is then not added to its time to the first token.
    body = {"model": api_studio.model, "stream": True, "max_tokens": 8, "temperature": 0.0,
            "messages": [{"role": "user", "content": "Summarise this: " + "The river runs down to the sea. " * 100}]}
    started = time.perf_counter()
    with httpx.stream("POST", api_studio.url + "v1/chat/completions", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {api_studio.member_key}"}) as resp:
        opened_ms = (time.perf_counter() - started) * 1000
        assert resp.status_code == 200
        cid = int(resp.headers["x-studio-conversation"])
        chunks = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]).strip()
    role, text, finish, _, ttft_ms, _, _ = messages_of(api_studio, cid)[-1]
    assert role == "assistant" and text and finish in ("stop", "length")
    # The studio's own TTFT runs from its request to vLLM to the first token: the stream opened before that token.
    assert opened_ms < ttft_ms, (opened_ms, ttft_ms)


def test_a_client_that_leaves_mid_stream_leaves_the_partial_answer_marked_stopped(api_studio) -> None:
    body = {"model": api_studio.model, "stream": True, "max_tokens": 400, "temperature": 0.8,
            "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]}
    with httpx.stream("POST", api_studio.url + "v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {api_studio.member_key}"}) as resp:
        cid = int(resp.headers["x-studio-conversation"])
        seen = 0
        for line in resp.iter_lines():
            seen += line.startswith("data: ")
            if seen >= 4:
                break  # leave while it is still writing
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = messages_of(api_studio, cid)[-1]
        if answer[2] != "streaming":
            break
        time.sleep(0.3)
    assert answer[0] == "assistant" and answer[2] == "stopped", answer
    assert answer[1]  # the words that were written are kept


def test_langchain_chat_openai_invokes_and_streams(api_studio) -> None:
    from langchain_core.messages import HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=api_studio.url.rstrip("/") + "/v1", api_key=api_studio.member_key, model=api_studio.model,
                     temperature=0, max_tokens=12, max_retries=0, stream_usage=True)
    token = uuid.uuid4().hex[:6]  # other tests chat through the same studio: count only this test's messages
    reply = llm.invoke([SystemMessage("Answer briefly."), HumanMessage(f"What is the capital of France? ({token})")])
    assert reply.content and reply.usage_metadata["output_tokens"] >= 1
    parts = list(llm.stream(f"Name a colour. ({token})"))
    assert "".join(p.content for p in parts).strip()
    assert any(p.usage_metadata and p.usage_metadata["output_tokens"] >= 1 for p in parts)
    n_lc = rows(api_studio, "SELECT COUNT(*) FROM conversations c JOIN messages m ON m.conversation_id = c.id "
                            "WHERE c.source = 'api' AND m.content LIKE ?", f"%({token})")[0][0]
    assert n_lc == 2


def test_loopback_needs_no_key_on_a_studio_without_accounts(studio_url) -> None:
    r = httpx.get(studio_url + "v1/models", timeout=30)
    assert r.status_code == 200 and r.json()["object"] == "list"


def test_many_clients_at_once_are_all_answered_and_stored(api_studio) -> None:
    """Sixteen streams at once: every request answered (no 'database is locked' 500s) and every exchange stored."""
    import asyncio

    async def one(client: httpx.AsyncClient, i: int) -> int:
        body = {"model": api_studio.model, "stream": True, "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": f"crowd-{i}: say hi"}]}
        async with client.stream("POST", "v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200, await resp.aread()
            lines = [line async for line in resp.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        return int(resp.headers["x-studio-conversation"])

    async def crowd() -> list[int]:
        async with httpx.AsyncClient(base_url=api_studio.url, timeout=300,
                                     headers={"Authorization": f"Bearer {api_studio.member_key}"}) as client:
            return await asyncio.gather(*(one(client, i) for i in range(16)))

    cids = asyncio.run(crowd())
    assert len(set(cids)) == 16
    for cid in cids:
        stored = messages_of(api_studio, cid)
        assert [r[0] for r in stored] == ["user", "assistant"] and stored[1][2] in ("stop", "length"), stored
