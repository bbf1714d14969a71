"""End-to-end with accounts: an admin and a member in two browser contexts of one studio, logged in through the
real login form. Each sees only their own conversations; the member finds the admin-only controls disabled with the
reason, and the same actions through the API (gradio_client, logged in as the member) are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import ROOT, start_studio, stop_studio
from tests.e2e.test_chat_browser import ANSWER_MS, screenshot

pytestmark = pytest.mark.browser

ADMIN, MEMBER = ("boss", "boss-password-1"), ("mia", "mia-password-1")


@pytest.fixture(scope="module")
def team_studio(tmp_path_factory, endpoint):
    """A second studio with AUTH (the first admin) and a member added from the command line, chatting through the
    session's vLLM server as an external endpoint (no second server on a 2-core machine)."""
    data = tmp_path_factory.mktemp("team")
    # Short answers by default (DEFAULT_MAX_TOKENS): the test reads who sees which chat, not what the model writes.
    env = {"AUTH": f"{ADMIN[0]}:{ADMIN[1]}", "VLLM_BASE_URL": endpoint.base_url, "DEFAULT_MAX_TOKENS": "48"}
    added = subprocess.run([sys.executable, "launch.py", "users", "add", MEMBER[0], "--role", "member", "--password-stdin"],
                           cwd=ROOT, env={**os.environ, "DATA_DIR": str(data), **env}, input=MEMBER[1] + "\n",
                           capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    proc, url, _ = start_studio(data, env, ready_path="healthz")
    yield url, data
    stop_studio(proc)


def login(browser: Browser, url: str, who: tuple[str, str], locale: str = "en-US") -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 950}, locale=locale)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    expect(page.locator("input[type=password]").first).to_be_visible()
    if who == ADMIN and locale == "en-US":
        screenshot(page, "accounts-login.png")  # the logged-out page: a login form and nothing else
    page.locator("input[type=text], input[name=username]").first.fill(who[0])
    page.locator("input[type=password]").first.fill(who[1])
    page.locator("input[type=password]").first.press("Enter")  # the login button's text follows the browser's language
    page.locator("#app-ready").wait_for(state="attached", timeout=120_000)
    expect(page.locator("#whoami-name")).to_have_text(who[0])
    return page


def chat_once(page: Page, word: str) -> None:
    """The first message of a fresh page (a click on "New chat" first could clear the box after it is filled)."""
    page.locator("#message-box textarea").fill(f"In three words: what is a {word}?")
    page.locator("#send-btn").click()
    expect(page.locator("#conversation-list")).to_contain_text(word, timeout=ANSWER_MS)
    expect(page.locator("#chatbot [data-testid=bot] .message-content").last.locator(".msg-stats")).to_be_visible(timeout=ANSWER_MS)


def test_admin_and_member_each_see_only_their_own_and_the_member_is_refused_admin_actions(browser: Browser, team_studio) -> None:
    url, data = team_studio
    admin, member = login(browser, url, ADMIN), login(browser, url, MEMBER)
    boss_word, mia_word = f"bosswidget{uuid.uuid4().hex[:5]}", f"miagadget{uuid.uuid4().hex[:5]}"
    chat_once(admin, boss_word)
    chat_once(member, mia_word)
    for page, mine, theirs in ((admin, boss_word, mia_word), (member, mia_word, boss_word)):
        page.reload()
        page.locator("#app-ready").wait_for(state="attached", timeout=120_000)
        expect(page.locator("#conversation-list")).to_contain_text(mine)
        expect(page.locator("#conversation-list")).not_to_contain_text(theirs)
        page.locator("#tab-history-button").click()
        expect(page.locator("#hist-table")).to_contain_text(mine)
        expect(page.locator("#hist-table")).not_to_contain_text(theirs)
        page.locator("#tab-chat-button").click()
    expect(member.locator("#whoami-role")).to_have_text("member")
    expect(member.locator("#logout-link")).to_be_visible()
    screenshot(member, "accounts-member-chat.png")

    # The member: admin-only controls are disabled, with the reason on the page.
    member.locator("#tab-models-button").click()
    expect(member.locator("#models-admin-only")).to_contain_text("Only an admin")
    expect(member.locator("#models-start")).to_be_disabled()
    screenshot(member, "accounts-member-models.png")
    member.locator("#tab-history-button").click()
    member.locator("#hist-archive").click()  # the archive accordion
    expect(member.locator("#arch-admin-only")).to_contain_text("Only an admin")
    expect(member.locator("#arch-import")).to_be_disabled()
    expect(member.locator("#arch-export")).to_be_disabled()
    member.locator("#tab-account-button").click()
    expect(member.locator("#acct-users-note")).to_contain_text("Only an admin")
    expect(member.locator("#acct-add")).to_be_disabled()
    screenshot(member, "accounts-member-team.png")

    # The admin manages the team from the same tab.
    admin.locator("#tab-account-button").click()
    expect(admin.locator("#acct-users-table")).to_contain_text(MEMBER[0])
    expect(admin.locator("#acct-add")).to_be_enabled()
    screenshot(admin, "accounts-admin-team.png")

    # The same refusals through the API, logged in as the member with the real gradio_client.
    from gradio_client import Client

    client = Client(url, auth=MEMBER, verbose=False)
    archive = Path(data) / "not-an-archive.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    from gradio_client import handle_file

    msg = client.predict(handle_file(str(archive)), "en", api_name="/import_archive")
    assert "Only an admin" in str(msg)
    with pytest.raises(Exception, match="Only an admin"):
        client.predict("en", "SmolLM2-135M-Instruct", "", None, None, None, api_name="/start_server")
    # A member changing their own password is told it worked (and it did).
    _, msg, _ = client.predict(MEMBER[0], MEMBER[1], "member", "en", api_name="/set_user_password")
    assert "New password set" in msg
    client.close() if hasattr(client, "close") else None
    # Files in the studio's folders are never served by path, even to a logged-in person (another's export, say).
    secret = Path(data) / "exports" / "user-1" / "conversation-1.json"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text('{"title": "boss-private"}')
    with httpx.Client(base_url=url) as http:
        assert http.post("login", data={"username": MEMBER[0], "password": MEMBER[1]}).status_code == 200
        for route in (f"gradio_api/file={secret}", f"file={secret}", f"gradio_api/file={str(secret).replace('/', '%2F')}"):
            r = http.get(route)
            assert r.status_code == 404 and "boss-private" not in r.text, route
    admin.context.close()
    member.context.close()


def test_the_team_tab_in_korean(browser: Browser, team_studio) -> None:
    url, _ = team_studio
    page = login(browser, url, MEMBER, locale="ko-KR")
    page.locator("#language-switch label:has-text('English')").click()
    page.locator("#tab-account-button").click()
    expect(page.locator("#acct-users-note")).to_contain_text("Only an admin", timeout=30_000)
    # Switched while Team is on show: the switch's own chain redraws Team's lines (no tab select runs).
    page.locator("#language-switch label:has-text('한국어')").click()
    expect(page.locator("#acct-users-note")).to_contain_text("관리자만", timeout=30_000)
    expect(page.locator("#whoami")).to_contain_text("로그아웃")
    expect(page.locator("#whoami")).to_be_visible()
    screenshot(page, "accounts-member-team-ko.png")
    page.locator("#language-switch label:has-text('English')").click()
    page.context.close()
