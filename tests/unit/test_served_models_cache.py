"""ServerManager.served_models: a list past its age is answered at once and refreshed in the background (a chat
request makes no HTTP call of its own), while max_age=0 and a list past MODELS_STALE_S are fetched on the spot.

The endpoint is a real HTTP server on loopback, added as an external OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engines.serving import ServerManager
from engines.serving.manager import MODELS_STALE_S


@pytest.fixture
def endpoint():
    """An OpenAI-compatible /v1/models whose list the test changes; `hits` counts its requests."""
    state = {"models": ["first"], "hits": 0}

    class Models(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state["hits"] += 1
            body = json.dumps({"object": "list", "data": [{"id": m} for m in state["models"]]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    server.shutdown()


def _names(records) -> list[str]:
    return [r.name for r in records]


def test_an_old_list_is_answered_at_once_and_refreshed_behind(settings, endpoint) -> None:
    url, state = endpoint
    manager = ServerManager(settings)
    manager.add_external(url)
    assert _names(manager.served_models()) == ["first"] and state["hits"] == 1  # no list yet: fetched now
    assert _names(manager.served_models()) == ["first"] and state["hits"] == 1  # young: from the cache

    state["models"] = ["second"]
    stamp, cached = manager._models_cache
    manager._models_cache = (stamp - 5.0, cached)  # 5 s old: past max_age, well within MODELS_STALE_S
    assert _names(manager.served_models()) == ["first"]  # answered from the old list, not after an HTTP call
    deadline = time.monotonic() + 10
    while "second" not in _names(manager.served_models()):  # (an external model once seen stays registered)
        assert time.monotonic() < deadline, "the background refresh never landed"
        time.sleep(0.05)

    state["models"] = ["third"]
    assert "third" in _names(manager.served_models(max_age=0))  # max_age=0: fetched on the spot
    state["models"] = ["fourth"]
    stamp, cached = manager._models_cache
    manager._models_cache = (stamp - MODELS_STALE_S - 1, cached)  # too old to show even once
    assert "fourth" in _names(manager.served_models())
