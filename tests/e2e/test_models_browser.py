"""End-to-end: the Models tab shows the bundled server healthy with live metrics plotted; a Hub model downloads
with progress; the studio's own /metrics and /healthz answer next to the UI."""

from __future__ import annotations

import re
import shutil

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import MODELS_DIR
from tests.e2e.test_chat_browser import DOCS, open_app, reload_app, screenshot, send_and_wait, set_max_tokens

pytestmark = pytest.mark.browser


def test_models_tab_shows_the_server_healthy_with_metrics(page: Page, studio_url: str) -> None:
    open_app(page, studio_url)
    # Two chats with a quiet spell between, before the tab is ever opened: the metrics are read in the background.
    set_max_tokens(page, 16)
    send_and_wait(page, "Say one. #ttft-a")
    page.wait_for_timeout(8_000)  # more than two background polls with no request
    send_and_wait(page, "Say two. #ttft-b")
    page.locator("#tab-models-button").click()
    # TTFT as dots, one per busy interval: both chats show, and no line joins them across the quiet spell.
    page.wait_for_function("""() => [...document.querySelectorAll('#models-plot-ttft g.mark-symbol path')]
        .filter(p => getComputedStyle(p).opacity !== '0' && p.getAttribute('opacity') !== '0').length >= 2""",
                           timeout=30_000)
    expect(page.locator("#models-plot-ttft g.mark-line path")).to_have_count(0)
    expect(page.locator("#models-table")).to_contain_text("SmolLM2-135M-Instruct")
    pill = page.locator("#models-health-box [data-server='SmolLM2-135M-Instruct']")
    expect(pill).to_have_attribute("data-status", "ready")
    expect(pill).to_have_attribute("data-metrics", "ok", timeout=30_000)  # /metrics of the vLLM server was read
    # Polls every 2 s: the plots draw lines through several points (an idle server's line is flat, so check the path).
    for plot in ("#models-plot-requests", "#models-plot-kv"):
        line = page.locator(f"{plot} [aria-roledescription='line mark']").first
        expect(line).to_have_attribute("d", re.compile(r"^M[^L]+(L[^L]+){2,}$"), timeout=30_000)
    expect(page.locator("#models-log")).to_contain_text("INFO", timeout=30_000)  # the server log tail
    # Longer than its box, the log shows its newest lines (scrolled to the bottom), as a terminal does.
    page.wait_for_function("""() => { const s = document.querySelector('#models-log .cm-scroller');
        return s && s.scrollHeight > s.clientHeight + 20 && s.scrollTop + s.clientHeight >= s.scrollHeight - 8; }""",
                           timeout=30_000)
    page.wait_for_timeout(800)
    screenshot(page, "models.png")


def test_an_admin_adds_and_removes_a_fleet_endpoint_from_the_models_tab(page: Page, studio_url: str, tmp_path) -> None:
    """A second endpoint of the served base, added and removed in the Models tab: a bad URL is said, a dead one is
    shown as down in the health line (chats go to the healthy one), and removing it takes it out of the line."""
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    open_app(page, studio_url)
    page.locator("#tab-models-button").click()
    page.locator("#models-fleet-box").click()
    base = page.locator("#models-fleet-base input")
    base.fill("SmolLM2-135M-Instruct")
    base.press("Enter")
    url = page.locator("#models-fleet-url input, #models-fleet-url textarea").first
    url.fill("file:///etc/passwd")
    page.locator("#models-fleet-add").click()
    msg = page.locator("#models-action-msg")
    expect(msg).to_contain_text("✗", timeout=60_000)  # not an http(s) server URL: said, nothing added
    expect(page.locator("#models-health-box [data-fleet]")).to_have_count(0)
    try:
        url.fill(dead)
        page.locator("#models-fleet-add").click()
        expect(msg).to_contain_text(f"Added {dead} as an endpoint of SmolLM2-135M-Instruct.", timeout=60_000)
        pill = page.locator("#models-health-box [data-fleet='SmolLM2-135M-Instruct']", has_text=dead)
        expect(pill).to_contain_text("down", timeout=60_000)
        page.mouse.move(1, 1)
        page.locator("#models-tab").screenshot(path=str(tmp_path / "fleet-en.png"))
    finally:
        url.fill(dead)
        page.locator("#models-fleet-remove").click()
    expect(msg).to_contain_text(f"no longer go to {dead}", timeout=60_000)
    expect(page.locator("#models-health-box [data-fleet]", has_text=dead)).to_have_count(0, timeout=60_000)


def test_the_studio_serves_prometheus_metrics_and_health(studio_url: str) -> None:
    metrics = httpx.get(f"{studio_url}metrics", timeout=10)
    assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]
    for name in ("studio_chat_messages_total", "studio_ttft_seconds_bucket", "studio_training_runs", "studio_model_servers"):
        assert name in metrics.text, name
    assert 'studio_model_servers{status="ready"} 1.0' in metrics.text
    health = httpx.get(f"{studio_url}healthz", timeout=10)
    assert health.status_code == 200 and health.json()["db"] is True and health.json()["status"] in ("ok", "degraded")


