"""End-to-end: arena votes and a 👍/👎 pair stored through the engines become preference pairs in the Datasets tab
(preview with skipped reasons, then saved as a dataset), a DPO fine-tune on that dataset starts in the Fine-tune tab
and is cancelled, and Compare's judge-agreement tab shows the agreement per judge, its disagreements, and judges a
battle with the served model."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_chat_browser import (
    ANSWER_MS,
    _patient_expect,  # noqa: F401  # the same generous expect timeout
    open_app,
)
from tests.e2e.test_compare_browser import pick

pytestmark = pytest.mark.browser

START_MS = 300_000  # the worker loads the bundled model (and a reference) on a CPU the vLLM server shares


@pytest.fixture
def judged(settings):
    """In the studio's own database, as its local owner: three battles voted A or B and one tie between two models
    named for this test, a judge's stored verdicts on them (one disagreeing), and a chat whose 👎 answer was
    regenerated into a 👍 one. Returns (tag, models, judge)."""
    from engines import accounts, conversations
    from engines.evaluation.compare import record_vote, save_battle_answers, start_battle
    from storage import battles, chats, connect

    tag = uuid.uuid4().hex[:6]
    models = (f"e2e-pref-a-{tag}", f"e2e-pref-b-{tag}")
    judge = f"e2e-judge-{tag}"
    db = connect(settings.db_url)
    try:
        owner = accounts.bootstrap(None)
        votes = [(f"Capital of France? {tag}", "Paris.", "Lyon, I think.", "a", "a"),
                 (f"What is 2 + 2? {tag}", "5", "4", "b", "a"),  # the judge disagrees
                 (f"Name a colour. {tag}", "Blue.", "Purple-ish, maybe.", "a", "a"),
                 (f"Tie? {tag}", "x", "y", "tie", "tie")]
        for prompt, a, b, vote, verdict in votes:
            bid = start_battle(owner, prompt, *models, blind=True)
            save_battle_answers(owner, bid, a, b)
            record_vote(owner, bid, vote)
            battles.save_judgement(bid, judge, verdict)
        cid = conversations.store_user_turn(owner, None, f"Give me a testing tip. {tag}")
        chats.add_message(cid, "assistant", "Tests are optional.", model=models[1], finish_reason="stop")
        conversations.set_feedback(owner, cid, 1, -1)
        conversations.retire_last_answer(cid)
        chats.add_message(cid, "assistant", "Test one behaviour per test.", model=models[0], finish_reason="stop")
        conversations.set_feedback(owner, cid, 1, 1)
    finally:
        db.close()
    return tag, models, judge


def test_votes_become_a_preference_dataset_a_dpo_run_starts_and_the_judge_is_compared(
        page: Page, studio_url: str, judged, tmp_path) -> None:
    tag, models, judge = judged
    open_app(page, studio_url)

    # Datasets: build the pairs of this test's two models, see what was skipped, save them as a dataset.
    page.locator("#tab-datasets-button").click()
    page.locator("#pref-panel").click()
    page.locator("#pref-models input, #pref-models textarea").first.fill(", ".join(models))
    box = page.locator("#pref-eval-fraction input")
    box.fill("0")
    box.press("Tab")
    page.locator("#pref-build").click()
    summary = page.locator("[data-testid=pref-summary]")
    expect(summary).to_have_attribute("data-rows", "4")  # three battles won by A or B, one 👍/👎 pair
    expect(summary).to_contain_text("Arena votes 3")
    expect(summary).to_contain_text("Thumbs up vs down 1")
    expect(summary).to_contain_text("ties and “both bad” 1")
    table = page.locator("#pref-table")
    expect(table).to_contain_text(f"What is 2 + 2? {tag}")
    expect(table.locator("[role=row]:has([role=gridcell])")).to_have_count(4)
    page.locator("#pref-panel").screenshot(path=str(tmp_path / "preference-panel.png"))

    name = f"e2e-prefs-{tag}"
    page.locator("#pref-name input, #pref-name textarea").first.fill(name)
    page.locator("#pref-save").click()
    expect(page.locator("#pref-saved")).to_contain_text(f"Saved “{name}” v1 with 4 pairs")

    # Fine-tune: DPO on the saved dataset starts (its progress shows), then it is cancelled.
    page.locator("#tab-finetune-button").click()
    pick(page, "ft-dataset", f"{name} · v1 (4 rows)")
    # Picked before DPO is: on a loaded machine the objective's check could otherwise see the dataset before it.
    expect(page.locator("#ft-dataset input")).to_have_value(f"{name} · v1 (4 rows)")
    page.locator("#ft-objective").get_by_text("DPO", exact=True).click()
    expect(page.locator("#ft-beta")).to_be_visible()
    expect(page.locator("#ft-orpo-lambda")).to_be_hidden()
    run_name = f"e2e-dpo-{tag}"
    page.locator("#ft-output-name textarea, #ft-output-name input").first.fill(run_name)
    page.locator("#ft-max-steps input").fill("2")
    page.locator("#ft-max-steps input").blur()
    expect(page.locator("#ft-errors-box")).not_to_contain_text("Dataset", timeout=60_000)
    expect(page.locator("#ft-start")).to_be_enabled()
    page.locator("#ft-start").click()
    bar = page.locator("[data-testid=ft-progress]")
    expect(bar).to_contain_text(run_name)
    expect(bar).to_have_attribute("data-status", "running", timeout=START_MS)
    page.locator("#ft-cancel").click()
    expect(bar).to_have_attribute("data-status", "cancelled", timeout=START_MS)

    # Compare: the judge's agreement with the votes, the battle it saw otherwise, and judging with the served model.
    page.locator("#tab-compare-button").click()
    page.locator("#tab-compare-agreement-button").click()
    row = page.locator("#agr-table [role=row]", has_text=judge)
    expect(row).to_contain_text("75%")  # 3 of 4 (the tie counts as a label)
    expect(page.locator("#agr-disagreements")).to_contain_text(f"What is 2 + 2? {tag}")
    pick(page, "agr-judge", "SmolLM2-135M-Instruct")
    for elem_id, value in (("agr-limit", "1"), ("agr-max-tokens", "16")):
        field = page.locator(f"#{elem_id} input")
        field.fill(value)
        field.press("Tab")
    page.locator("#agr-judge-btn").click()
    progress = page.locator("#agr-progress")
    expect(progress).to_have_attribute("data-status", "completed", timeout=ANSWER_MS)
    expect(progress).to_have_attribute("data-done", "1")
    expect(page.locator("#agr-table")).to_contain_text("SmolLM2-135M-Instruct")
    page.mouse.move(1, 1)
    page.screenshot(path=str(tmp_path / "judge-agreement.png"), full_page=True)
    print("screenshots:", tmp_path)
