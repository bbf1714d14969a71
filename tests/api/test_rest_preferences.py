"""/api/v1/preferences and the arena's agreement routes over plain HTTP on a launched studio: battles fought and voted
through the API become preference pairs (previewed, then saved as a preference dataset), TRL files go out and back
in, the served model judges a battle and the agreement report follows; DPO/ORPO fields of a fine-tune spec are
checked with one message per bad field, and a DPO run on the saved dataset is queued."""

from __future__ import annotations

import json

import pytest

from tests.api.rest_helpers import battle, word

pytestmark = pytest.mark.api


def spec(api_studio, output_name: str, **over) -> dict:
    return {"base_model": api_studio.model, "output_name": output_name, "max_steps": 1, "batch_size": 2,
            "max_seq_len": 256, "lora_r": 8, "lora_alpha": 16, "save_steps": 1000, **over}


def test_votes_become_a_preference_dataset_that_exports_imports_and_trains_with_dpo(api_studio) -> None:
    tag = word()
    with api_studio.client() as ana, api_studio.client(api_studio.admin_key) as boss:
        # The served model against itself, sampled hot: two different answers (a word-for-word tie never pairs).
        hot = {"temperature": 1.5, "max_tokens": 12, "category": tag}
        won_a = battle(api_studio, api_studio.member_key, f"Say yes {tag}", **hot)
        won_b = battle(api_studio, api_studio.member_key, f"Say no {tag}", **hot)
        tied = battle(api_studio, api_studio.member_key, f"Say maybe {tag}", **hot)
        for b, choice in ((won_a, "a"), (won_b, "b"), (tied, "tie")):
            assert ana.post(f"/arena/battles/{b['id']}/vote", json={"choice": choice}).status_code == 200
        differ = [b for b in (won_a, won_b) if b["answer_a"].strip() and b["answer_a"] != b["answer_b"]]
        assert differ, (won_a, won_b)

        r = ana.post("/preferences/preview", json={"sources": ["battle"], "category": tag})
        assert r.status_code == 200, r.text
        preview = r.json()
        assert preview["rows"] == len(differ) and preview["counts"]["battle"] == len(differ)
        assert preview["skipped"]["tie_or_both_bad"] == 1
        by_prompt = {p["prompt"][-1]["content"]: p for p in preview["pairs"]}
        for b, side in ((won_a, "a"), (won_b, "b")):
            if b in differ:
                assert by_prompt[b["prompt"]]["chosen"] == b[f"answer_{side}"]
        assert boss.post("/preferences/preview", json={"category": tag}).json()["rows"] == 0  # ana's battles are hers

        name = f"prefs-{tag}"
        r = ana.post("/preferences/datasets", json={"name": name, "sources": ["battle"], "category": tag})
        assert r.status_code == 201, r.text
        ds, version = r.json()["dataset"], r.json()["version"]
        assert ds["kind"] == "preference" and version["version"] == 1 and version["rows"] == len(differ)
        listed = {d["dataset_version_id"]: d for d in ana.get("/finetunes/datasets").json()}
        assert listed[version["id"]]["kind"] == "preference"

        r = ana.post(f"/preferences/datasets/{ds['id']}/versions/{version['id']}/export", json={"layout": "strings"})
        assert r.status_code == 200, r.text
        got = ana.get(r.json()["url"])
        assert got.status_code == 200 and str(api_studio.data_dir) not in r.text
        lines = [json.loads(x) for x in got.text.splitlines()]
        assert len(lines) == len(differ) and all(isinstance(x["chosen"], str) for x in lines)
        back = ana.post("/preferences/import", files={"file": ("back.jsonl", got.content)}, data={"name": f"{name}-back"})
        assert back.status_code == 201, back.text
        assert back.json()["layout"] == "preference" and back.json()["rows"] == len(differ)

        # Fine-tune specs: the preference fields are checked one message per field.
        chat_sample = "assets/datasets/studio-helper-en.jsonl"
        cases = [
            ({"objective": "ppo", "dataset": ds["id"]}, "invalid_request", {"objective"}),
            ({"objective": "dpo", "beta": 0, "orpo_lambda": 11, "dataset": ds["id"]}, "invalid_spec", {"beta", "orpo_lambda"}),
            ({"objective": "dpo", "dataset": chat_sample}, "invalid_spec", {"dataset"}),
            ({"objective": "sft", "dataset": ds["id"]}, "invalid_spec", {"dataset"}),
            ({"objective": "sft", "sft_adapter": "some-run", "dataset": chat_sample}, "invalid_spec", {"sft_adapter"}),
            ({"objective": "orpo", "sft_adapter": f"no-such-run-{tag}", "dataset": ds["id"]}, "invalid_spec", {"sft_adapter"}),
            ({"objective": "dpo", "sft_adapter": "bad name!", "dataset": ds["id"]}, "invalid_spec", {"sft_adapter"}),
        ]
        for over, code, fields in cases:
            for route in ("/finetunes/validate", "/finetunes"):
                r = ana.post(route, json=spec(api_studio, f"dpo-{tag}", **over))
                assert r.status_code == 422, (over, r.text)
                err = r.json()["error"]
                assert err["code"] == code and set(err["fields"]) == fields, (over, err)
                assert all(err["fields"].values())
        assert "no completed fine-tune run" in ana.post(
            "/finetunes/validate", json=spec(api_studio, f"dpo-{tag}", objective="orpo", sft_adapter=f"none-{tag}",
                                             dataset=ds["id"])).json()["error"]["fields"]["sft_adapter"]

        ok = ana.post("/finetunes/validate", json=spec(api_studio, f"dpo-{tag}", objective="dpo", beta=0.2, dataset=ds["id"]))
        assert ok.status_code == 200, ok.text
        assert ok.json()["spec"]["objective"] == "dpo" and ok.json()["spec"]["beta"] == 0.2
        r = ana.post("/finetunes", json=spec(api_studio, f"dpo-{tag}", objective="dpo", beta=0.2, dataset=ds["name"]))
        assert r.status_code == 201, r.text
        run = r.json()
        assert run["spec"]["objective"] == "dpo" and run["dataset_version_id"] == version["id"]
        assert ana.post(f"/finetunes/{run['id']}/cancel").json()["status"] in ("cancelled", "cancelling")


