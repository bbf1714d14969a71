"""The README's API table, driven with the real `gradio_client` against `python launch.py` (the session's studio on
the CPU vLLM server): ids made after a client connected are accepted, streamed chats keep their conversation, files
come back downloadable, and no documented endpoint needs state hidden in a browser session."""

from __future__ import annotations

import csv
import json
import time
import uuid
import zipfile
from pathlib import Path

import pytest

MODEL = "SmolLM2-135M-Instruct"


def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


@pytest.fixture(scope="module")
def client(studio_url):
    return _client(studio_url)


def _send(client, text: str, conversation_id: str = "", max_tokens: int = 24, *, with_list: bool = False):
    """The README's loop: iterate the streamed updates; the last one holds the answer and the conversation id."""
    job = client.submit(text, conversation_id, MODEL, "", 0.0, 1.0, max_tokens, 1, "en", api_name="/send")
    for chatbot, conversation_id, _box, listed in job:  # noqa: B007  # as the README writes it
        pass
    return (chatbot, conversation_id, listed) if with_list else (chatbot, conversation_id)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_two_turns_through_send_stay_in_one_conversation(client):
    chatbot, cid = _send(client, "Name a colour.")
    assert isinstance(cid, str) and cid.isdigit(), cid  # not an update dict
    assert isinstance(chatbot, list) and [m["role"] for m in chatbot] == ["user", "assistant"]
    chatbot, cid2, listed = _send(client, "Name another one.", cid, with_list=True)
    assert cid2 == cid
    # The conversation list comes with the last update (not the first, where it held up the first tokens), picked.
    assert listed["value"] == cid and cid in [value for _label, value in listed["choices"]], listed
    assert [m["role"] for m in chatbot] == ["user", "assistant", "user", "assistant"]
    shown, opened_id, *_ = client.predict(cid, "en", api_name="/open_chat")
    assert opened_id == cid and len(shown["value"] if isinstance(shown, dict) else shown) == 4


def test_a_dataset_made_after_the_client_connected_is_opened_and_exported(client, studio_url):
    _, cid = _send(client, "What is 2 plus 2?")
    # Another client (another person's script, the browser) makes the dataset after this client connected.
    name = _unique("late")
    made = _client(studio_url).predict(name, "en", api_name="/create_dataset")
    ds_id = str(made["id"])
    assert made["name"] == name

    row_id = client.predict(cid, ds_id, "en", api_name="/add_chat_to_dataset")
    assert isinstance(row_id, int)
    opened = client.predict(ds_id, "en", api_name="/open_dataset")
    assert opened["name"] == name and opened["page"]["total"] == 1
    assert opened["page"]["rows"][0]["messages"][0] == {"role": "user", "content": "What is 2 plus 2?"}
    page = client.predict(ds_id, 1, "2 plus", "", "", "en", api_name="/page_rows")
    assert page["total"] == 1 and page["rows"][0]["id"] == row_id

    rows = client.predict(api_name="/list_datasets")
    assert isinstance(rows, list) and rows, rows
    assert {"id": made["id"], "name": name, "rows": 1} == {k: v for k, v in next(r for r in rows if r["name"] == name).items()
                                                           if k in ("id", "name", "rows")}

    # A version saved by the other client, then exported by this one: a file on this machine, not a server path.
    _client(studio_url).predict(ds_id, "first", "en", api_name="/save_version")
    versions = client.predict(ds_id, "en", api_name="/open_dataset")["versions"]
    assert [v["version"] for v in versions] == [1]
    exported = client.predict(str(versions[0]["id"]), "openai", "en", api_name="/export_version")
    path = Path(exported)
    assert path.is_file() and path.suffix == ".jsonl"
    assert "gradio" in str(path).lower()  # downloaded by the client into its own folder
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][0]["content"] == "What is 2 plus 2?"
    parquet = Path(client.predict(str(versions[0]["id"]), "parquet", "en", api_name="/export_version"))
    assert parquet.is_file() and parquet.read_bytes()[:4] == b"PAR1"

    # Ids that do not exist are refused by the engines, with a message.
    from gradio_client.exceptions import AppError

    for args, endpoint in (((str(made["id"] + 10_000), "en"), "/open_dataset"),
                           ((str(versions[0]["id"] + 10_000), "openai", "en"), "/export_version"),
                           ((cid, str(made["id"] + 10_000), "en"), "/add_chat_to_dataset")):
        with pytest.raises(AppError):
            client.predict(*args, api_name=endpoint)


