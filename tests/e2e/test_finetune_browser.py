"""End-to-end: start a quick fine-tune of the bundled model in the browser, watch it move, chat with the adapter."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.plots import LINES_JS, visible, wait_for_series
from tests.e2e.test_chat_browser import (
    ANSWER_MS,
    _patient_expect,  # noqa: F401  # the same generous expect timeout
    open_app,
    reload_app,
    screenshot,
    set_max_tokens,
)

pytestmark = pytest.mark.browser

TRAIN_MS = 600_000  # load + 4 steps of the bundled model on a CPU the vLLM server shares

# Records every distinct (status, step) the progress bar shows for run `name`, and the loss plot's lines while it is unfinished.
PROGRESS_RECORDER_JS = """
(name) => {
  const rec = {states: []};
  window.__ft = rec;
  const read = () => {
    const bar = document.querySelector('[data-testid="ft-progress"]');
    if (!bar || !bar.textContent.includes(name)) return;  // an earlier run shown before this one starts
    const s = {status: bar.dataset.status || '', step: Number(bar.dataset.step || 0), total: Number(bar.dataset.total || 0)};
    const prev = rec.states[rec.states.length - 1];
    if (!prev || prev.status !== s.status || prev.step !== s.step) rec.states.push(s);
  };
  new MutationObserver(read).observe(document.querySelector('#ft-progress-box'), {subtree: true, childList: true, attributes: true});
  read();
  // The loss plot's lines, sampled while the run is not finished yet: are they drawn with a visible stroke?
  rec.lines = [];
  rec.sampler = setInterval(() => {
    const bar = document.querySelector('[data-testid="ft-progress"]');
    const marks = [...document.querySelectorAll('#ft-loss-plot [aria-roledescription="line mark"]')];
    if (!bar || !bar.textContent.includes(name) || bar.dataset.status === 'completed' || !marks.length) return;
    rec.lines.push((""" + LINES_JS + """)('ft-loss-plot'));
  }, 250);
}
"""


def earlier_chat(settings) -> str:
    """A conversation already in the studio's database (as its local owner); returns its text."""
    from engines import accounts, conversations
    from storage import chats, connect

    text = f"An earlier chat {uuid.uuid4().hex[:6]}"
    db = connect(settings.db_url)
    try:
        cid = conversations.store_user_turn(accounts.bootstrap(None), None, text)
        chats.add_message(cid, "assistant", "An earlier answer.", model="SmolLM2-135M-Instruct", finish_reason="stop")
    finally:
        db.close()
    return text


@contextlib.contextmanager
def refresh_held(page: Page, line) -> Iterator[None]:
    """Holds the Fine-tune tab's refresh (hardware line + fresh name) in flight while the body runs; returns once it
    has arrived. The refresh is opened by a tab switch, so the body starts with the tab open and the request sent."""
    before = float(line.get_attribute("data-checked"))
    held: list = []
    holding = [True]

    def hold(route) -> None:
        body = json.loads(route.request.post_data or "{}")
        data = body.get("data") or []
        if holding[0] and len(data) <= 5 and any("studio-helper" in str(v) for v in data):
            held.append(route)  # the refresh: it carries the picked dataset
        else:
            route.continue_()

    page.route("**/gradio_api/queue/join*", hold)
    try:
        page.locator("#tab-chat-button").click()
        page.locator("#tab-finetune-button").click()
        for _ in range(50):
            if held:
                break
            page.wait_for_timeout(100)
        assert held, "the tab's refresh was not sent"
        yield
    finally:
        holding[0] = False
        for route in held:
            route.continue_()
        page.unroute("**/gradio_api/queue/join*")
    page.wait_for_function("(t) => Number(document.querySelector('#ft-hardware-line').dataset.checked) > t", arg=before,
                           timeout=10_000)  # the refresh arrived
    page.wait_for_timeout(500)  # and the fresh name's step in the page ran


