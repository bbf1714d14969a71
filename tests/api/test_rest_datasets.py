"""/api/v1/datasets over plain HTTP on a launched studio: import (all or nothing), page, edit, save, diff, export and
download, ownership, a chat of one's own as a row, stats and problems; nothing outside the data folder is touched."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest

pytestmark = pytest.mark.api


def chat_rows(n: int, prefix: str = "q") -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"{prefix} {i}: what is {i} + {i}?"},
                          {"role": "assistant", "content": f"{i} + {i} is {2 * i}."}], "category": "math" if i % 2 else "sums"}
            for i in range(n)]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def import_file(c, name: str, data: bytes, filename: str = "rows.jsonl", **form):
    return c.post("/datasets/import", files={"file": (filename, data)}, data={"name": name, **form})


def all_names(c) -> set[str]:
    names, cursor = set(), None
    while True:
        page = c.get("/datasets", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        names |= {d["name"] for d in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return names


def test_import_page_edit_save_diff_export_and_download(api_studio, tmp_path) -> None:
    name = unique("arith")
    path = tmp_path / "arith.jsonl"
    path.write_bytes(jsonl(chat_rows(6)))
    with api_studio.client() as c:
        # A file with one broken row is refused as a whole: the problem names its line and no dataset appears.
        bad = jsonl(chat_rows(3)) + b'{"messages": [{"role": "user", "content": "no answer"}]}\n'
        refused = import_file(c, name, bad)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "import_refused"
        assert any(p["row"] == 4 and p["severity"] == "error" for p in refused.json()["error"]["problems"])
        assert name not in all_names(c)

        r = import_file(c, name, path.read_bytes(), filename=path.name)
        assert r.status_code == 201, r.text
        body = r.json()
        ds, v1 = body["dataset"], body["version"]
        assert body["format"] == "openai" and body["rows"] == 6 and ds["owner"] == "ana" and v1["version"] == 1
        assert str(api_studio.data_dir) not in r.text  # no server path in an answer

        # Pages by cursor: every row once, in id order.
        seen, cursor, pages = [], None, 0
        while True:
            page = c.get(f"/datasets/{ds['id']}/rows", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
            seen += page["items"]
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert pages == 2 and [r["messages"] for r in seen] == [r["messages"] for r in chat_rows(6)]
        assert [r["id"] for r in seen] == sorted({r["id"] for r in seen})
        filtered = c.get(f"/datasets/{ds['id']}/rows", params={"category": "math"}).json()["items"]
        assert len(filtered) == 3 and {r["category"] for r in filtered} == {"math"}

        # Edit one row, add one, delete one; an invalid edit is refused and changes nothing.
        target = seen[2]
        edited = [{"role": "user", "content": target["messages"][0]["content"]}, {"role": "assistant", "content": "Four, exactly."}]
        r = c.put(f"/datasets/{ds['id']}/rows/{target['id']}", json={"messages": edited, "category": "edited"})
        assert r.status_code == 200 and r.json()["messages"][1]["content"] == "Four, exactly." and r.json()["category"] == "edited"
        r = c.put(f"/datasets/{ds['id']}/rows/{target['id']}", json={"messages": [{"role": "user", "content": "only a question"}]})
        assert r.status_code == 400 and "assistant" in r.json()["error"]["message"]
        assert c.get(f"/datasets/{ds['id']}/rows/{target['id']}").json()["messages"] == edited
        added = c.post(f"/datasets/{ds['id']}/rows", json={"messages": [{"role": "user", "content": "new question"},
                                                                         {"role": "assistant", "content": "new answer"}]})
        assert added.status_code == 201
        assert c.delete(f"/datasets/{ds['id']}/rows/{seen[5]['id']}").json() == {"deleted": 1}
        assert c.get(f"/datasets/{ds['id']}/rows/{seen[5]['id']}").status_code == 404
        assert c.get(f"/datasets/{ds['id']}").json()["rows"] == 6

        v2 = c.post(f"/datasets/{ds['id']}/versions", json={"note": "edited"})
        assert v2.status_code == 201, v2.text
        v2 = v2.json()
        assert v2["version"] == 2 and v2["rows"] == 6 and v2["parent_id"] == v1["id"]
        again = c.post(f"/datasets/{ds['id']}/versions", json={})
        assert again.status_code == 400 and "Nothing changed" in again.json()["error"]["message"]
        listed = c.get(f"/datasets/{ds['id']}/versions").json()["items"]
        assert [v["version"] for v in listed] == [2, 1]

        d = c.get(f"/datasets/{ds['id']}/diff", params={"old": v1["id"], "new": v2["id"]}).json()
        assert (d["added"], d["removed"], d["changed"]) == (1, 1, 1)
        assert d["changed_rows"][0]["new"]["messages"] == edited
        assert d["added_rows"][0]["messages"][0]["content"] == "new question"
        assert d["removed_rows"][0]["messages"] == chat_rows(6)[5]["messages"]

        vrows = c.get(f"/datasets/{ds['id']}/versions/{v2['id']}/rows", params={"limit": 4}).json()
        rest = c.get(f"/datasets/{ds['id']}/versions/{v2['id']}/rows", params={"cursor": vrows["next_cursor"]}).json()
        assert [r["line"] for r in vrows["items"] + rest["items"]] == [1, 2, 3, 4, 5, 6] and rest["next_cursor"] is None

        # Export by URL; the download is the version's rows (another person of the team may read it too).
        for fmt in ("openai", "sharegpt", "parquet"):
            out = c.post(f"/datasets/{ds['id']}/versions/{v2['id']}/export", json={"format": fmt})
            assert out.status_code == 200, out.text
            assert str(api_studio.data_dir) not in out.text and out.json()["url"].startswith(api_studio.url.rstrip("/") + "/api/v1/")
            with api_studio.client(api_studio.admin_key) as boss:
                got = boss.get(out.json()["url"])
            assert got.status_code == 200 and out.json()["filename"] in got.headers["content-disposition"]
            if fmt == "openai":
                lines = [json.loads(x) for x in got.text.splitlines()]
                assert [x["messages"] for x in lines] == [r["messages"] for r in vrows["items"] + rest["items"]]
            elif fmt == "sharegpt":
                assert json.loads(got.text.splitlines()[0])["conversations"][0]["from"] == "human"
            else:
                assert got.content[:4] == b"PAR1"
        with api_studio.client("") as anonymous:
            assert anonymous.get(out.json()["url"]).status_code == 401


def test_csv_with_a_column_mapping_and_upload_names_that_try_to_escape(api_studio) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["question", "answer", "topic"])
    w.writerows([["What is LoRA?", "A low-rank adapter.", "ft"], ["What is vLLM?", "A serving engine.", "serving"]])
    data = buf.getvalue().encode()
    with api_studio.client() as c:
        seen = c.post("/datasets/inspect", files={"file": ("qa.csv", data)})
        assert seen.status_code == 200, seen.text
        assert seen.json()["format"] is None and set(seen.json()["fields"]) == {"question", "answer", "topic"}
        guess = seen.json()["suggested_mapping"]
        assert guess["user"] == "question" and guess["assistant"] == "answer" and guess["category"] == "topic"
        half = import_file(c, unique("qa"), data, "qa.csv", map_user="question")
        assert half.status_code == 400 and "assistant" in half.json()["error"]["message"]

        name = unique("qa")
        escape = "../../../../../../tmp/" + name + ".csv"  # the sender's file name never becomes a path
        r = import_file(c, name, data, escape, map_user="question", map_assistant="answer", map_category="topic")
        assert r.status_code == 201, r.text
        ds = r.json()["dataset"]
        rows = c.get(f"/datasets/{ds['id']}/rows").json()["items"]
        assert [x["messages"][0]["content"] for x in rows] == ["What is LoRA?", "What is vLLM?"]
        assert {x["category"] for x in rows} == {"ft", "serving"}
        from pathlib import Path

        assert not Path(f"/tmp/{name}.csv").exists()
        assert not list((api_studio.data_dir / "datasets" / "incoming").glob("*/*"))  # staged files are removed

        wrong = c.post("/datasets/import", files={"file": ("notes.txt", b"hello")}, data={"name": unique("txt")})
        assert wrong.status_code == 400 and ".jsonl" in wrong.json()["error"]["message"]
        taken = import_file(c, name, data, "qa.csv", map_user="question", map_assistant="answer")
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "name_taken"


def test_a_member_reads_but_cannot_change_an_admins_dataset(api_studio) -> None:
    name = unique("boss-set")
    with api_studio.client(api_studio.admin_key) as boss:
        r = import_file(boss, name, jsonl(chat_rows(3, "b")))
        assert r.status_code == 201
        ds, v1 = r.json()["dataset"], r.json()["version"]
    with api_studio.client() as ana:
        mine = {d["name"]: d for d in ana.get("/datasets", params={"limit": 500}).json()["items"]}
        assert mine[name]["owner"] == "boss"
        row = ana.get(f"/datasets/{ds['id']}/rows").json()["items"][0]
        msgs = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        for resp in (ana.put(f"/datasets/{ds['id']}/rows/{row['id']}", json={"messages": msgs}),
                     ana.post(f"/datasets/{ds['id']}/rows", json={"messages": msgs}),
                     ana.delete(f"/datasets/{ds['id']}/rows/{row['id']}"),
                     ana.post(f"/datasets/{ds['id']}/versions", json={})):
            assert resp.status_code == 403, resp.text
            assert resp.json()["error"]["code"] == "forbidden"
        assert ana.get(f"/datasets/{ds['id']}/rows/{row['id']}").json()["messages"] == row["messages"]
        assert ana.get(f"/datasets/{ds['id']}/versions/{v1['id']}").json()["rows"] == 3  # reading is the team's
        assert ana.get("/datasets/999999").status_code == 404
        assert ana.get(f"/datasets/{ds['id']}/versions/999999").status_code == 404
        assert ana.get("/datasets", params={"cursor": "not-a-cursor"}).status_code == 400


def test_duplicates_are_left_out_and_a_file_appends_as_the_next_version(api_studio) -> None:
    name = unique("grows")
    with api_studio.client() as c:
        rows = chat_rows(3)
        r = import_file(c, name, jsonl([*rows, rows[0]]))  # one exact repeat: a warning, left out, not a refusal
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["rows"] == 3 and body["dropped"] == [4] and body["skipped"] == []
        assert {(p["row"], p["kind"], p["severity"]) for p in body["problems"]} == {(4, "duplicate", "warning")}
        kept = import_file(c, unique("kept"), jsonl([*rows, rows[0]]), drop_duplicates="false")
        assert kept.status_code == 201 and kept.json()["rows"] == 4 and kept.json()["dropped"] == []

        ds_id, v1 = body["dataset"]["id"], body["version"]
        more = jsonl([rows[1], *chat_rows(2, prefix="new")])
        r = c.post(f"/datasets/{ds_id}/append", files={"file": ("more.jsonl", more)})
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["version"]["version"] == 2 and out["version"]["parent_id"] == v1["id"] and out["rows"] == 5
        assert out["dropped"] == [1] and str(api_studio.data_dir) not in r.text
        again = c.post(f"/datasets/{ds_id}/append", files={"file": ("more.jsonl", more)})
        assert again.status_code == 400 and "already in" in again.json()["error"]["message"]
        assert c.get(f"/datasets/{ds_id}").json()["rows"] == 5
        assert c.post("/datasets/999999/append", files={"file": ("more.jsonl", more)}).status_code == 404
    with api_studio.client(api_studio.admin_key) as boss:
        theirs = import_file(boss, unique("boss-only"), jsonl(chat_rows(1)))
        assert theirs.status_code == 201
    with api_studio.client() as c:  # a member may not add to an admin's dataset
        r = c.post(f"/datasets/{theirs.json()['dataset']['id']}/append", files={"file": ("more.jsonl", more)})
        assert r.status_code == 403, r.text


def test_stats_and_problems_of_the_working_copy(api_studio) -> None:
    with api_studio.client() as c:
        ds = c.post("/datasets", json={"name": unique("probe")})
        assert ds.status_code == 201
        ds_id = ds.json()["id"]
        for row in chat_rows(3):
            assert c.post(f"/datasets/{ds_id}/rows", json=row).status_code == 201
        dup = c.post(f"/datasets/{ds_id}/rows", json=chat_rows(1)[0])  # an exact duplicate: allowed in, flagged
        trailing = c.post(f"/datasets/{ds_id}/rows", json={"messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "and?"}]})
        assert dup.status_code == 201 and trailing.status_code == 201
        p = c.get(f"/datasets/{ds_id}/problems").json()
        kinds = {(x["row"], x["kind"], x["severity"]) for x in p["problems"]}
        assert (dup.json()["id"], "duplicate", "warning") in kinds
        assert (trailing.json()["id"], "trailing_user", "warning") in kinds
        assert p["rows"] == 5 and p["errors"] == 0 and p["warnings"] >= 2
        saved = c.post(f"/datasets/{ds_id}/versions", json={})  # warnings flag rows, they do not block a version
        assert saved.status_code == 201 and saved.json()["rows"] == 5

        s = c.get(f"/datasets/{ds_id}/stats", params={"template_model": api_studio.model}).json()
        assert s["rows"] == 5 and s["turns"] == {"2": 4, "3": 1}
        assert s["tokens_by_role"]["user"]["messages"] == 6 and s["tokens_by_role"]["assistant"]["messages"] == 5
        assert s["tokens"] == sum(r["tokens"] for r in s["tokens_by_role"].values()) > 0
        assert {x["category"]: x["rows"] for x in s["categories"]}["sums"] == 3


def test_a_chat_of_ones_own_becomes_a_row_and_another_persons_is_refused(api_studio) -> None:
    """The chat is stored the way the Chat tab stores one (the REST conversations routes are another area)."""
    from engines import accounts, conversations
    from storage import chats, connect

    db = connect(f"sqlite:///{api_studio.data_dir / 'studio.db'}")
    try:
        ana = accounts.actor_for("ana")
        cid = conversations.store_user_turn(ana, None, "What does a LoRA adapter change?", model=api_studio.model,
                                            system_prompt="Be brief.")
        chats.add_message(cid, "assistant", "Only small low-rank matrices beside the frozen weights.", finish_reason="stop")
    finally:
        db.close()
    with api_studio.client() as c:
        ds_id = c.post("/datasets", json={"name": unique("from-chat")}).json()["id"]
        r = c.post(f"/datasets/{ds_id}/conversations", json={"conversation_id": cid})
        assert r.status_code == 201, r.text
        assert r.json()["category"] == "from-chat"
        assert [m["role"] for m in r.json()["messages"]] == ["system", "user", "assistant"]
        assert r.json()["messages"][2]["content"].startswith("Only small")
    with api_studio.client(api_studio.admin_key) as boss:
        own = boss.post("/datasets", json={"name": unique("boss-chat")}).json()["id"]
        denied = boss.post(f"/datasets/{own}/conversations", json={"conversation_id": cid})  # private, even from admins
        assert denied.status_code == 403, denied.text
        assert boss.get(f"/datasets/{own}").json()["rows"] == 0
