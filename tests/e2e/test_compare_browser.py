"""End-to-end: two models side by side, a blind arena vote that reveals the names, and the leaderboard moving."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_chat_browser import ANSWER_MS, _patient_expect, open_app, screenshot  # noqa: F401

pytestmark = pytest.mark.browser


def set_max_tokens(page: Page, n: int) -> None:
    page.locator("#cmp-params").click()
    box = page.locator("#cmp-max-tokens input[type=number]")
    box.fill(str(n))
    box.press("Tab")


def battles_of(page: Page, model: str) -> int:
    rows = page.locator("#cmp-board [role=row]", has_text=model)
    if rows.count() == 0:
        return 0
    cells = [c.strip() for c in rows.first.locator("[role=gridcell]").all_inner_texts()]
    return int(cells[5])


def test_blind_vote_reveals_the_names_and_moves_the_leaderboard(page: Page, studio_url: str, served_adapter: str) -> None:
    open_app(page, studio_url)
    page.locator("#tab-compare-button").click()
    page.locator("#cmp-refresh").click()
    expect(page.locator("#cmp-refresh")).to_be_enabled()
    page.locator("#cmp-mode label", has_text="Blind arena").click()
    set_max_tokens(page, 32)
    page.locator("#cmp-prompt textarea").fill("What is LoRA? One sentence.")
    page.locator("#cmp-send").click()
    # Names stay hidden until the vote; both panes answer.
    expect(page.locator("#cmp-head-1")).to_contain_text("Model A")
    expect(page.locator("#cmp-head-2")).to_contain_text("Model B")
    expect(page.locator("#cmp-vote-a")).to_be_visible(timeout=ANSWER_MS)
    for i in (1, 2):
        expect(page.locator(f"#cmp-stats-{i}")).to_contain_text("tokens")
    # The pair is drawn from every served model (the session may serve more adapters than the fixture's).
    before = {m.strip(): battles_of(page, m.strip()) for m in page.locator("#cmp-board [role=row] [role=gridcell]:nth-child(2)").all_inner_texts()}
    page.locator("#cmp-vote-b").click()
    revealed = page.locator("#cmp-reveal")
    expect(revealed).to_contain_text(re.compile(r"A was .+, B was .+\."))
    a, b = re.search(r"A was (.+?), B was (.+?)\.", revealed.inner_text()).groups()
    assert a != b
    expect(page.locator("#cmp-head-1")).to_contain_text(a)
    expect(page.locator("#cmp-head-2")).to_contain_text(b)
    expect(page.locator("#cmp-vote-a")).to_be_hidden()
    expect(page.locator("#cmp-board")).to_contain_text(b)
    assert battles_of(page, a) == before.get(a.strip(), 0) + 1
    assert battles_of(page, b) == before.get(b.strip(), 0) + 1
    expect(page.locator("#cmp-matrix")).to_contain_text("%")
    screenshot(page, "compare.png")


def test_side_by_side_with_named_models(page: Page, studio_url: str, served_adapter: str) -> None:
    open_app(page, studio_url)
    page.locator("#tab-compare-button").click()
    for i, name in ((1, "SmolLM2-135M-Instruct"), (2, served_adapter)):
        box = page.locator(f"#cmp-model-{i} input")
        box.fill(name)
        box.press("Enter")
    set_max_tokens(page, 24)
    page.locator("#cmp-prompt textarea").fill("Say hello.")
    page.locator("#cmp-send").click()
    expect(page.locator("#cmp-head-1")).to_contain_text("SmolLM2-135M-Instruct")
    expect(page.locator("#cmp-head-2")).to_contain_text(served_adapter)
    expect(page.locator("#cmp-stats-2")).to_contain_text("tokens", timeout=ANSWER_MS)
    expect(page.locator("#cmp-stats-1")).to_contain_text("tokens", timeout=ANSWER_MS)
    expect(page.locator("#cmp-bot-1 [data-testid=bot]").first).not_to_be_empty()