def test_list_datasets_returns_rows(client):
    name = _unique("listed")
    client.predict(name, "en", api_name="/create_dataset")
    rows = client.predict(api_name="/list_datasets")
    assert isinstance(rows, list) and any(r["name"] == name and r["rows"] == 0 for r in rows), rows


def test_lineage_and_compare_runs_take_a_real_model_and_runs(client):
    lin = client.predict(MODEL, "en", api_name="/lineage")
    assert MODEL in lin["markdown"] and isinstance(lin["curves"], list)

    datasets = client.predict(api_name="/training_datasets")
    assert datasets and all(set(d) == {"label", "dataset"} for d in datasets)
    spec = {"base_model": MODEL, "dataset": datasets[0]["dataset"], "output_name": _unique("api-run"), "max_steps": 1,
            "batch_size": 1, "max_seq_len": 128, "lora_r": 8}
    checked = client.predict(spec, "en", api_name="/validate_spec")
    assert checked["ok"] and checked["errors"] == {} and "max_steps: 1" in checked["yaml"], checked
    bad = client.predict({**spec, "lora_r": 0}, "en", api_name="/validate_spec")
    assert not bad["ok"] and "lora_r" in bad["errors"]

    first = client.predict(spec, "en", api_name="/start_training")
    second = client.predict({**spec, "output_name": _unique("api-run"), "lora_r": 4}, "en", api_name="/start_training")
    try:
        listed = {r["id"]: r for r in client.predict(api_name="/list_training_runs")}
        assert first["run_id"] in listed and listed[first["run_id"]]["name"] == spec["output_name"]
        both = client.predict([first["run_id"], second["run_id"]], api_name="/compare_runs")
        diff = {d["parameter"]: d for d in both["differences"]}
        assert "lora_r" in diff and diff["lora_r"][spec["output_name"]] == "8", both["differences"]
        run_lin = client.predict(spec["output_name"], "en", api_name="/lineage")
        assert f"#{first['run_id']}" in run_lin["markdown"]
    finally:
        for rid in (first["run_id"], second["run_id"]):
            client.predict(str(rid), "en", api_name="/cancel_training")


def test_history_endpoints_with_their_documented_inputs(client):
    _, cid = _send(client, "History test question about zebras.")
    found = client.predict("zebras", ["chat"], "", "0", "en", api_name="/history")
    assert f"chat:{cid}" in [i["key"] for i in found["items"]]
    text = client.predict(f"chat:{cid}", "en", api_name="/history_item")
    assert "zebras" in text.lower()

    # More than a page of dataset versions, then the next page through the cursor.
    ds_id = str(client.predict(_unique("paged"), "en", api_name="/create_dataset")["id"])
    for i in range(52):
        turns = {"headers": ["role", "content"], "data": [["user", f"Question {i}?"], ["assistant", f"Answer {i}."]]}
        status, new_row = client.predict(ds_id, turns, "", MODEL, "en", api_name="/add_row")
        assert new_row, status
        client.predict(ds_id, f"v{i}", "en", api_name="/save_version")
    page1 = client.predict("", ["dataset"], "", "0", "en", api_name="/history")
    assert page1["count"] == 50 and page1["next_cursor"], page1["next_cursor"]
    page2 = client.predict(page1["next_cursor"], ["dataset"], "", "0", "en", api_name="/history_more")
    assert page2["count"] >= 2
    assert not {i["key"] for i in page1["items"]} & {i["key"] for i in page2["items"]}

    message = client.predict(f"chat:{cid}", "en", api_name="/history_delete")
    assert message
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError):
        client.predict(f"chat:{cid}", "en", api_name="/history_item")
    assert f"chat:{cid}" not in [i["key"] for i in client.predict("zebras", ["chat"], "", "0", "en", api_name="/history")["items"]]


def test_archive_and_evaluation_csv_are_files_the_client_downloads(client):
    archive = Path(client.predict("en", api_name="/export_archive"))
    assert archive.is_file() and zipfile.is_zipfile(archive)

    eid = client.predict([MODEL], "", "pasted", "", "all", "", "What is 3 plus 3?", _unique("api-eval"), 0.0, 16, 1, 1, "en",
                         api_name="/batch_eval")
    assert str(eid).isdigit()
    deadline = time.monotonic() + 120
    while "completed" not in client.predict(f"eval:{eid}", "en", api_name="/history_item") and time.monotonic() < deadline:
        time.sleep(1)
    table = Path(client.predict(str(eid), "en", api_name="/batch_eval_csv"))
    assert table.is_file() and table.suffix == ".csv"
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert rows and any("3 plus 3" in json.dumps(r) for r in rows)


# ---- the rest of the README's table: each endpoint called as documented ------------------------------------------


