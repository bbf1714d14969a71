"""End-to-end: a word from an earlier chat is found in History, shown, and opens back in Chat; curves of runs are drawn."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.plots import wait_for_series
from tests.e2e.test_chat_browser import ANSWER_MS, open_app, screenshot

pytestmark = pytest.mark.browser


def test_search_a_word_from_an_earlier_chat_and_open_it(page: Page, studio_url: str) -> None:
    word = f"zebracorn{uuid.uuid4().hex[:6]}"
    open_app(page, studio_url)  # a fresh page is a new chat ("New chat" first could clear the box after it is filled)
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


def make_finished_run(settings, name: str, **spec) -> int:
    """A completed run with three loss points in its events file (what the History tab's curves are read from)."""
    from storage import runs

    run_dir = settings.runs_path / name
    run_dir.mkdir(parents=True, exist_ok=True)
    offset = spec.get("lora_r", 8) / 16  # runs apart on the chart, not drawn over each other
    (run_dir / "events.jsonl").write_text("".join(json.dumps({"type": "metric", "step": s, "loss": 2.0 / s + offset}) + "\n"
                                                  for s in (1, 2, 3)))
    run = runs.create_run(name=name, base_model="SmolLM2-135M-Instruct", dataset="assets/datasets/studio-helper-en.jsonl",
                          method="lora", spec={"lora_r": 8, **spec}, run_dir=str(run_dir))
    runs.finish_run(run.id, "completed")
    return run.id


def pick(page: Page, dropdown: str, text: str) -> None:
    page.locator(f"#{dropdown} input").click()
    page.locator("[role=option]", has_text=text).first.click()


def test_curves_of_a_new_model_or_a_second_run_are_drawn_and_named(page: Page, studio_url: str, session_dir: Path,
                                                                   settings) -> None:
    """Switching the lineage's model, or adding a run to the comparison, draws every series with a visible line
    (Gradio's plot used to keep the first value's colours: `stroke: none` and the old legend)."""
    from storage import connect

    tag = uuid.uuid4().hex[:4]
    a, b = f"pa-{tag}", f"pb-{tag}"
    db = connect(f"sqlite:///{session_dir / 'studio.db'}")  # the studio's own database: it reads what we add
    try:
        ids = {a: make_finished_run(settings, a), b: make_finished_run(settings, b, lora_r=16)}
    finally:
        db.close()

    open_app(page, studio_url)
    page.locator("#tab-history-button").click()
    page.locator("#hist-lineage").get_by_text("Model lineage").click()
    pick(page, "lin-model", a)
    wait_for_series(page, "lin-curves", [f"{a} · train"])
    pick(page, "lin-model", b)
    wait_for_series(page, "lin-curves", [f"{b} · train"])
    expect(page.locator("#lin-tree")).to_contain_text(b)

    page.locator("#hist-runs").get_by_text("Compare fine-tune runs").click()
    pick(page, "rc-runs", f"#{ids[a]} {a}")
    wait_for_series(page, "rc-curves", [f"{a} · train"])
    pick(page, "rc-runs", f"#{ids[b]} {b}")
    wait_for_series(page, "rc-curves", [f"{a} · train", f"{b} · train"])
    expect(page.locator("#rc-params")).to_contain_text("lora_r")
    page.keyboard.press("Escape")  # close the run list before the screenshot
    page.wait_for_timeout(800)  # the plots' entry transition
    screenshot(page, "history-curves.png")
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
