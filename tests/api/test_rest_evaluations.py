"""/api/v1/evaluations over plain HTTP on a launched studio: two prompts against the served model, answered by the real
CPU vLLM server, scored against references, read back page by page and as a CSV download; who may stop/resume."""

from __future__ import annotations

import csv
import io
import time

import pytest

pytestmark = pytest.mark.api

PROMPTS = [{"prompt": "Say the word 'hello'.", "reference": "hello"},
           {"prompt": "What is 2 + 2? Answer with a number.", "reference": "4"}]


def wait_done(c, eval_id: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = c.get(f"/evaluations/{eval_id}").json()
        if e["status"] not in ("queued", "running"):
            return e
        time.sleep(0.5)
    raise AssertionError(f"evaluation {eval_id} still {e['status']} after {timeout:.0f} s")


def test_a_small_evaluation_runs_and_its_results_come_back(api_studio) -> None:
    with api_studio.client() as c:
        r = c.post("/evaluations", json={"name": "rest smoke", "models": [api_studio.model], "prompts": PROMPTS,
                                         "max_tokens": 16, "concurrency": 2})
        assert r.status_code == 201, r.text
        started = r.json()
        assert started["owner"] == "ana" and started["examples"] == 2 and started["models"] == [api_studio.model]

        done = wait_done(c, started["id"])
        assert done["status"] == "completed", done
        assert done["answered"] == 2 and done["params"]["max_tokens"] == 16
        figures = done["summary"]["models"][api_studio.model]
        assert figures["answered"] == 2 and figures["failed"] == 0 and 0.0 <= figures["rouge_l"] <= 1.0

        first = c.get(f"/evaluations/{started['id']}/results", params={"limit": 1}).json()
        rest = c.get(f"/evaluations/{started['id']}/results", params={"cursor": first["next_cursor"]}).json()
        rows = first["items"] + rest["items"]
        assert rest["next_cursor"] is None and [x["example"] for x in rows] == [0, 1]
        assert [x["question"] for x in rows] == [p["prompt"] for p in PROMPTS]
        assert [x["reference"] for x in rows] == ["hello", "4"]
        assert all(x["output"] and x["error"] is None and x["rouge_l"] is not None for x in rows)
        assert c.get(f"/evaluations/{started['id']}/results", params={"model": "other"}).json()["items"] == []

        out = c.post(f"/evaluations/{started['id']}/export")
        assert out.status_code == 200 and str(api_studio.data_dir) not in out.text
        got = c.get(out.json()["url"])
        assert got.status_code == 200 and out.json()["filename"] in got.headers["content-disposition"]
        table = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
        assert [t["question"] for t in table] == [p["prompt"] for p in PROMPTS]
        assert [t["output"] for t in table] == [x["output"] for x in rows]

        listed = c.get("/evaluations", params={"limit": 50}).json()["items"]
        assert started["id"] in {e["id"] for e in listed} and listed == sorted(listed, key=lambda e: -e["id"])
        again = c.post(f"/evaluations/{started['id']}/resume")
        assert again.status_code == 400 and "resumed" in again.json()["error"]["message"]


def test_bad_requests_and_only_the_owner_or_an_admin_stops_an_evaluation(api_studio) -> None:
    with api_studio.client() as ana, api_studio.client(api_studio.admin_key) as boss:
        missing = ana.post("/evaluations", json={"models": ["no-such-model"], "prompts": PROMPTS})
        assert missing.status_code == 400 and "no-such-model" in missing.json()["error"]["message"]
        empty = ana.post("/evaluations", json={"models": [api_studio.model], "prompts": []})
        assert empty.status_code == 400
        assert ana.post("/evaluations", json={"models": [api_studio.model], "source": "dataset"}).status_code == 400
        assert ana.get("/evaluations/999999").status_code == 404

        r = boss.post("/evaluations", json={"name": "boss eval", "models": [api_studio.model], "prompts": PROMPTS * 3,
                                            "max_tokens": 16, "concurrency": 1})
        assert r.status_code == 201, r.text
        eid = r.json()["id"]
        denied = ana.post(f"/evaluations/{eid}/cancel")
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
        assert ana.post(f"/evaluations/{eid}/resume").status_code == 403
        boss.post(f"/evaluations/{eid}/cancel")  # stops it if it still runs
        ended = wait_done(boss, eid)
        assert ended["status"] in ("cancelled", "completed")
        if ended["status"] == "cancelled":  # its owner resumes it: only what is missing is asked
            assert boss.post(f"/evaluations/{eid}/resume").status_code == 200
            ended = wait_done(boss, eid)
        assert ended["status"] == "completed" and ended["answered"] == 6
