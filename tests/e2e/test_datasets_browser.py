"""End-to-end: import a file in the Datasets tab, see its format and problems, edit a row, save a version,
pick it in Fine-tune; add a chat conversation to a dataset from the Chat tab."""

from __future__ import annotations

import json
import re
import sqlite3
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
    # The box's label (two lines in this narrow column) sits above "Drop File Here", not over it.
    label, drop = page.locator("#ds-file [data-testid=block-label]"), page.locator("#ds-file button.upload-container")
    expect(drop).to_be_visible()
    assert label.bounding_box()["y"] + label.bounding_box()["height"] <= drop.bounding_box()["y"] + 1
    page.locator("#ds-file input[type=file]").set_input_files(str(sharegpt_file(tmp_path)))
    detected = page.locator("#ds-detected")
    expect(detected).to_contain_text("ShareGPT")
    expect(detected).to_contain_text("1 error(s) in 1 row(s)")
    expect(page.locator("#ds-problems")).to_contain_text("role_order")
    expect(page.locator("#ds-problems")).to_contain_text("near_duplicate")

    # All or nothing by default: refused, nothing created.
    page.locator("#ds-import-name input, #ds-import-name textarea").first.fill(name)
    page.locator("#ds-import-btn").click()
    outcome = page.locator("#ds-import-msg")
    expect(outcome).to_contain_text("Nothing was imported")
    page.locator("#ds-valid-only input").check()
    page.locator("#ds-import-btn").click()
    expect(outcome).to_contain_text(f"Imported 3 rows into “{name}”")
    expect(detected).to_contain_text("ShareGPT")  # what the file is stays said above the outcome
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
    diff = page.locator("#ds-diff")
    expect(diff).to_contain_text("1 changed")
    expect(diff).to_contain_text("Changed rows (old → new)")  # the row and the turn that changed, old and new
    expect(diff.locator(".ds-old")).to_contain_text("A low-rank adapter.")
    expect(diff.locator(".ds-new")).to_contain_text("A low-rank adapter, trained in minutes.")
    expect(page.locator("#ds-page-info")).to_contain_text("saved as v2")
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
    expect(page.locator("#ds-page-info")).to_contain_text("1 row")
    expect(page.locator("#ds-page-info")).not_to_contain_text("1 rows")  # singular for one
    expect(page.locator("#ds-table")).to_contain_text("Name one colour.")


def valid_file(tmp: Path) -> Path:
    """Two valid OpenAI-style rows (nothing refused, nothing near-duplicate)."""
    rows = [{"messages": [{"role": "user", "content": "What is a LoRA rank?"}, {"role": "assistant", "content": "The adapter's width."}]},
            {"messages": [{"role": "user", "content": "What is an epoch?"}, {"role": "assistant", "content": "One pass over the data."}]}]
    path = tmp / "helper-openai.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def import_as(page: Page, path: Path, name: str) -> None:
    page.locator("#ds-file input[type=file]").set_input_files(str(path))
    expect(page.locator("#ds-detected")).to_contain_text("OpenAI")
    page.locator("#ds-import-name input, #ds-import-name textarea").first.fill(name)
    page.locator("#ds-import-btn").click()


def stored_messages(db_file: Path, row_id: int) -> str:
    """The row's messages as the studio stored them (read-only, beside the running studio)."""
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=10) as con:
        return con.execute("SELECT messages FROM dataset_rows WHERE id = ?", (row_id,)).fetchone()[0]