def _value(update):
    """A component's value from an output that may be an update dict."""
    return update.get("value") if isinstance(update, dict) and "__type__" in update else update


def test_chat_endpoints(client):
    assert MODEL in client.predict(api_name="/list_models")
    _, cid = _send(client, "What is the capital of France?")
    chatbot = client.predict(cid, MODEL, "", 0.0, 1.0, 16, 1, "en", api_name="/regenerate")
    assert [m["role"] for m in chatbot] == ["user", "assistant"]
    assert client.predict(cid, "en", api_name="/edit_last_text") == "What is the capital of France?"
    *_, (chatbot, box) = list(client.submit("What is the capital of Spain?", cid, MODEL, "", 0.0, 1.0, 16, 1, "en",
                                            api_name="/edit_last"))
    assert "Spain" in json.dumps(chatbot[0]) and box == ""
    assert client.predict(cid, 1, 1, api_name="/feedback") == "ok"
    assert [cid] == [v for _, v in client.predict("capital of Spain", api_name="/search_chats")["choices"] if v == cid]
    renamed = client.predict(cid, "Spanish capital", "en", api_name="/rename_chat")
    assert ["Spanish capital", cid] in [list(c) for c in renamed["choices"]]
    files = [Path(p) for p in client.predict(cid, "en", api_name="/export_chat")]
    assert sorted(p.suffix for p in files) == [".json", ".md"] and all(p.is_file() for p in files)
    assert json.loads(next(p for p in files if p.suffix == ".json").read_text(encoding="utf-8"))
    badge, models = client.predict("en", api_name="/refresh_models")
    assert MODEL in badge and MODEL in json.dumps(models)
    assert client.predict(api_name="/new_chat")[1] == ""
    assert client.predict("ko", api_name="/set_language")[0] == "ko"
    client.predict(cid, "en", api_name="/delete_chat")
    assert client.predict(cid, "en", api_name="/open_chat")[1] == ""  # gone: nothing opened


def test_dataset_editing_endpoints(client, tmp_path):
    from gradio_client import handle_file

    source = tmp_path / "qa.csv"
    source.write_text("question,answer,topic\nWhat is 1+1?,It is 2.,math\nWhat is 2+2?,It is 4.,math\n"
                      "Capital of Italy?,Rome.,geo\nCapital of Peru?,Lima.,geo\n", encoding="utf-8")
    detected, _, user_col, answer_col, *_ = client.predict(handle_file(str(source)), MODEL, "en", api_name="/inspect_file")
    assert "question" in json.dumps(user_col)  # the mapping picker is offered the file's columns
    name = _unique("imported")
    picked, message, *_ = client.predict(handle_file(str(source)), name, False, "question", "answer", None, "topic", MODEL, "en",
                                         api_name="/import_dataset")
    assert "4" in message and "✓" in message, message
    ds_id = str(_value(picked))
    rows = client.predict(ds_id, "en", api_name="/open_dataset")["page"]["rows"]
    assert {r["category"] for r in rows} == {"math", "geo"}

    first = rows[0]["id"]
    frame, category, preview = client.predict(first, MODEL, "en", api_name="/open_row")
    assert category == "math" and frame["data"][0] == ["user", "What is 1+1?"] and "ds-preview" in preview
    frame["data"][1][1] = "Two."
    client.predict(ds_id, first, frame, "math", MODEL, "en", api_name="/save_row")
    assert client.predict(ds_id, 1, "Two.", "", "", "en", api_name="/page_rows")["total"] == 1
    assert client.predict(ds_id, "en", api_name="/dedupe")
    assert client.predict(ds_id, "en", api_name="/dedupe_near")
    assert "eval" in client.predict(ds_id, 0.5, 1, "en", api_name="/split").lower()
    total = client.predict(ds_id, 1, "", "", "", "en", api_name="/page_rows")["total"]
    client.predict(ds_id, "", "geo", "", "en", api_name="/bulk_delete")  # a category that did not exist at connect time
    assert client.predict(ds_id, 1, "", "geo", "", "en", api_name="/page_rows")["total"] == 0
    client.predict(ds_id, "en", api_name="/undo")
    assert client.predict(ds_id, 1, "", "", "", "en", api_name="/page_rows")["total"] == total
    _, gone = client.predict(ds_id, first, "en", api_name="/delete_row")
    assert gone is None and client.predict(ds_id, 1, "", "", "", "en", api_name="/page_rows")["total"] == total - 1
    stats = client.predict(ds_id, MODEL, "en", api_name="/dataset_stats")
    assert str(total - 1) in stats[0]

    _, cid = _send(client, "Tell me a fact about owls.")
    client.predict(cid, 1, 1, api_name="/feedback")
    assert "1" in client.predict(ds_id, "en", api_name="/add_thumbs_up")
    generated = client.predict(ds_id, MODEL, "owls", "", "", 1, 1, 32, "en", api_name="/generate_examples")
    assert generated
    client.predict(ds_id, "one", "en", api_name="/save_version")
    client.predict(ds_id, "", "geo", "", "en", api_name="/bulk_delete")
    client.predict(ds_id, "two", "en", api_name="/save_version")
    new, old = (v["id"] for v in client.predict(ds_id, "en", api_name="/open_dataset")["versions"][:2])
    diff = client.predict(str(new), str(old), "en", api_name="/diff_versions")  # v1 came with the import
    assert "v2 → v3" in diff and "**2** removed" in diff, diff


