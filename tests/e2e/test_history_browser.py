"""End-to-end: a word from an earlier chat is found in History, shown, and opens back in Chat."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_chat_browser import ANSWER_MS, open_app, screenshot

pytestmark = pytest.mark.browser


def test_search_a_word_from_an_earlier_chat_and_open_it(page: Page, studio_url: str) -> None:
    word = f"zebracorn{uuid.uuid4().hex[:6]}"
    open_app(page, studio_url)
    page.locator("#new-chat").click()
    page.locator("#message-box textarea").fill(f"In five words: what could a {word} be?")
    page.locator("#send-btn").click()
    expect(page.locator("#chatbot [data-testid=bot] .message-content").last.locator(".msg-stats")).to_be_visible(timeout=ANSWER_MS)
    # The studio's Prometheus endpoint counted the answer.
    lines = httpx.get(f"{studio_url}metrics", timeout=10).text.splitlines()
    assert float(next(x for x in lines if x.startswith("studio_chat_messages_total")).split()[-1]) >= 1

    page.locator("#tab-history-button").click()
    expect(page.locator("#hist-table")).to_contain_text("Chats")  # the timeline lists what was recorded
    box = page.locator("#hist-search textarea, #hist-search input").first
    box.fill(word)
    box.press("Enter")
    rows = page.locator("#hist-table [role=row]:has([role=gridcell])")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(word)  # the snippet around the match
    rows.first.locator("[role=gridcell]").nth(2).click()
    expect(page.locator("#hist-detail")).to_contain_text(word)
    expect(page.locator("#hist-open")).to_be_enabled()
    screenshot(page, "history.png")
    page.locator("#hist-open").click()
    expect(page.locator("#tab-chat-button")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#chatbot [data-testid=user]").last).to_contain_text(word)