def test_a_taken_name_is_said_once_and_the_form_stays(page: Page, studio_url: str, tmp_path: Path) -> None:
    name = f"taken-{uuid.uuid4().hex[:6]}"
    path = valid_file(tmp_path)
    open_app(page, studio_url)
    open_datasets(page)
    import_as(page, path, name)
    outcome = page.locator("#ds-import-msg")
    expect(outcome).to_contain_text(f"Imported 2 rows into “{name}”")
    picker = page.locator("#ds-picker input")
    expect(picker).to_have_value(re.compile(re.escape(name)))

    # The same name again: one sentence under the button; the file, its detection and the picker are as they were.
    page.locator("#ds-import-btn").click()
    expect(outcome).to_contain_text(f"A dataset named “{name}” exists already: pick another name.")
    expect(page.locator("#ds-side [data-testid=status-tracker] .error")).to_have_count(0)
    expect(page.locator("#ds-detected")).to_contain_text("OpenAI")
    expect(page.locator("#ds-file")).to_contain_text(path.stem)  # the chosen file is still there
    expect(picker).to_have_value(re.compile(re.escape(name)))
    page.locator("#ds-import").screenshot(path=str(tmp_path / "import-name-taken-en.png"))

    try:
        page.locator("#language-switch label", has_text="한국어").click()
        expect(page.locator("#ds-import-btn")).not_to_have_text("Import")
        page.locator("#ds-import-btn").click()
        expect(outcome).to_contain_text(f"“{name}” 데이터셋이 이미 있습니다")
        expect(page.locator("#ds-side [data-testid=status-tracker] .error")).to_have_count(0)
        page.locator("#ds-import").screenshot(path=str(tmp_path / "import-name-taken-ko.png"))
    finally:
        page.locator("#language-switch label", has_text="English").click()
        expect(page.locator("#tab-datasets-button")).to_have_text("Datasets")

    # Another name: the same form imports at once.
    page.locator("#ds-import-name input, #ds-import-name textarea").first.fill(name + "-2")
    page.locator("#ds-import-btn").click()
    expect(outcome).to_contain_text(f"Imported 2 rows into “{name}-2”")
    expect(picker).to_have_value(re.compile(re.escape(name + "-2")))


def test_undo_puts_the_stored_row_back_in_the_editor(page: Page, studio_url: str, session_dir: Path, tmp_path: Path) -> None:
    name = f"undo-{uuid.uuid4().hex[:6]}"
    open_app(page, studio_url)
    open_datasets(page)
    import_as(page, valid_file(tmp_path), name)
    expect(page.locator("#ds-page-info")).to_contain_text("2 rows")

    page.locator("#ds-table [role=gridcell]").filter(has_text="What is a LoRA rank?").first.click()
    row_box = page.locator("#ds-row-id input")
    expect(row_box).to_have_value(re.compile(r"^[1-9]\d*$"))
    row_id = int(row_box.input_value())
    turns = page.locator("#ds-turns")
    turns.locator("[role=gridcell]").filter(has_text="The adapter's width.").first.dblclick()
    editor = page.locator("#ds-turns textarea, #ds-turns input[type=text]").first
    editor.fill("EDITED: the adapter's width, edited.")
    editor.press("Enter")
    status = page.locator("#ds-status")
    page.locator("#ds-save-row").click()
    expect(status).to_contain_text(f"Row {row_id} saved")
    expect(page.locator("#ds-table")).to_contain_text("EDITED")

    # Undo: the table and the editor both show the row as stored again.
    page.locator("#ds-undo").click()
    expect(status).to_contain_text("Undone")
    expect(page.locator("#ds-table")).not_to_contain_text("EDITED")
    expect(turns).to_contain_text("The adapter's width.")
    expect(turns).not_to_contain_text("EDITED")
    expect(page.locator("#ds-preview-box")).not_to_contain_text("EDITED")
    screenshot_path = tmp_path / "undo-editor.png"
    page.locator("#ds-main").screenshot(path=str(screenshot_path))

    # Save row now stores what the editor shows (the original), never the undone edit.
    page.locator("#ds-save-row").click()
    expect(status).to_contain_text(f"Row {row_id} saved")
    assert "EDITED" not in stored_messages(session_dir / "studio.db", row_id)
    expect(page.locator("#ds-table")).not_to_contain_text("EDITED")

    # A row whose adding is undone is gone: the editor closes instead of keeping a row that no longer exists.
    page.locator("#ds-add-row").click()
    expect(status).to_contain_text("added")
    expect(row_box).not_to_have_value(str(row_id))
    page.locator("#ds-undo").click()
    expect(status).to_contain_text("Undone")
    expect(row_box).to_have_value("")
    expect(turns).not_to_contain_text("The adapter's width.")


