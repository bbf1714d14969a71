"""End-to-end: a word from an earlier chat is found in History, shown, and opens back in Chat."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

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


def test_the_detail_of_a_running_run_follows_it_without_a_click(page: Page, studio_url: str, settings, tmp_path: Path) -> None:
    """A run shown while it runs ("running · step 8/20") reads "completed · step 20/20" once it ends, with no click."""
    from engines.training.jobs import process_start_time
    from storage import connect, runs
    from storage.models import TrainingRun

    name = f"watched-{uuid.uuid4().hex[:6]}"
    # A live process stands in for the worker, so the studio's JobManager adopts the run instead of ending it.
    worker = subprocess.Popen(["sleep", "600"], start_new_session=True)
    db = connect(settings.db_url)
    try:
        with db.atomic():  # never seen as "queued" (the JobManager would start a real worker for it)
            run = runs.create_run(name=name, base_model="SmolLM2-135M-Instruct", dataset="assets/datasets/studio-helper-en.jsonl",
                                  method="lora", spec={}, run_dir=str(settings.runs_path / name))
            runs.update_run(run.id, status="running", pid=worker.pid, pid_started=process_start_time(worker.pid),
                            step=8, total_steps=20)
        open_app(page, studio_url)
        page.locator("#tab-history-button").click()
        row = page.locator("#hist-table [role=row]:has([role=gridcell])").filter(has_text=name)
        row.locator("[role=gridcell]").nth(2).click()
        detail = page.locator("#hist-detail")
        expect(detail).to_contain_text("running")
        expect(detail).to_contain_text("step 8/20")

        runs.finish_run(run.id, "completed", step=20)
        expect(detail).to_contain_text("completed", timeout=15_000)
        expect(detail).to_contain_text("step 20/20")
        expect(detail).not_to_contain_text("running")
        page.locator("#hist-detail").screenshot(path=str(tmp_path / "history-detail-completed.png"))
    finally:
        worker.kill()
        worker.wait()
        TrainingRun.delete().where(TrainingRun.name == name).execute()  # other tests focus the newest run
        db.close()
