"""End-to-end: a page left open on one tab runs no other tab's polling (issue 17, "a page left open degrades").

A tab's timer starts ticking the first time the tab is shown (Gradio mounts a tab's components then) and, unless
something stops it, never stops: every tick updates its outputs, and each update makes Gradio's page search its
whole layout tree. The Fine-tune poll (every 1.5 s, ~10 outputs) thus cost a page that had once shown Fine-tune
CPU on every tab for as long as it stayed open. Runs the real app (launch.py --no-serve: no model server is needed
for this) in Debian's Chromium and counts, from the page's own requests, which events it starts while on a tab.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import start_studio, stop_studio

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def bare_studio(tmp_path_factory):
    """The studio without a model server, on its own data folder."""
    data = tmp_path_factory.mktemp("idle-page")
    proc, url, _ = start_studio(data, {}, "--no-serve", timeout=120)
    yield url
    stop_studio(proc)


def event_ids(url: str, api_names: set[str]) -> dict[str, int]:
    """The fn_index the page sends for each named event (its dependency id in /config)."""
    deps = httpx.get(url + "config", timeout=10).json()["dependencies"]
    found = {d["api_name"]: d["id"] for d in deps if d.get("api_name") in api_names}
    assert set(found) == api_names, found
    return found


def record_joins(page) -> list[tuple[float, int]]:
    """(time, fn_index) of every event the page starts from now on (Gradio's POST /gradio_api/queue/join)."""
    joins: list[tuple[float, int]] = []

    def on_request(request) -> None:
        if "/queue/join" in request.url and request.post_data:
            joins.append((time.monotonic(), json.loads(request.post_data).get("fn_index")))

    page.on("request", on_request)
    return joins


def started(joins: list[tuple[float, int]], fn: int, since: float) -> int:
    return sum(1 for at, f in joins if f == fn and at >= since)


def test_finetune_poll_runs_only_while_its_tab_is_open(page, bare_studio: str) -> None:
    ids = event_ids(bare_studio, {"poll_training", "poll_status"})
    joins = record_joins(page)
    page.goto(bare_studio)
    page.locator("#app-ready").wait_for(state="attached", timeout=120_000)

    # On Chat (the tab a page opens on): Fine-tune's poll (every 1.5 s) does not run.
    since = time.monotonic()
    page.wait_for_timeout(7_000)
    assert started(joins, ids["poll_training"], since) == 0, "the Fine-tune poll runs while the Chat tab is open"

    # Fine-tune opened: its poll starts (a tick waits for the one before it, which takes a while on a loaded machine).
    page.locator("#tab-finetune-button").click()
    since = time.monotonic()
    page.wait_for_timeout(8_000)
    assert started(joins, ids["poll_training"], since) >= 1, "the Fine-tune poll does not run while its tab is open"

    # Back on Chat: it stops again (one tick may already be on its way when the tab changes). Before the fix it
    # went on ticking here, on every tab, until the page was closed.
    page.locator("#tab-chat-button").click()
    page.wait_for_timeout(2_000)
    since = time.monotonic()
    page.wait_for_timeout(6_000)
    assert started(joins, ids["poll_training"], since) == 0, "the Fine-tune poll kept running after leaving its tab"


def record_status_reads(page) -> list[float]:
    reads: list[float] = []
    page.on("request", lambda r: reads.append(time.monotonic()) if r.url.split("?")[0].endswith("/studio/status") else None)
    return reads


def test_an_idle_page_starts_no_gradio_event_until_the_badge_changes(page, bare_studio: str) -> None:
    """The badge is watched by a plain fetch of its digest; Gradio's poll_status runs only when the digest moves."""
    ids = event_ids(bare_studio, {"poll_status"})
    joins = record_joins(page)
    reads = record_status_reads(page)
    page.goto(bare_studio)
    page.locator("#app-ready").wait_for(state="attached", timeout=120_000)
    badge = page.get_by_test_id("server-status")
    badge.wait_for(timeout=30_000)
    page.wait_for_timeout(4_000)  # the first read (digest unknown until then) may start one poll

    since = time.monotonic()
    page.wait_for_timeout(9_000)
    assert sum(1 for at in reads if at >= since) >= 2, "the page stopped asking /studio/status"
    assert started(joins, ids["poll_status"], since) == 0, "an idle page with nothing changed still starts Gradio events"
    direct = httpx.get(bare_studio + "studio/status", timeout=10)
    assert direct.status_code == 200 and len(direct.json()["sig"]) == 16, direct.text

    # The digest changes (as when a server starts or an adapter appears): the page asks Gradio for the new badge.
    served = iter(range(10_000))
    page.route("**/studio/status", lambda route: route.fulfill(json={"sig": f"moved-{next(served)}"}))
    since = time.monotonic()
    page.wait_for_timeout(7_000)
    assert started(joins, ids["poll_status"], since) >= 1, "a changed digest did not refresh the badge"

    # The digest cannot be read (a restart, a proxy): the page falls back to asking Gradio, so the badge stays true.
    page.unroute("**/studio/status")
    page.route("**/studio/status", lambda route: route.fulfill(status=502, body="bad gateway"))
    since = time.monotonic()
    page.wait_for_timeout(7_000)
    assert started(joins, ids["poll_status"], since) >= 1, "an unreadable digest left the badge unwatched"
    assert badge.is_visible()


def vega_window_listeners(cdp, sources: dict[str, bool]) -> int:
    """How many of the window's event listeners belong to a Vega chart (their script is Vega's bundle)."""
    win = cdp.send("Runtime.evaluate", {"expression": "window"})["result"]["objectId"]
    count = 0
    for listener in cdp.send("DOMDebugger.getEventListeners", {"objectId": win})["listeners"]:
        sid = listener["scriptId"]
        if sid not in sources:
            sources[sid] = "vega-embed" in cdp.send("Debugger.getScriptSource", {"scriptId": sid})["scriptSource"]
        count += sources[sid]
    return count


def test_charts_redrawn_by_a_language_switch_leave_nothing_on_the_window(page, bare_studio: str) -> None:
    """Each language switch redraws every chart twice at once; a chart of fixed height listened to the window's
    resizes, and the first redraw's listener (with its whole chart) was never removed: ~100 listeners, 400 DOM nodes
    and 1.3 MiB per switch, for as long as the page stayed open."""
    page.goto(bare_studio)
    page.locator("#app-ready").wait_for(state="attached", timeout=120_000)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Debugger.enable")
    page.locator("#tab-compare-button").click()
    axis_title = page.locator("#cmp-counts .role-axis-title text")
    axis_title.last.wait_for(timeout=30_000)  # the battle-count chart is drawn
    sources: dict[str, bool] = {}
    for label, send in (("한국어", "보내기"), ("English", "Send"), ("한국어", "보내기"), ("English", "Send")):
        before = axis_title.all_text_contents()
        page.locator(f"#language-switch label:has-text('{label}')").click()
        page.locator("#send-btn", has_text=send).wait_for(state="attached", timeout=30_000)
        page.wait_for_function("([sel, old]) => { const t = [...document.querySelectorAll(sel)].map(e => e.textContent);"
                               " return t.length && JSON.stringify(t) !== JSON.stringify(old); }",
                               arg=["#cmp-counts .role-axis-title text", before], timeout=30_000)  # redrawn, relabelled
        page.wait_for_timeout(1_500)
    assert vega_window_listeners(cdp, sources) == 0
    assert page.locator("#cmp-counts .vega-embed svg").count() == 1


def test_settled_loading_statuses_are_not_kept_for_the_next_update(page, bare_studio: str) -> None:
    """Gradio's page writes every loading status it keeps again on each message of a running event (a streamed chat
    update), each through a search of the whole layout, and kept every one it was ever given: the more of the page
    was used, the slower each chat update (120-330 ms of main thread each). The page's script drops the settled ones."""
    joins = record_joins(page)
    page.goto(bare_studio)
    page.locator("#app-ready").wait_for(state="attached", timeout=120_000)
    for tab in ("datasets", "finetune", "compare", "history", "models", "account", "chat"):
        page.locator(f"#tab-{tab}-button").click()
        page.wait_for_timeout(1_500)
    for label, send in (("한국어", "보내기"), ("English", "Send")):
        page.locator(f"#language-switch label:has-text('{label}')").click()
        page.locator("#send-btn", has_text=send).wait_for(state="attached", timeout=30_000)
    page.wait_for_timeout(3_000)
    events = {fn for _, fn in joins}
    assert len(events) >= 10, events  # many events ran, each reporting on its own components
    kept = page.evaluate("() => typeof window.studioLoadingStatuses === 'function' ? window.studioLoadingStatuses() : null")
    assert kept is not None, "the page script did not reach Gradio's loading statuses"
    assert kept <= 4, f"{kept} loading statuses kept after {len(events)} events"