def test_duplicates_are_left_out_and_a_second_file_appends_a_version(page: Page, studio_url: str, tmp_path: Path) -> None:
    """A file with a repeated row imports without it (a warning, not a refusal); a second file is appended to the open
    dataset as its next version, leaving out the row the dataset already has; the same file again adds nothing."""
    name = f"append-{uuid.uuid4().hex[:6]}"
    q = [{"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]}
         for i in range(4)]
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in (q[0], q[1], q[0])), encoding="utf-8")
    second.write_text("".join(json.dumps(r) + "\n" for r in (q[1], q[2], q[3])), encoding="utf-8")
    open_app(page, studio_url)
    open_datasets(page)
    outcome = page.locator("#ds-import-msg")
    page.locator("#ds-append-btn").click()  # nothing open yet: said, nothing else changes
    expect(outcome).to_contain_text("Open a dataset first")
    expect(page.locator("#ds-drop-dups input")).to_be_checked()  # on by default
    import_as(page, first, name)
    expect(outcome).to_contain_text(f"Imported 2 rows into “{name}”")
    expect(outcome).to_contain_text("1 exact duplicate row was left out.")
    expect(page.locator("#ds-problems")).to_contain_text("same as row 1")
    expect(page.locator("#ds-page-info")).to_contain_text("2 rows")

    page.locator("#ds-file").get_by_label(re.compile(r"^(Clear|Remove this file)$")).first.click()  # the first file out
    page.locator("#ds-file input[type=file]").set_input_files(str(second))
    expect(page.locator("#ds-detected")).to_contain_text("OpenAI messages, 3 rows")
    # The detection line follows the page's language (it is drawn again from the picked file on a switch).
    page.locator("#language-switch label", has_text="한국어").click()
    expect(page.locator("#ds-detected")).to_contain_text("OpenAI 메시지 형식 감지, 3행", timeout=30_000)
    page.locator("#language-switch label", has_text="English").click()
    expect(page.locator("#ds-detected")).to_contain_text("OpenAI messages, 3 rows", timeout=30_000)
    page.locator("#ds-append-btn").click()
    expect(outcome).to_contain_text(f"Appended 2 rows to “{name}”: saved as version 2 (4 rows).")
    expect(outcome).to_contain_text("1 exact duplicate row was left out.")
    expect(page.locator("#ds-problems")).to_contain_text("already in the dataset")
    expect(page.locator("#ds-version-list input")).to_have_value(re.compile(r"^v2 · 4 rows"))
    expect(page.locator("#ds-page-info")).to_contain_text("4 rows · saved as v2")
    expect(page.locator("#ds-table")).to_contain_text("Question 3?")
    expect(page.locator("#ds-diff")).to_contain_text("2 added")  # v2 against v1: the appended rows, listed
    expect(page.locator("#ds-diff .ds-new")).to_have_count(2)
    expect(page.locator("#ds-diff")).to_contain_text("Question 3?")
    expect(page.locator("#ds-side [data-testid=status-tracker] .error")).to_have_count(0)
    page.mouse.move(1, 1)
    page.locator("#ds-import").screenshot(path=str(tmp_path / "append-en.png"))
    screenshot(page, "datasets-append.png")

    page.locator("#ds-append-btn").click()  # the same file again: every row is there already
    expect(outcome).to_contain_text(f"Every row of the file is already in “{name}”")
    expect(page.locator("#ds-version-list input")).to_have_value(re.compile(r"^v2 · 4 rows"))
    try:
        page.locator("#language-switch label", has_text="한국어").click()
        expect(page.locator("#ds-append-btn")).to_have_text("열린 데이터셋에 덧붙이기")
        expect(page.locator("#ds-drop-dups")).to_contain_text("완전히 같은 중복 행은 빼기")
        page.locator("#ds-append-btn").click()
        expect(outcome).to_contain_text("아무것도 덧붙이지 않았습니다")
        page.locator("#ds-import").screenshot(path=str(tmp_path / "append-ko.png"))
    finally:
        page.locator("#language-switch label", has_text="English").click()
        expect(page.locator("#tab-datasets-button")).to_have_text("Datasets")
    page.locator("#ds-undo").click()  # the append, undone in the working copy: v2 still holds it
    expect(page.locator("#ds-page-info")).to_contain_text("2 rows · ● unsaved changes since v2")
    page.locator("#ds-append-btn").click()  # the same rows again make the copy v2 once more: said, nothing saved
    expect(outcome).to_contain_text("the same as its last saved version")
    expect(page.locator("#ds-version-list input")).to_have_value(re.compile(r"^v2 · 4 rows"))