def test_download_a_hub_model_from_the_models_tab(page: Page, studio_url: str) -> None:
    """Through the session's Hub mirror: a gated model fails with its reason; a real one downloads with a progress
    bar, lands in the models table and in Start's choices."""
    shutil.rmtree(MODELS_DIR / "hub" / "models--studio-test--tiny-llama-e2e", ignore_errors=True)  # from a previous run
    open_app(page, studio_url)
    page.locator("#tab-models-button").click()
    page.locator("#dl-panel").get_by_text("Download a model from the Hub").first.click()
    repo = page.locator("#dl-repo textarea, #dl-repo input").first
    box = page.locator("#dl-progress")

    repo.fill("studio-test/gated")
    page.locator("#dl-start").click()
    # The box shows the newest download when the tab opens (an earlier test's may have ended in error): wait for this one.
    expect(box).to_have_attribute("data-job", re.compile("download-studio-test-gated$"), timeout=30_000)
    expect(box).to_have_attribute("data-status", "error", timeout=30_000)
    expect(box).to_contain_text("is gated")

    repo.fill("studio-test/tiny-llama-e2e")
    page.locator("#dl-start").click()
    expect(box).to_have_attribute("data-job", re.compile("tiny-llama-e2e"), timeout=30_000)  # a loaded CI box is slow
    expect(box).to_have_attribute("data-status", "done", timeout=60_000)
    expect(box).not_to_have_attribute("data-total", "0")
    expect(page.locator("#dl-jobs")).to_contain_text("studio-test/tiny-llama-e2e")
    expect(page.locator("#models-table")).to_contain_text("studio-test/tiny-llama-e2e", timeout=20_000)
    page.locator("#models-start-box").get_by_text("Start a server").first.click()  # closed while a server runs
    page.locator("#models-start-model input").click()
    expect(page.get_by_role("option", name="studio-test/tiny-llama-e2e")).to_be_visible()
    page.keyboard.press("Escape")
    page.wait_for_timeout(500)
    page.locator("#dl-panel").screenshot(path=str(DOCS / "models-download.png"))

    # The export panel's Cancel with nothing running says so (a real cancel is in the integration tests).
    page.locator("#exp-panel").get_by_text("Export a model").first.click()
    page.locator("#exp-cancel").click()
    expect(page.get_by_text("No export is running.").first).to_be_visible()
    page.wait_for_timeout(300)
    page.locator("#exp-panel").screenshot(path=str(DOCS / "models-export.png"))



OPEN_MS = 1_000  # "at once": the tab's real state is on screen within a second of opening it


def test_the_models_tab_shows_the_state_of_now_as_soon_as_it_opens(page: Page, studio_url: str, tmp_path) -> None:
    """The page is built once, at the app's start: every page load must draw the tab as it is now (server, metrics
    read since), not that moment's state ("No model server is running", empty plots) until the timer's first tick."""
    open_app(page, studio_url)
    page.locator("#tab-models-button").click()
    pill = page.locator("#models-health-box [data-server='SmolLM2-135M-Instruct']")
    expect(pill).to_have_attribute("data-metrics", "ok", timeout=30_000)  # the studio now holds metrics of this server
    line = page.locator("#models-plot-requests [aria-roledescription='line mark']").first
    expect(line).to_have_attribute("d", re.compile(r"^M[^L]+(L[^L]+){2,}$"), timeout=30_000)  # several polls' worth
    reload_app(page)  # a new page: built from the app's start, which knew no metrics
    page.locator("#tab-models-button").click()
    expect(page.locator("#models-tab")).to_be_visible()
    expect(pill).to_have_attribute("data-status", "ready", timeout=OPEN_MS)
    expect(pill).to_have_attribute("data-metrics", "ok", timeout=OPEN_MS)
    expect(line).to_have_attribute("d", re.compile(r"L"), timeout=2 * OPEN_MS)  # drawn from what was read before
    expect(page.locator("#models-servers-table")).to_contain_text("SmolLM2-135M-Instruct", timeout=OPEN_MS)
    expect(page.locator("#models-server-pick input")).to_have_value("SmolLM2-135M-Instruct", timeout=OPEN_MS)
    expect(page.locator("#models-table")).to_contain_text("SmolLM2-135M-Instruct", timeout=OPEN_MS)
    # A server runs: "Start a server" is folded away (and stays as the user leaves it when the tab is opened again).
    expect(page.locator("#models-start-model")).to_be_hidden(timeout=OPEN_MS)
    page.locator("#models-start-box").get_by_text("Start a server").first.click()
    expect(page.locator("#models-start-model")).to_be_visible()
    page.locator("#tab-chat-button").click()
    page.locator("#tab-models-button").click()
    page.wait_for_timeout(1_000)
    expect(page.locator("#models-start-model")).to_be_visible()
    page.locator("#models-start-box").get_by_text("Start a server").first.click()
    page.mouse.move(1, 1)
    page.screenshot(path=str(tmp_path / "models-on-open.png"), full_page=True)
    print("screenshot:", tmp_path / "models-on-open.png")


def test_the_export_picker_offers_new_models_and_stays_open(page: Page, studio_url: str, settings, tmp_path) -> None:
    """Its choices are read when the tab opens, not on focus: new choices sent to the open list closed it."""
    import uuid

    from storage import catalog, connect

    name = f"e2e-export-{uuid.uuid4().hex[:6]}"
    db = connect(settings.db_url)  # a model registered after the page was built (as a finished fine-tune does)
    try:
        catalog.upsert_model(name, "adapter", path=str(settings.data_dir / "runs" / name / "adapter"),
                             parent="SmolLM2-135M-Instruct")
    finally:
        db.close()
    open_app(page, studio_url)
    page.locator("#tab-models-button").click()
    page.locator("#exp-panel").get_by_text("Export a model").first.click()
    page.locator("#exp-model input").click()
    option = page.get_by_role("option", name=re.compile(re.escape(name)))
    expect(option).to_be_visible(timeout=OPEN_MS)
    page.wait_for_timeout(2_500)  # what a focus handler sends back has arrived by now (and an export poll has run)
    expect(option).to_be_visible()
    page.screenshot(path=str(tmp_path / "export-picker-open.png"))
    page.keyboard.press("Escape")
    print("screenshot:", tmp_path / "export-picker-open.png")
