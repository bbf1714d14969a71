"""End-to-end: a key made in the Team tab, used by the real `openai` SDK; the chat it makes is in the page."""

from __future__ import annotations

import uuid

import openai
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_chat_browser import (
    _patient_expect,  # noqa: F401  # the same generous expect timeout
    open_app,
    reload_app,
    screenshot,
)

pytestmark = pytest.mark.browser


def _create_key(page: Page, label: str) -> str:
    page.locator("#acct-key-label input, #acct-key-label textarea").first.fill(label)
    page.locator("#acct-key-create").click()
    box = page.locator("#acct-new-key input, #acct-new-key textarea").first
    page.wait_for_function("() => (document.querySelector('#acct-new-key textarea, #acct-new-key input') || {}).value"
                           "?.startsWith('cs-')")
    return box.input_value()


def test_a_key_from_the_team_tab_chats_through_the_openai_sdk(page: Page, studio_url: str) -> None:
    open_app(page, studio_url)
    page.locator("#tab-account-button").click()
    key = _create_key(page, "e2e-sdk")
    usage = page.locator("#acct-key-usage")
    origin = studio_url.rstrip("/")
    expect(usage).to_contain_text(f"{origin}/v1")  # the base URL an OpenAI client needs, with the new key
    expect(usage).to_contain_text(key)
    expect(usage).to_contain_text("/api/v1/docs")
    expect(page.locator("#acct-keys-table")).to_contain_text("e2e-sdk")
    screenshot(page, "api-key-en.png")

    # The snippet's base URL and key work with the real SDK; the chat is the key owner's and appears in the page.
    token = f"zebra-{uuid.uuid4().hex[:6]}"
    client = openai.OpenAI(base_url=f"{origin}/v1", api_key=key, max_retries=0)
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model, max_tokens=8, temperature=0,
                                           messages=[{"role": "user", "content": f"Say {token}."}])
    assert reply.choices[0].message.content
    reload_app(page)
    expect(page.locator("#conversation-list label", has_text=token)).to_contain_text("· API")  # marked as the API's

    # In Korean: the help and the usage lines are translated.
    page.locator("#language-switch label:has-text('한국어')").click()
    page.locator("#tab-account-button").click()
    expect(page.locator("#acct-keys-help")).to_contain_text("OpenAI 호환")
    _create_key(page, "e2e-ko")
    expect(usage).to_contain_text("사용법")
    screenshot(page, "api-key-ko.png")
    page.locator("#language-switch label:has-text('English')").click()
