"""End-to-end: two models side by side, a blind arena vote that reveals the names, and the leaderboard moving."""

from __future__ import annotations

import re
import uuid

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
    expect(page.locator("#cmp-panes")).to_be_visible()
    page.locator("#cmp-mode label", has_text="Blind arena").click()
    expect(page.locator("#cmp-panes")).to_be_hidden()  # an arena is always two models: no count to pick
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
    # Named panes carry the letters of the vote buttons.
    expect(page.locator("#cmp-head-1")).to_contain_text("A · SmolLM2-135M-Instruct")
    expect(page.locator("#cmp-head-2")).to_contain_text(f"B · {served_adapter}")
    expect(page.locator("#cmp-stats-2")).to_contain_text("tokens", timeout=ANSWER_MS)
    expect(page.locator("#cmp-stats-1")).to_contain_text("tokens", timeout=ANSWER_MS)
    expect(page.locator("#cmp-bot-1 [data-testid=bot]").first).not_to_be_empty()
    # A named pair is a battle too: a vote is asked for (no names to "see": they are shown) and goes on the board.
    revealed = page.locator("#cmp-reveal")
    expect(page.locator("#cmp-vote-a")).to_be_visible(timeout=ANSWER_MS)
    expect(revealed).to_contain_text("leaderboard")
    expect(revealed).not_to_contain_text("see the names")
    page.locator("#cmp-refresh").click()
    expect(page.locator("#cmp-refresh")).to_be_enabled()
    before = {m: battles_of(page, m) for m in ("SmolLM2-135M-Instruct", served_adapter)}
    page.locator("#cmp-vote-a").click()
    expect(revealed).to_contain_text("Vote recorded. You preferred SmolLM2-135M-Instruct.")
    expect(page.locator("#cmp-vote-a")).to_be_hidden()
    # The vote's own reply carries the leaderboard (as in the blind test).
    assert {m: battles_of(page, m) for m in before} == {m: n + 1 for m, n in before.items()}


def pick(page: Page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    box.press("Enter")


def test_batch_evaluation_with_a_judge_filters_and_exports(page: Page, studio_url: str, served_adapter: str) -> None:
    open_app(page, studio_url)
    page.locator("#tab-compare-button").click()
    page.locator("#tab-compare-batch-button").click()
    pick(page, "ev-models", "SmolLM2-135M-Instruct")
    pick(page, "ev-models", served_adapter)
    page.keyboard.press("Escape")
    pick(page, "ev-judge", "SmolLM2-135M-Instruct")
    page.locator("#ev-pasted textarea").fill("What is the capital of France?\tParis\n한국의 수도는 어디인가요?\t서울\nName a colour.\tBlue")
    page.locator("#ev-settings").click()
    box = page.locator("#ev-max-tokens input[type=number]")
    box.fill("24")
    box.press("Tab")
    verdicts = page.locator("#ev-judge-max-tokens input")
    verdicts.fill("48")  # bounded verdicts: the tiny judge otherwise writes 512 tokens for each of 6 verdicts
    verdicts.press("Tab")
    page.locator("#ev-start").click()
    progress = page.locator("#ev-progress-box")
    expect(progress).to_have_attribute("data-status", "completed", timeout=ANSWER_MS)
    # Every prompt × model is in the table; the summary has the judge's win rate for the adapter.
    examples = page.locator("#ev-examples [role=row]:has([role=gridcell])")
    expect(examples).to_have_count(6)
    summary = page.locator("#ev-summary")
    expect(summary).to_contain_text("SmolLM2-135M-Instruct (baseline)")
    expect(summary).to_contain_text(served_adapter)
    expect(page.locator("#ev-bars [data-metric=rouge_l]")).to_have_count(2)  # every prompt had a reference
    # Each of the adapter's 3 answers got one judge outcome (a malformed verdict is an error, never a win).
    row = page.locator("#ev-summary [role=row]", has_text=served_adapter).first
    w, l_, t_, e = map(int, row.locator("[role=gridcell]").last.inner_text().strip().split("/"))
    assert w + l_ + t_ + e == 3
    if w + l_ + t_:
        expect(page.locator("#ev-bars [data-metric=win_rate]")).to_have_count(1)
    else:  # the tiny bundled judge rarely follows the verdict format: the page says so instead of a 0% bar
        expect(page.locator("#ev-judge-note")).to_contain_text("no usable verdict")
    # Filter to one model, open one example in full.
    pick(page, "ev-f-model", served_adapter)
    expect(examples).to_have_count(3)
    page.locator("#ev-examples [role=gridcell]", has_text="한국의 수도").first.click()
    expect(page.locator("#ev-detail")).to_contain_text("한국의 수도는 어디인가요?")
    expect(page.locator("#ev-detail")).to_contain_text("서울")  # the reference, in full
    expect(page.locator("#ev-detail")).to_contain_text(served_adapter)
    page.locator("#ev-export").click()
    expect(page.locator("#ev-csv")).to_contain_text(".csv")
    page.wait_for_timeout(800)  # plots finish their entry transition
    screenshot(page, "compare-batch.png")


def test_pickers_are_filled_and_the_leaderboard_follows_its_filters(page: Page, studio_url: str, served_adapter: str,
                                                                     settings, tmp_path) -> None:
    """The model pickers hold the served models when first opened (the page was built before any adapter was served),
    and the leaderboard is current when the tab opens and follows each filter as it changes, without Refresh."""
    from engines import accounts
    from engines.evaluation.compare import record_vote, start_battle
    from storage import connect

    tag = uuid.uuid4().hex[:6]
    blind_a, blind_b, open_a, open_b = (f"e2e-{k}-{tag}" for k in ("blind-a", "blind-b", "open-a", "open-b"))
    db = connect(settings.db_url)  # the studio's own database: two voted battles, one blind in a category, one not
    try:
        owner = accounts.bootstrap(None)
        record_vote(owner, start_battle(owner, "q", blind_a, blind_b, blind=True, category=f"cat-{tag}"), "a")
        record_vote(owner, start_battle(owner, "q", open_a, open_b, blind=False), "b")
    finally:
        db.close()

    open_app(page, studio_url)
    page.locator("#tab-compare-button").click()
    page.locator("#cmp-model-2 input").click()
    option = page.get_by_role("option", name=served_adapter)
    expect(option).to_be_visible(timeout=1_000)
    page.wait_for_timeout(1_500)
    expect(option).to_be_visible()  # the list stays open
    page.screenshot(path=str(tmp_path / "compare-picker.png"))
    option.click()
    expect(page.locator("#cmp-model-2 input")).to_have_value(served_adapter)

    board = page.locator("#cmp-board")
    expect(board).to_contain_text(blind_a, timeout=1_000)  # votes cast after the page was built
    expect(board).to_contain_text(open_b)
    page.locator("#cmp-board-category textarea, #cmp-board-category input").first.fill(f"cat-{tag}")
    expect(board).not_to_contain_text(open_b)
    expect(board).to_contain_text(blind_a)
    page.locator("#cmp-board-category textarea, #cmp-board-category input").first.fill("")
    expect(board).to_contain_text(open_b)
    page.locator("#cmp-leaderboard").get_by_text("Blind votes only").click()
    expect(board).not_to_contain_text(open_b)
    expect(board).to_contain_text(blind_b)
    page.locator("#cmp-since input").fill("1")
    expect(board).to_contain_text(blind_b)  # voted just now: inside the last day
    page.mouse.move(1, 1)
    page.locator("#cmp-leaderboard").screenshot(path=str(tmp_path / "compare-leaderboard-filtered.png"))
    print("screenshots:", tmp_path)