def test_a_trl_preference_file_imports_as_pairs_that_show_and_export(page: Page, studio_url: str, tmp_path: Path) -> None:
    """The Datasets import takes TRL preference pairs (a repeated pair left out); the open dataset shows its pairs
    from the saved version, and exports them in TRL's layouts only."""
    name = f"pairs-{uuid.uuid4().hex[:6]}"

    def pair(q: str, good: str, bad: str) -> dict:
        return {"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}]}

    rows = [pair("Capital of France?", "Paris.", "Lyon."), pair("2 + 2?", "4", "5"), pair("Capital of France?", "Paris.", "Lyon.")]
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    open_app(page, studio_url)
    open_datasets(page)
    page.locator("#ds-file input[type=file]").set_input_files(str(path))
    expect(page.locator("#ds-detected")).to_contain_text("TRL preference pairs (messages), 3 rows")
    page.locator("#ds-import-name input, #ds-import-name textarea").first.fill(name)
    page.locator("#ds-import-btn").click()
    outcome = page.locator("#ds-import-msg")
    expect(outcome).to_contain_text(f"Imported 2 preference pairs into “{name}”")
    expect(outcome).to_contain_text("1 exact duplicate row was left out.")
    expect(page.locator("#ds-picker input")).to_have_value(re.compile(re.escape(f"{name} · 2 preference pairs · v1")))
    expect(page.locator("#ds-page-info")).to_contain_text("2 preference pairs in v1")
    table = page.locator("#ds-table")
    expect(table).to_contain_text("Capital of France?")
    expect(table).to_contain_text("✓ Paris.")
    expect(table).to_contain_text("✗ Lyon.")

    page.locator("#ds-export-format label", has_text="JSONL (OpenAI)").click()
    page.locator("#ds-export").click()  # chat layouts do not hold pairs: said, nothing written
    expect(page.locator(".toast-body, [data-testid=toast-body]").filter(has_text="holds preference pairs")).to_be_visible()
    page.locator("#ds-export-format label", has_text="TRL pairs (plain text)").click()
    page.locator("#ds-export").click()
    expect(page.locator("#ds-export-file")).to_contain_text("trl-strings")
    href = page.locator("#ds-export-file a[href]").first.get_attribute("href")
    got = page.request.get(href if href.startswith("http") else studio_url.rstrip("/") + "/" + href.lstrip("/"))
    assert got.ok, got.status
    lines = [json.loads(x) for x in got.text().splitlines()]
    assert [(x["prompt"], x["chosen"], x["rejected"]) for x in lines][0][1:] == ("Paris.", "Lyon.")
    assert len(lines) == 2
    page.mouse.move(1, 1)
    page.locator("#ds-main").screenshot(path=str(tmp_path / "pairs-en.png"))
