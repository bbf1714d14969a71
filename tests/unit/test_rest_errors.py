"""The REST API's one error shape: engine exceptions mapped in one place, forged or out-of-range history cursors
refused with 400 (never a 500), and request paths with control characters answered by the API, not the UI."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient

from api.rest.errors import install_error_handlers
from api.rest.pages import MAX_ID, encode_cursor
from engines.accounts import PermissionDenied
from engines.conversations import ConversationNotFound
from engines.datasets.formats import Problem
from engines.datasets.versions import ImportRefused, ImportReport, NameTaken
from engines.history.timeline import MAX_SEARCH
from engines.training.spec import SpecError


def _raising_app() -> TestClient:
    """A bare app with the REST error handlers and one route per engine exception."""
    app = FastAPI()
    install_error_handlers(app)
    report = ImportReport(format="openai", rows=[], problems=[Problem(4, "empty", "Row 4 has no user turn."),
                                                             Problem(5, "long", "Row 5 is long.", "warning")])
    raised = {
        "spec": SpecError({"lora_r": "must be at most 512", "output_name": "is taken"}),
        "refused": ImportRefused(report),
        "taken": NameTaken("support"),
        "denied": PermissionDenied("Admins only."),
        "missing": ConversationNotFound("There is no conversation 9 of yours."),
        "value": ValueError("Give at least one prompt."),
        "bug": RuntimeError("a bug"),
    }

    @app.get("/raise/{name}")
    def raise_it(name: str) -> None:
        raise raised[name]

    return TestClient(app, raise_server_exceptions=False)


def test_each_engine_exception_has_its_status_and_the_one_shape() -> None:
    c = _raising_app()
    expected = {"spec": (422, "invalid_spec"), "refused": (422, "import_refused"), "taken": (409, "name_taken"),
                "denied": (403, "forbidden"), "missing": (404, "not_found"), "value": (400, "bad_request")}
    for name, (status, code) in expected.items():
        r = c.get(f"/raise/{name}")
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (name, r.text)
        assert r.json()["error"]["message"]
    assert c.get("/raise/spec").json()["error"]["fields"] == {"lora_r": "must be at most 512", "output_name": "is taken"}
    problems = c.get("/raise/refused").json()["error"]["problems"]
    assert problems == [{"row": 4, "kind": "empty", "message": "Row 4 has no user turn.", "severity": "error"},
                        {"row": 5, "kind": "long", "message": "Row 5 is long.", "severity": "warning"}]
    assert "support" in c.get("/raise/taken").json()["error"]["message"]
    assert c.get("/raise/bug").status_code == 500  # a bug is not dressed up as the client's error


@pytest.fixture
def rest(db, owner, settings):
    """The REST app on a fresh database, mounted the way the studio mounts it, behind a UI catch-all route."""
    import api
    from engines import accounts
    from engines.services import Services
    from engines.serving import ServerManager

    _, key = accounts.create_api_key(owner)
    root = FastAPI(middleware=[api.api_middleware(Services(settings=settings, servers=ServerManager(settings)))])

    @root.get("/{anything:path}")  # after the mounts, like the UI's own routes: a request that misses them lands here
    def ui(anything: str) -> PlainTextResponse:
        return PlainTextResponse("the UI", status_code=418)

    with TestClient(root, headers={"Authorization": f"Bearer {key}"}, raise_server_exceptions=False) as c:
        yield c


def test_forged_negative_or_out_of_range_history_cursors_are_400(rest) -> None:
    ok = rest.get("/api/v1/history", params={"q": "hello"})
    assert ok.status_code == 200, ok.text
    forged = [
        {"q": "hello", "cursor": encode_cursor("search", -1)},
        {"q": "hello", "cursor": encode_cursor("search", MAX_SEARCH)},  # past the last hit a search can reach
        {"q": "hello", "cursor": encode_cursor("search", MAX_ID)},
        {"q": "hello", "cursor": encode_cursor("search", MAX_ID + 1)},
        {"q": "hello", "cursor": encode_cursor("search", 1.5)},
        {"q": "hello", "cursor": encode_cursor("2026-01-01T00:00:00", "chat", 3)},  # a timeline cursor for a search
        {"cursor": encode_cursor("search", 5)},  # a search cursor for the timeline
        {"cursor": encode_cursor("2026-01-01T00:00:00", "chat", -1)},
        {"cursor": encode_cursor("not a time", "chat", 3)},
        {"cursor": encode_cursor("2026-01-01T00:00:00+05:00", "chat", 3)},
        {"cursor": encode_cursor("2026-01-01T00:00:00", "no-such-kind", 3)},
        {"cursor": "%%%"}, {"cursor": "\x00"},
    ]
    for params in forged:
        r = rest.get("/api/v1/history", params=params)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor", (params, r.text)
    for params in ({"limit": 0}, {"limit": -5}, {"limit": 10**30}, {"since_days": -1}, {"cursor": "x" * 501}):
        r = rest.get("/api/v1/history", params=params)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", (params, r.text)


def test_paths_with_control_characters_reach_the_api_not_the_ui(rest) -> None:
    for path in ("/api/v1/his%0Atory", "/api/v1/%0D%0A", "/api/v1/history/items/chat%0A/1", "/api/v1/conversations%0D"):
        r = rest.get(path)
        assert r.status_code in (404, 422) and "error" in r.json(), (path, r.status_code, r.text)
    for path in ("/v1/mo%0Adels", "/v1/chat%0A/completions"):
        r = rest.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)  # OpenAI's shape
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert rest.get("/api/v1/history").status_code == 200 and rest.get("/elsewhere%0A").status_code == 418
