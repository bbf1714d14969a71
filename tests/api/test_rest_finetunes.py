"""/api/v1/finetunes over plain HTTP on a launched studio: per-field spec errors, a real 2-step fine-tune of the served
base model on a dataset named by its id, followed through Server-Sent Events to the end, and who may cancel/resume."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

pytestmark = [pytest.mark.api, pytest.mark.training]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def spec(api_studio, output_name: str, **over) -> dict:
    return {"base_model": api_studio.model, "output_name": output_name, "max_steps": 2, "batch_size": 2, "max_seq_len": 256,
            "lora_r": 8, "lora_alpha": 16, "learning_rate": 1e-3, "lr_scheduler": "constant", "warmup_ratio": 0.0,
            "save_steps": 1000, **over}


def small_dataset(c) -> dict:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(6)]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    r = c.post("/datasets/import", files={"file": ("sums.jsonl", data)}, data={"name": unique("sums")})
    assert r.status_code == 201, r.text
    return r.json()


def sse(response: httpx.Response):
    """(event, data) pairs of a text/event-stream response."""
    event, data = None, []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event or "message", json.loads("\n".join(data))
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def test_a_spec_is_checked_field_by_field_and_outside_paths_are_refused_alike(api_studio, tmp_path) -> None:
    with api_studio.client() as c:
        r = c.post("/finetunes/validate", json=spec(api_studio, "bad name!", lora_r=4096, dataset="assets/datasets/studio-helper-en.jsonl"))
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "invalid_spec" and set(err["fields"]) == {"output_name", "lora_r"}

        existing = tmp_path / "real.jsonl"  # exists, but outside the studio's folders
        existing.write_text('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n')
        answers = []
        for outside in (str(existing), str(tmp_path / "missing.jsonl"), "../../../../etc/x.jsonl"):
            r = c.post("/finetunes/validate", json=spec(api_studio, unique("out"), dataset=outside))
            assert r.status_code == 422, r.text
            answers.append(r.json()["error"]["fields"]["dataset"])
        assert len(set(answers)) == 1 and "data folder" in answers[0]  # the same sentence whether or not it exists
        assert str(tmp_path) not in answers[0]

        r = c.post("/finetunes/validate", json=spec(api_studio, unique("nope"), dataset=unique("no-such-dataset")))
        assert r.status_code == 422 and "No dataset" in r.json()["error"]["fields"]["dataset"]
        r = c.post("/finetunes/validate", json=spec(api_studio, unique("m"), dataset="assets/datasets/studio-helper-en.jsonl",
                                                     base_model=str(tmp_path)))
        assert r.status_code == 422 and "base_model" in r.json()["error"]["fields"]

        samples = c.get("/finetunes/datasets").json()
        sample = next(s for s in samples if s["dataset"].endswith("studio-helper-en.jsonl"))
        assert sample["rows"] == 48 and sample["dataset_version_id"] is None
        ok = c.post("/finetunes/validate", json=spec(api_studio, unique("ok"), dataset=sample["dataset"]))
        assert ok.status_code == 200, ok.text
        assert ok.json()["spec"]["max_steps"] == 2 and str(api_studio.data_dir) not in ok.text
        assert c.post("/finetunes/validate", json={**spec(api_studio, "x"), "dataset": "a.jsonl", "surprise": 1}).status_code == 422


def test_a_fine_tune_runs_to_the_end_through_events_and_only_its_owner_or_an_admin_stops_it(api_studio) -> None:
    with api_studio.client() as ana, api_studio.client(api_studio.admin_key) as boss:
        imported = small_dataset(ana)
        ds, version = imported["dataset"], imported["version"]
        listed = {d["id"]: d for d in ana.get("/datasets", params={"limit": 500}).json()["items"]}
        assert listed[ds["id"]]["latest_version_id"] == version["id"]

        name = unique("rest-ft")
        r = ana.post("/finetunes", json=spec(api_studio, name, dataset=ds["id"]))  # named by the list's id
        assert r.status_code == 201, r.text
        run = r.json()
        assert run["owner"] == "ana" and run["status"] in ("queued", "running") and run["name"] == name
        assert run["dataset_version_id"] == version["id"] and run["dataset"] == f"{ds['name']} v1"
        assert str(api_studio.data_dir) not in r.text
        taken = ana.post("/finetunes", json=spec(api_studio, name, dataset=ds["name"]))
        assert taken.status_code == 422 and "output_name" in taken.json()["error"]["fields"]

        # boss's run waits behind ana's (one CPU slot): ana may neither cancel nor resume it; boss may.
        other = boss.post("/finetunes", json=spec(api_studio, unique("boss-ft"), dataset=ds["name"],
                                                  dataset_version_id=version["id"]))
        assert other.status_code == 201, other.text
        oid = other.json()["id"]
        assert ana.post(f"/finetunes/{oid}/cancel").status_code == 403
        assert boss.post(f"/finetunes/{oid}/cancel").json()["status"] in ("cancelled", "cancelling")
        assert ana.post(f"/finetunes/{oid}/resume").status_code == 403
        assert boss.post(f"/finetunes/{oid}/resume").json()["status"] == "queued"
        assert boss.post(f"/finetunes/{oid}/cancel").json()["status"] in ("cancelled", "cancelling")

        # Follow ana's run as Server-Sent Events until the stream says it ended.
        kinds, end = [], None
        with ana.stream("GET", f"/finetunes/{run['id']}/events/stream", timeout=httpx.Timeout(30, read=600)) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            for event, data in sse(resp):
                if event == "end":
                    end = data
                    break
                kinds.append(event)
                assert "adapter" not in data and "traceback" not in data
        assert end is not None and end["status"] == "completed", (end, ana.get(f"/finetunes/{run['id']}/log").json())
        assert kinds[0] == "start" and kinds[-1] == "done" and "progress" in kinds and "metric" in kinds

        done = ana.get(f"/finetunes/{run['id']}").json()
        assert done["status"] == "completed" and done["step"] == done["total_steps"] == 2
        assert isinstance(done["metrics"].get("train_loss"), float) and done["adapter"] == name
        assert done["spec"]["dataset"] == f"{ds['name']} v1" and done["spec"]["lora_r"] == 8

        # The same events as JSON by offset; nothing after the last offset once it ended.
        page = ana.get(f"/finetunes/{run['id']}/events", params={"since": 0}).json()
        assert [e["type"] for e in page["events"]] == kinds and page["finished"]
        tail = ana.get(f"/finetunes/{run['id']}/events", params={"since": page["next_since"]}).json()
        assert tail["events"] == [] and tail["status"] == "completed"
        assert "engines.training.worker" in ana.get(f"/finetunes/{run['id']}/log", params={"lines": 500}).json()["text"]
        again = ana.post(f"/finetunes/{run['id']}/resume")
        assert again.status_code == 400 and "completed" in again.json()["error"]["message"]

        # Boss's run ended as cancelled (or is being cancelled): it never ran to the end.
        deadline = time.monotonic() + 60
        while boss.get(f"/finetunes/{oid}").json()["status"] not in ("cancelled", "interrupted") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert boss.get(f"/finetunes/{oid}").json()["status"] in ("cancelled", "interrupted")

        # The team's runs, newest first, a page at a time.
        first = ana.get("/finetunes", params={"limit": 1}).json()
        assert first["items"][0]["id"] == oid and first["next_cursor"]
        second = ana.get("/finetunes", params={"limit": 1, "cursor": first["next_cursor"]}).json()
        assert second["items"][0]["id"] == run["id"]
        only_done = ana.get("/finetunes", params={"status": "completed"}).json()["items"]
        assert run["id"] in {r["id"] for r in only_done} and oid not in {r["id"] for r in only_done}
        assert ana.get("/finetunes/999999").status_code == 404
