"""The whole loop over plain HTTP, as a script would drive it: chat (the /v1 gateway) → dataset (REST, with that chat
as a row) → fine-tune (a few steps) → evaluation → history search → lineage → archive export, on a launched studio
with accounts and the real CPU vLLM server."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile

import httpx
import pytest

pytestmark = [pytest.mark.api, pytest.mark.training]


def wait_for(get, done, *, timeout: float = 900, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(every)


def test_chat_dataset_finetune_evaluation_history_lineage_archive(api_studio) -> None:
    token = f"heron{uuid.uuid4().hex[:6]}"
    gateway = httpx.Client(base_url=api_studio.url.rstrip("/") + "/v1", timeout=120,
                           headers={"Authorization": f"Bearer {api_studio.member_key}"})
    with gateway, api_studio.client() as ana, api_studio.client(api_studio.admin_key) as boss:
        # 1. Chat through the OpenAI-compatible gateway: stored as ana's conversation.
        chat = gateway.post("/chat/completions", json={
            "model": api_studio.model, "max_tokens": 16, "temperature": 0,
            "messages": [{"role": "user", "content": f"What is a {token}?"}]})
        assert chat.status_code == 200, chat.text
        cid = chat.json()["conversation_id"]
        assert ana.get(f"/conversations/{cid}").json()["messages"][0]["content"] == f"What is a {token}?"

        # 2. A dataset: a few imported rows plus that chat, saved as a version.
        rows = [{"messages": [{"role": "user", "content": f"Name {i}?"}, {"role": "assistant", "content": f"It is {i}."}]}
                for i in range(6)]
        imported = ana.post("/datasets/import", data={"name": f"loop-{token}"},
                            files={"file": ("loop.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())})
        assert imported.status_code == 201, imported.text
        ds = imported.json()
        ds_id = ds["dataset"]["id"] if "dataset" in ds else ds["id"]
        added = ana.post(f"/datasets/{ds_id}/conversations", json={"conversation_id": cid})
        assert added.status_code == 201, added.text
        version = ana.post(f"/datasets/{ds_id}/versions", json={"note": "with a chat"})
        assert version.status_code == 201, version.text
        vid = version.json()["id"]
        page = ana.get(f"/datasets/{ds_id}/versions/{vid}/rows", params={"limit": 50}).json()
        assert any(token in json.dumps(r) for r in page["items"])  # the chat is a row of the version

        # 3. Fine-tune a few steps on that version; follow it to the end.
        adapter = f"loop-{token}"
        run = ana.post("/finetunes", json={
            "base_model": api_studio.model, "output_name": adapter, "dataset": str(ds_id), "dataset_version_id": vid,
            "max_steps": 2, "batch_size": 2, "max_seq_len": 256, "lora_r": 8, "lora_alpha": 16, "learning_rate": 1e-3,
            "lr_scheduler": "constant", "warmup_ratio": 0.0, "save_steps": 1000})
        assert run.status_code == 201, run.text
        rid = run.json()["id"]
        done = wait_for(lambda: ana.get(f"/finetunes/{rid}").json(),
                        lambda r: r["status"] in ("completed", "failed", "cancelled", "interrupted"))
        assert done["status"] == "completed", ana.get(f"/finetunes/{rid}/log").json()
        assert done["dataset_version_id"] == vid and done["step"] == 2

        # 4. An evaluation of the base model on two prompts.
        ev = ana.post("/evaluations", json={"name": f"loop-{token}", "models": [api_studio.model], "max_tokens": 16,
                                            "prompts": [{"prompt": "Say yes."}, {"prompt": "Say no."}]})
        assert ev.status_code == 201, ev.text
        eid = ev.json()["id"]
        finished = wait_for(lambda: ana.get(f"/evaluations/{eid}").json(),
                            lambda e: e["status"] in ("completed", "failed", "cancelled"), timeout=600)
        assert finished["status"] == "completed", finished
        results = ana.get(f"/evaluations/{eid}/results").json()
        assert len(results["items"]) == 2 and all(r["output"] for r in results["items"])

        # 5. History: the chat is found by its word; the run is on the timeline.
        found = ana.get("/history", params={"q": token}).json()
        assert any(item["kind"] == "chat" and item["id"] == cid for item in found["items"]), found
        timeline = ana.get("/history", params={"kinds": "run"}).json()
        assert any(item["id"] == rid for item in timeline["items"])

        # 6. Lineage of the adapter: run ← dataset version ← the chat it came from.
        lineage = ana.get("/history/lineage", params={"model": adapter}).json()
        assert lineage["run"]["id"] == rid and lineage["dataset_version"]["id"] == vid
        assert cid in [c["id"] for c in lineage["source_chats"]]

        # 7. An archive of the studio (admins only), downloaded by URL, holding that conversation.
        assert ana.post("/history/archives").status_code == 403
        archive = boss.post("/history/archives")
        assert archive.status_code == 201, archive.text
        blob = httpx.get(api_studio.url.rstrip("/") + archive.json()["url"], timeout=120,
                         headers={"Authorization": f"Bearer {api_studio.admin_key}"})
        assert blob.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(blob.content)).namelist()
        assert names and token in "".join(zipfile.ZipFile(io.BytesIO(blob.content)).read(n).decode("utf-8", "replace")
                                          for n in names if n.endswith((".json", ".jsonl")))