def test_the_served_model_judges_a_battle_and_the_agreement_report_counts_it(api_studio) -> None:
    tag = word()
    with api_studio.client() as ana:
        b = battle(api_studio, api_studio.member_key, f"Pick one {tag}", category=tag)
        assert ana.post(f"/arena/battles/{b['id']}/vote", json={"choice": "a"}).status_code == 200
        judge = api_studio.model
        before = ana.get("/arena/agreement", params={"judge": judge}).json()
        pending = before["judges"][0]["unjudged"] if before["judges"] else before["voted"]
        assert pending >= 1

        r = ana.post("/arena/judgements", json={"judge": judge, "limit": 1, "max_tokens": 16})
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["judged"] == 1 and sum(done["verdicts"].values()) == 1 and done["remaining"] <= pending
        assert set(done["verdicts"]) <= {"a", "b", "tie", "error"}

        after = ana.get("/arena/agreement", params={"judge": judge}).json()
        row = after["judges"][0]
        assert row["judge"] == judge and row["n"] + row["errors"] >= 1 and row["unjudged"] == done["remaining"]
        if row["n"]:
            assert 0.0 <= row["agreement"] <= 1.0 and sum(row["confusion"].values()) == row["n"]
        assert ana.get("/arena/agreement", params={"category": tag}).json()["voted"] == 1

        r = ana.post("/arena/judgements", json={"judge": f"nobody-{tag}"})
        assert r.status_code == 400 and "No running server" in r.json()["error"]["message"]
