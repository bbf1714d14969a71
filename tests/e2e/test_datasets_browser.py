"""End-to-end: import a file in the Datasets tab, see its format and problems, edit a row, save a version,
pick it in Fine-tune; add a chat conversation to a dataset from the Chat tab."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_chat_browser import (
    ANSWER_MS,
    _patient_expect,  # noqa: F401  # the same generous expect timeout
    open_app,
    screenshot,
    set_max_tokens,
)

pytestmark = pytest.mark.browser


def sharegpt_file(tmp: Path) -> Path:
    rows = [
        {"conversations": [{"from": "human", "value": "What is LoRA?"}, {"from": "gpt", "value": "A low-rank adapter."}], "category": "ft"},
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "LoRA가 뭐예요?"},
                           {"from": "gpt", "value": "저랭크 어댑터예요."}], "category": "ft"},
        {"conversations": [{"from": "gpt", "value": "I speak first"}]},  # role order: an error on row 3
        {"conversations": [{"from": "human", "value": "what is LoRA"}, {"from": "gpt", "value": "a low-rank adapter"}]},
    ]
    path = tmp / "helper-sharegpt.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def open_datasets(page: Page) -> None:
    page.locator("#tab-datasets-button").click()


def test_import_edit_save_version_and_train_on_it(page: Page, studio_url: str, tmp_path: Path) -> None:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    open_app(page, studio_url)
    open_datasets(page)
    page.locator("#ds-file input[type=file]").set_input_files(str(sharegpt_file(tmp_path)))
    detected = page.locator("#ds-detected")
    expect(detected).to_contain_text("ShareGPT")
    expect(detected).to_contain_text("1 error(s) in 1 row(s)")
    expect(page.locator("#ds-problems")).to_contain_text("role_order")
    expect(page.locator("#ds-problems")).to_contain_text("near_duplicate")

    # All or nothing by default: refused, nothing created.
    page.locator("#ds-import-name input, #ds-import-name textarea").first.fill(name)
    page.locator("#ds-import-btn").click()
    expect(detected).to_contain_text("Nothing was imported")
    page.locator("#ds-valid-only input").check()
    page.locator("#ds-import-btn").click()
    expect(detected).to_contain_text(f"Imported 3 rows into “{name}”")
    expect(page.locator("#ds-picker input")).to_have_value(re.compile(re.escape(name)))
    expect(page.locator("#ds-page-info")).to_contain_text("3 rows")

    # Open the first row, edit its answer in the turns form, save; the preview marks the trained reply.
    page.locator("#ds-table [role=gridcell]").nth(1).click()
    expect(page.locator("#ds-row-id input")).not_to_have_value("")
    cell = page.locator("#ds-turns [role=gridcell]").filter(has_text="A low-rank adapter.").first
    cell.dblclick()
    editor = page.locator("#ds-turns textarea, #ds-turns input[type=text]").first
    editor.fill("A low-rank adapter, trained in minutes.")
    editor.press("Enter")
    page.locator("#ds-save-row").click()
    expect(page.locator("#ds-status")).to_contain_text("saved")
    expect(page.locator("#ds-preview-box pre .ds-trained").first).to_contain_text("trained in minutes")
    expect(page.locator("#ds-preview-box pre .ds-masked").first).to_contain_text("What is LoRA?")

    page.locator("#ds-note input, #ds-note textarea").first.fill("edited answer")
    page.locator("#ds-save").click()
    expect(page.locator("#ds-version-list input")).to_have_value(re.compile(r"^v2 · 3 rows"))
    expect(page.locator("#ds-diff")).to_contain_text("1 changed")
    screenshot(page, "datasets.png")

    # The saved version is a dataset the Fine-tune tab can train on.
    page.locator("#tab-finetune-button").click()
    page.locator("#ft-dataset input").click()
    expect(page.locator("[role=option]", has_text=f"{name} · v2 (3 rows)")).to_be_visible()
    page.keyboard.press("Escape")


def test_a_chat_conversation_becomes_a_dataset_row(page: Page, studio_url: str) -> None:
    name = f"chats-{uuid.uuid4().hex[:6]}"
    open_app(page, studio_url)
    open_datasets(page)
    page.locator("#ds-new").click()
    page.locator("#ds-new-name input, #ds-new-name textarea").first.fill(name)
    page.locator("#ds-create").click()
    expect(page.locator("#ds-picker input")).to_have_value(re.compile(re.escape(name)))

    page.locator("#tab-chat-button").click()
    set_max_tokens(page, 32)
    page.locator("#message-box textarea").fill("Name one colour.")
    page.locator("#send-btn").click()
    expect(page.locator("#chatbot [data-testid=bot] .msg-stats").last).to_be_visible(timeout=ANSWER_MS)
    page.locator("#chat-manage").click()
    page.locator("#chat-to-dataset input").click()
    page.locator("[role=option]", has_text=name).click()
    page.locator("#chat-to-dataset-btn").click()
    expect(page.locator(".toast-body, [data-testid=toast-body]").filter(has_text=f"Added to {name}")).to_be_visible()

    open_datasets(page)
    page.locator("#ds-picker input").click()
    page.locator("[role=option]", has_text=name).click()
    expect(page.locator("#ds-page-info")).to_contain_text("1 rows")
    expect(page.locator("#ds-table")).to_contain_text("Name one colour.")