def test_quick_finetune_moves_finishes_and_the_adapter_chats(page: Page, studio_url: str, settings) -> None:
    earlier = earlier_chat(settings)
    open_app(page, studio_url)
    page.locator("#tab-finetune-button").click()
    name = f"e2e-helper-{uuid.uuid4().hex[:6]}"
    name_box = page.locator("#ft-output-name textarea, #ft-output-name input").first
    name_box.fill(name)
    page.locator("#ft-max-steps input").fill("4")
    page.locator("#ft-max-steps input").blur()
    expect(page.locator("#ft-estimate")).to_contain_text("4 steps")
    expect(name_box).to_have_value(name)  # exactly: the checks below would also pass for a name with this one in it
    expect(page.locator("#ft-start")).to_be_enabled()

    # An invalid value is caught before anything starts, with the field named.
    page.locator("#ft-batch input").fill("0")
    page.locator("#ft-batch input").blur()
    expect(page.locator("#ft-errors-box")).to_contain_text("Batch size")
    expect(page.locator("#ft-start")).to_be_disabled()
    page.locator("#ft-batch input").fill("2")
    page.locator("#ft-batch input").blur()
    expect(page.locator("#ft-errors-box")).not_to_contain_text("Batch size")

    page.evaluate(PROGRESS_RECORDER_JS, name)
    page.locator("#ft-start").click()
    expect(page.locator("[data-testid=ft-progress]")).to_contain_text(name)
    page.wait_for_function("() => window.__ft.states.some(s => s.status === 'completed')", timeout=TRAIN_MS)
    states = page.evaluate("window.__ft.states")
    steps = [s["step"] for s in states if s["status"] in ("running", "completed")]
    assert steps[-1] == 4 and len(set(steps)) >= 2, states  # the bar moved; it did not jump from nothing to done
    # While it ran, the loss curve was drawn as it grew (Gradio's plot once kept the empty first value's colours:
    # a line with `stroke: none` until something re-rendered it), and it still is, named in the legend.
    sampled = page.evaluate("window.__ft.lines")
    assert any(all(visible(line) for line in lines) for lines in sampled), sampled
    wait_for_series(page, "ft-loss-plot", ["train"])
    # The loss curve: a line with one point per step.
    plot = page.locator("#ft-loss-plot")
    expect(plot.locator("[aria-roledescription='line mark']").first).to_be_visible()
    expect(plot.locator("[aria-roledescription='point']")).to_have_count(4)
    expect(page.locator("#ft-log")).to_contain_text("done: step 4")
    # The next estimate's time comes from what this machine measured (this run at least), and says so.
    page.locator("#ft-max-steps input").fill("6")
    page.locator("#ft-max-steps input").blur()
    expect(page.locator("#ft-estimate")).to_contain_text("6 steps")
    expect(page.locator("#ft-estimate")).to_contain_text(re.compile(r"time from \d+ earlier runs? on this machine"))

    # A reopened page shows the newest run again: closing the browser loses nothing.
    reload_app(page)
    page.locator("#tab-finetune-button").click()
    expect(page.locator("[data-testid=ft-progress]")).to_contain_text(name)
    expect(page.locator("[data-testid=ft-progress][data-served=true]")).to_be_visible(timeout=120_000)
    line = page.locator("#ft-loss-plot [aria-roledescription='line mark']").first
    expect(line).to_have_attribute("d", re.compile(r"^M[^L]*(L[^L]+){3}$"))  # drawn through all 4 points
    page.wait_for_timeout(800)  # let the plot's entry transition finish before the screenshot
    screenshot(page, "finetune.png")
    # "Chat with it": the Chat tab opens with the adapter picked, and it answers once the server has it.
    # A chat open in Chat before: "Chat with it" starts a new conversation instead of adding to that one.
    page.locator("#tab-chat-button").click()
    page.locator("#conversation-list label", has_text=earlier).click()
    expect(page.locator("#chatbot [data-testid=user]").first).to_contain_text(earlier)
    page.locator("#tab-finetune-button").click()
    page.locator("#ft-chat-with").click()
    expect(page.locator("#tab-chat-button")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#chatbot [data-testid=user]")).to_have_count(0)
    expect(page.locator("#model-picker input")).to_have_value(re.compile(re.escape(name)))
    set_max_tokens(page, 48)  # it answers at all, through the adapter: the length is not what is tested
    page.locator("#message-box textarea").fill("What is LoRA? Answer in one sentence.")
    page.locator("#send-btn").click()
    bot = page.locator("#chatbot [data-testid=bot] .message-content").last
    expect(bot.locator(".msg-stats")).to_be_visible(timeout=ANSWER_MS)
    assert "error" not in (bot.get_attribute("class") or "")
    expect(page.locator("#chatbot [data-testid=user]")).to_have_count(1)  # the new conversation: this question only
    expect(page.locator("#conversation-list label", has_text=earlier)).to_have_count(1)  # the earlier one is untouched
    assert len(bot.inner_text().strip()) > 10
    # "Compare with base": Compare opens with the adapter beside its base, and batch evaluation set to the run's eval split.
    page.locator("#tab-finetune-button").click()
    page.locator("#ft-compare").click()
    expect(page.locator("#tab-compare-button")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#cmp-model-1 input")).to_have_value(name)
    expect(page.locator("#cmp-model-2 input")).to_have_value("SmolLM2-135M-Instruct")
    page.locator("#tab-compare-batch-button").click()
    expect(page.locator("#ev-models")).to_contain_text(name)
    expect(page.locator("#ev-models")).to_contain_text("SmolLM2-135M-Instruct")
    expect(page.locator("#ev-source input[value=run]")).to_be_checked()
    expect(page.locator("#ev-run input")).to_have_value(re.compile(re.escape(name)))


def test_the_hardware_line_and_the_default_name_are_made_now(page: Page, studio_url: str, tmp_path) -> None:
    """The page is built once, at the app's start: the free memory is read again when the page loads and the tab
    opens, and the default run name follows the dataset picked and the time of picking (a typed name stays)."""
    import datetime as dt
    import time

    opened = time.time()
    open_app(page, studio_url)
    page.locator("#tab-finetune-button").click()
    line = page.locator("#ft-hardware-line")
    expect(line).to_contain_text(re.compile(r"GiB"))
    first = float(line.get_attribute("data-checked"))
    assert first >= opened - 1  # read for this page, not when the app started
    page.locator("#tab-chat-button").click()
    page.locator("#tab-finetune-button").click()
    page.wait_for_function("(t) => Number(document.querySelector('#ft-hardware-line').dataset.checked) > t", arg=first,
                           timeout=30_000)  # read again when the tab opened (seconds when the machine is loaded)

    name_box = page.locator("#ft-output-name textarea, #ft-output-name input").first
    page.locator("#ft-dataset input").click()
    page.get_by_role("option", name=re.compile(r"^studio-helper-ko")).click()
    expect(name_box).to_have_value(re.compile(r"studio-helper-ko-\d{4}-\d{6}$"))
    stamp = dt.datetime.strptime(f"{dt.datetime.now():%Y}-" + name_box.input_value()[-11:], "%Y-%m%d-%H%M%S")
    assert abs((dt.datetime.now() - stamp).total_seconds()) < 120, name_box.input_value()  # now, not the app's start
    page.mouse.move(1, 1)
    page.locator("#ft-form").screenshot(path=str(tmp_path / "finetune-form.png"))

    # A name the user typed is theirs: picking another dataset leaves it alone.
    name_box.fill("my-own-name")
    name_box.blur()
    page.locator("#ft-dataset input").click()
    page.get_by_role("option", name=re.compile(r"^studio-helper-en")).click()
    expect(page.locator("#ft-dataset input")).to_have_value(re.compile("studio-helper-en"))
    page.wait_for_timeout(1_000)
    expect(name_box).to_have_value("my-own-name")
    # A name typed while a fresh one is on its way is not overwritten when it arrives (CI once lost the name the
    # quick fine-tune test typed right after opening the tab). The tab's refresh is held in flight while we type.
    name_box.fill("")
    name_box.blur()
    with refresh_held(page, line):
        name_box.fill("typed-in-flight")
    expect(name_box).to_have_value("typed-in-flight")
    # Nor is the made name replaced under the cursor: someone who has selected it to type over it types their own
    # name, not the fresh one with theirs stuck on (CI once got "smollm2-…-211021e2e-helper-…" that way).
    name_box.fill("")
    name_box.blur()
    page.locator("#tab-chat-button").click()
    page.locator("#tab-finetune-button").click()
    expect(name_box).to_have_value(re.compile(r"-\d{4}-\d{6}$"))  # a made name again (the box was empty)
    with refresh_held(page, line):
        name_box.focus()
        name_box.select_text()
        page.wait_for_timeout(1_100)  # the fresh name's seconds differ from the one in the box
    page.keyboard.type("typed-over-selection")
    expect(name_box).to_have_value("typed-over-selection")
    # The line is in the page's language (and read again on the switch).
    page.locator("#language-switch label", has_text="한국어").click()
    expect(line).to_contain_text(re.compile(r"코어|GPU"))
    page.mouse.move(1, 1)
    page.locator("#ft-form").screenshot(path=str(tmp_path / "finetune-form-ko.png"))
    print("screenshots:", tmp_path)
