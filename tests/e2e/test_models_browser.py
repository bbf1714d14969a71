"""End-to-end: the Models tab shows the bundled server healthy with live metrics plotted; the studio's own
/metrics and /healthz answer next to the UI."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_chat_browser import open_app, screenshot

pytestmark = pytest.mark.browser


def test_models_tab_shows_the_server_healthy_with_metrics(page: Page, studio_url: str) -> None:
    open_app(page, studio_url)
    page.locator("#tab-models-button").click()
    expect(page.locator("#models-table")).to_contain_text("SmolLM2-135M-Instruct")
    pill = page.locator("#models-health-box [data-server='SmolLM2-135M-Instruct']")
    expect(pill).to_have_attribute("data-status", "ready")
    expect(pill).to_have_attribute("data-metrics", "ok", timeout=30_000)  # /metrics of the vLLM server was read
    # Polls every 2 s: the plots draw lines through several points (an idle server's line is flat, so check the path).
    for plot in ("#models-plot-requests", "#models-plot-kv"):
        line = page.locator(f"{plot} [aria-roledescription='line mark']").first
        expect(line).to_have_attribute("d", re.compile(r"^M[^L]+(L[^L]+){2,}$"), timeout=30_000)
    expect(page.locator("#models-log")).to_contain_text("INFO", timeout=30_000)  # the server log tail
    page.wait_for_timeout(800)
    screenshot(page, "models.png")


def test_the_studio_serves_prometheus_metrics_and_health(studio_url: str) -> None:
    metrics = httpx.get(f"{studio_url}metrics", timeout=10)
    assert metrics.status_code == 200 and "text/plain" in metrics.headers["content-type"]
    for name in ("studio_chat_messages_total", "studio_ttft_seconds_bucket", "studio_training_runs", "studio_model_servers"):
        assert name in metrics.text, name
    assert 'studio_model_servers{status="ready"} 1.0' in metrics.text
    health = httpx.get(f"{studio_url}healthz", timeout=10)
    assert health.status_code == 200 and health.json()["db"] is True and health.json()["status"] in ("ok", "degraded")