def test_finetune_endpoints(client, tmp_path):
    from gradio_client import handle_file

    preset = client.predict("quick", api_name="/apply_preset")
    assert len(preset) == 19 and preset[0] in ("lora", "qlora")
    upload = tmp_path / "mine.jsonl"
    upload.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Hi {i}"},
                                                       {"role": "assistant", "content": f"Hello {i}"}]}) + "\n" for i in range(4)))
    picked, message = client.predict(handle_file(str(upload)), "en", None, api_name="/upload_dataset")
    dataset = _value(picked)
    assert dataset in [d["dataset"] for d in client.predict(api_name="/training_datasets")], message
    started = client.predict({"base_model": MODEL, "dataset": dataset, "output_name": _unique("ft-api"), "max_steps": 1,
                              "batch_size": 1, "max_seq_len": 128}, "en", api_name="/start_training")
    rid = str(started["run_id"])
    try:
        assert started["name"] in client.predict(rid, "en", api_name="/show_run")[0]
        assert client.predict(rid, "en", api_name="/open_mlflow")
    finally:
        client.predict(rid, "en", api_name="/cancel_training")
    deadline = time.monotonic() + 60
    while next(r for r in client.predict(api_name="/list_training_runs") if str(r["id"]) == rid)["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(1)
    client.predict(rid, "en", api_name="/resume_training")
    assert next(r for r in client.predict(api_name="/list_training_runs") if str(r["id"]) == rid)["status"] in ("queued", "running")
    client.predict(rid, "en", api_name="/cancel_training")


def test_compare_side_by_side_then_vote_in_one_client_session(client):
    *_, panes = list(client.submit("Say one word.", "side", 2, "", "", 0.0, 16, "en", MODEL, MODEL, None, None, [], [], [], [],
                                   api_name="/compare"))
    for pane in panes[:2]:
        assert [m["role"] for m in _value(pane)] == ["user", "assistant"]
    voted = client.predict("en", 0, "", False, api_name="/vote_tie")
    board = voted[5]
    assert MODEL in json.dumps(board)
    table, *_ = client.predict("en", 0, "", False, api_name="/leaderboard")
    assert MODEL in json.dumps(table)


def test_models_endpoints(client):
    table, _ = client.predict("en", api_name="/models_table")
    assert MODEL in json.dumps(table)
    assert any(m["name"] == MODEL for m in client.predict(api_name="/list_registered_models"))
    assert any(s["name"] == MODEL for s in client.predict(api_name="/list_servers"))
    assert client.predict(MODEL, api_name="/server_log")
    errors, message, *_ = client.predict("en", MODEL, "", None, None, None, api_name="/start_server")
    assert "already" in message
    assert client.predict("en", "no-such-server", api_name="/stop_server") == "Pick a server first."
    assert client.predict("en", "no-such-server", api_name="/restart_server") == "Pick a server first."

    job = client.predict("studio-test/slow", "", "en", api_name="/download_model")
    assert client.predict(job, "en", api_name="/cancel_download")
    assert next(j for j in client.predict(api_name="/list_downloads") if j["id"] == job)["status"] in ("cancelled", "error")

    from gradio_client.exceptions import AppError

    with pytest.raises(AppError):  # refused by the export manager (not an adapter), not by a stale picker
        client.predict("no-such-model", "merge", "", True, "en", api_name="/export_model")
    with pytest.raises(AppError, match="No export is running"):
        client.predict("en", api_name="/cancel_export")


def test_archive_import_refused_into_a_studio_with_rows_and_evaluation_stop_resume(client):
    from gradio_client import handle_file

    archive = client.predict("en", api_name="/export_archive")
    assert "empty studio" in client.predict(handle_file(archive), "en", api_name="/import_archive")

    eid = client.predict([MODEL], "", "pasted", "", "all", "", "One?\nTwo?\nThree?", _unique("stop-eval"), 0.0, 64, 1, 3, "en",
                         api_name="/batch_eval")
    client.predict(eid, "en", api_name="/batch_eval_stop")
    deadline = time.monotonic() + 60
    while "running" in client.predict(f"eval:{eid}", "en", api_name="/history_item") and time.monotonic() < deadline:
        time.sleep(0.5)
    client.predict(eid, "en", api_name="/batch_eval_resume")
    deadline = time.monotonic() + 120
    while "completed" not in client.predict(f"eval:{eid}", "en", api_name="/history_item") and time.monotonic() < deadline:
        time.sleep(1)
    assert "completed" in client.predict(f"eval:{eid}", "en", api_name="/history_item")


def test_account_endpoints_as_an_admin(tmp_path):
    """A studio with accounts (no model server): the team endpoints, as the README shows them, logged in as the admin."""
    from gradio_client import Client

    from tests.conftest import start_studio, stop_studio

    proc, url, _ = start_studio(tmp_path, {"AUTH": "boss:boss-pass-Q7x9v"}, "--no-serve")
    try:
        c = Client(url, auth=("boss", "boss-pass-Q7x9v"), verbose=False)
        users, message, _ = c.predict("dora", "dora-pass-Lm42k", "member", "en", api_name="/add_user")
        assert "dora" in json.dumps(users) and "dora" in message
        assert "dora" in c.predict("dora", "dora-pass-Zz81q", "member", "en", api_name="/set_user_password")[1]
        users, *_ = c.predict("dora", "", "admin", "en", api_name="/set_user_role")
        assert ["dora", "admin"] == [cell for row in users["data"] if "dora" in row for cell in row if cell in ("dora", "admin")]
        assert "dora" in c.predict("dora", "", "member", "en", api_name="/disable_user")[1]
        assert "dora" in c.predict("dora", "", "member", "en", api_name="/enable_user")[1]
        key, usage, keys = c.predict("script", "en", api_name="/create_api_key")
        assert "/v1" in str(usage)  # how to use it: the OpenAI-compatible base URL
        assert len(_value(key)) > 20 and "script" in json.dumps(keys)
        key_id = keys["data"][0][0]
        revoked = c.predict(key_id, "en", api_name="/revoke_api_key")
        assert "revoked" in json.dumps(revoked).lower() or revoked["data"][0] != keys["data"][0]
    finally:
        stop_studio(proc)


def test_preference_pairs_and_judge_agreement_endpoints(client, settings):
    """/build_preferences and /save_preferences (the Datasets tab's preference panel), /judge_agreement and
    /judge_battles (Compare → Judge agreement), on two voted battles between models named for this test."""
    from engines import accounts
    from engines.evaluation.compare import record_vote, save_battle_answers, start_battle
    from storage import battles, connect

    tag = uuid.uuid4().hex[:8]
    models, judge = f"api-a-{tag}, api-b-{tag}", f"api-judge-{tag}"
    db = connect(settings.db_url)
    try:
        owner = accounts.bootstrap(None)
        for prompt, vote, verdict in ((f"One? {tag}", "a", "a"), (f"Two? {tag}", "b", "a")):
            bid = start_battle(owner, prompt, f"api-a-{tag}", f"api-b-{tag}", blind=True)
            save_battle_answers(owner, bid, f"first answer {tag}", f"second answer {tag}")
            record_vote(owner, bid, vote)
            battles.save_judgement(bid, judge, verdict)
    finally:
        db.close()

    filters = (["battle"], "", "", models, "", "", True, 0, 0)  # sources, from, to, models, category, voters, dedupe, eval share, seed
    summary, table, _ = client.predict("en", *filters, api_name="/build_preferences")
    assert "data-rows='2'" in summary and len(table["data"]) == 2, (summary, table)
    name = _unique("api-prefs")
    *_, saved = client.predict("en", name, "", *filters, api_name="/save_preferences")
    assert f"Saved “{name}” v1 with 2 pairs" in saved
    assert any(name in d["label"] for d in client.predict(api_name="/training_datasets"))

    voted, agreement_table, disagreements = client.predict("en", 0, "", api_name="/judge_agreement")
    row = next(r for r in agreement_table["data"] if r[0] == judge)
    assert row[1] == 2 and row[2] == "50%", row
    assert any(f"Two? {tag}" in str(cell) for r in disagreements["data"] for cell in r)
    progress, *_ = client.predict(MODEL, 1, 8, "en", 0, "", api_name="/judge_battles")
    assert "data-status='completed'" in progress and "data-done='1'" in progress, progress
