"""History on a real SQLite file: one timeline, FTS5 search, lineage, run comparison, delete, archive round trip."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import pytest

from engines.datasets import draft, from_chats
from engines.datasets.versions import create_empty, save_draft
from engines.history import items
from engines.history.archive import ArchiveError, export_archive, import_archive
from engines.history.lineage import compare_runs, lineage
from engines.settings import load_settings
from storage import battles, catalog, chats, connect, evals, runs
from storage.history import Filters, fts_query, search, timeline
from storage.models import Message


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data")


def chat(title: str, user: str, answer: str, model: str = "base-m") -> int:
    conv = chats.create_conversation(title=title, model=model)
    chats.add_message(conv.id, "user", user)
    chats.add_message(conv.id, "assistant", answer, model=model)
    return conv.id


def make_run(settings, name: str, version_id: int | None = None, **spec) -> int:
    run_dir = settings.runs_path / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "events.jsonl").write_text("".join(json.dumps({"type": "metric", "step": s, "loss": 2.0 / s}) + "\n"
                                                  for s in (1, 2, 3)))
    (run_dir / "adapter").mkdir(exist_ok=True)
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    run = runs.create_run(name=name, base_model="base-m", dataset="assets/datasets/studio-helper-en.jsonl", method="lora",
                          spec={"lora_r": 8, "learning_rate": 2e-4, **spec}, run_dir=str(run_dir), dataset_version_id=version_id)
    runs.finish_run(run.id, "completed", adapter_path=str(run_dir / "adapter"))
    catalog.upsert_model(name, "adapter", path=str(run_dir / "adapter"), parent="base-m", run_id=run.id)
    return run.id


@pytest.fixture
def studio(db, settings):
    """A little of everything, linked: chats → dataset version → run → adapter → evaluation and battle."""
    c1 = chat("Capitals", "한국의 수도는 어디인가요?", "서울입니다. 수도는 서울이에요.")
    c2 = chat("Baking", "How do I bake sourdough bread?", "Feed the starter, then bake hot.")
    from engines import accounts

    owner = accounts.bootstrap(None)  # the first admin: owns the chats above, so one of them can become a dataset row
    ds = create_empty("helpers", actor=owner)
    from_chats.add_conversation(ds, c1, actor=owner)
    draft.add_row(ds, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], actor=owner)
    version = save_draft(settings, ds, actor=owner)
    rid = make_run(settings, "tuned-a", version.id)
    make_run(settings, "tuned-b", None, lora_r=16)
    e = evals.create_eval(name="check", models=["base-m", "tuned-a"], judge=None, source="pasted", params={},
                          examples=[{"messages": [{"role": "user", "content": "q"}], "reference": "r"}])
    evals.save_result(e.id, 0, "tuned-a", output="answer", attempts=1)
    b = battles.create_battle("Which is better?", "tuned-a", "base-m", blind=True)
    battles.record_vote(b.id, "a")
    return {"chats": (c1, c2), "version": version, "run": rid, "eval": e.id, "battle": b.id}


def test_timeline_merges_every_kind_newest_first_with_filters(studio):
    got = timeline()
    assert {i.kind for i in got} == {"chat", "run", "dataset", "battle", "eval"}
    assert [i.at for i in got] == sorted((i.at for i in got), reverse=True)
    assert {i.kind for i in timeline(Filters(kinds=("run",)))} == {"run"}
    only_a = timeline(Filters(model="tuned-a"))
    assert {i.kind for i in only_a} == {"run", "eval", "battle"} and all("tuned-b" not in i.title for i in only_a)
    future = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    assert timeline(Filters(since=future)) == []


def test_keyset_pages_have_no_gaps_or_repeats(db):
    for i in range(23):
        chat(f"chat {i}", f"question {i}", f"answer {i}")
    seen, cursor = [], None
    while True:
        page = timeline(Filters(kinds=("chat",)), before=cursor, limit=5)
        seen += [i.key for i in page]
        if len(page) < 5:
            break
        cursor = (page[-1].at, page[-1].kind, page[-1].id)
    assert len(seen) == 23 and len(set(seen)) == 23


def test_full_text_search_finds_korean_words_with_particles(studio):
    c1, c2 = studio["chats"]
    hit = search("수도")  # stored as "수도는": a prefix term matches the word with its particle
    assert [i.id for i in hit if i.kind == "chat"] == [c1] and "«" in hit[0].snippet
    assert [i.id for i in search("sourdough bake") if i.kind == "chat"] == [c2]  # every word must appear
    assert [i for i in search("sourdough 서울") if i.kind == "chat"] == []
    assert {i.kind for i in search("tuned-a")} >= {"run", "eval"}


def test_search_stays_in_step_with_edits_and_deletes(studio):
    c1, c2 = studio["chats"]
    msg = Message.select().where(Message.conversation == c2, Message.role == "assistant").get()
    Message.update(content="Use rye flour instead.").where(Message.id == msg.id).execute()  # a stream finishing, say
    assert [i.id for i in search("rye") if i.kind == "chat"] == [c2]
    assert [i for i in search("starter") if i.kind == "chat"] == []
    chats.delete_conversation(c2)
    assert [i for i in search("rye") if i.kind == "chat"] == []


@pytest.mark.parametrize("text", ['"unbalanced', "NEAR(a b)", "a OR b", "x* AND -y", "col:value", "'); DROP TABLE messages;--"])
def test_search_input_is_never_fts_syntax(studio, text):
    search(text)  # no OperationalError
    assert all(part.startswith('"') and part.endswith('"*') for part in fts_query(text).split())
    assert Message.select().count() > 0


def test_lineage_links_adapter_run_version_chats_evals_and_battles(studio, settings):
    lin = lineage(settings, "tuned-a")
    assert lin.kind == "adapter" and lin.parent == "base-m" and lin.run.id == studio["run"]
    assert lin.version.id == studio["version"].id
    assert [c.id for c in lin.source_chats] == [studio["chats"][0]]  # the chat the dataset row came from
    assert [e.id for e in lin.evaluations] == [studio["eval"]]
    assert (lin.battles, lin.battles_won) == (1, 1)
    assert list(lin.curves.step) == [1, 2, 3] and lin.curves_source == "events"
    base = lineage(settings, "base-m")
    assert {a.name for a in base.adapters} == {"tuned-a", "tuned-b"} and base.battles == 1


def test_run_comparison_overlays_curves_and_lists_only_differing_params(studio, settings):
    a, b = runs.run_by_name("tuned-a").id, runs.run_by_name("tuned-b").id
    curves, params = compare_runs(settings, [a, b])
    assert set(curves.series) == {"tuned-a · train", "tuned-b · train"} and len(curves) == 6
    assert list(params.parameter) == ["lora_r"] and list(params.iloc[0])[1:] == ["8", "16"]


def test_delete_refuses_what_is_in_use_and_removes_files(studio, settings):
    from engines import accounts

    owner = accounts.bootstrap(None)  # the rows above were made without an owner: they become the first admin's
    with pytest.raises(items.DeleteRefused, match="tuned-a"):
        items.delete(settings, "dataset", studio["version"].id, owner)
    run_dir = Path(runs.get_run(studio["run"]).run_dir)
    items.delete(settings, "run", studio["run"], owner)
    assert not run_dir.exists() and catalog.get_model("tuned-a") is None and runs.get_run(studio["run"]) is None
    items.delete(settings, "dataset", studio["version"].id, owner)  # no run uses it any more
    assert not Path(studio["version"].path).exists()
    items.delete(settings, "chat", studio["chats"][0], owner)
    assert items.describe("chat", studio["chats"][0], owner) is None
    assert "Which is better?" in items.describe("battle", studio["battle"], owner)


def _tables(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n.startswith(("tables/", "files/"))}


def test_archive_round_trip_into_an_empty_studio(studio, settings, tmp_path):
    from engines import accounts

    admin = accounts.bootstrap(None)  # rows made without an owner become the first admin's, as an import makes them
    first = export_archive(settings, tmp_path / "a.zip", actor=admin)
    other = load_settings(data_dir=tmp_path / "elsewhere")
    db2 = connect(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        admin = accounts.bootstrap(None)
        counts = import_archive(other, first, actor=admin)
        assert counts["messages"] == 4 and counts["eval_results"] == 1
        second = export_archive(other, tmp_path / "b.zip", actor=admin)
        assert _tables(first) == _tables(second)  # every row and file, paths re-rooted under the new data folder
        assert Path(runs.run_by_name("tuned-a").run_dir).is_relative_to(other.data_dir.resolve())
        assert [i.id for i in search("수도") if i.kind == "chat"] == [studio["chats"][0]]  # FTS filled by the triggers
        with pytest.raises(ArchiveError, match="empty studio"):
            import_archive(other, first, actor=admin)
    finally:
        db2.close()


def test_a_broken_archive_changes_nothing(studio, settings, tmp_path):
    from engines import accounts

    good = export_archive(settings, tmp_path / "a.zip", actor=accounts.bootstrap(None))
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "tables/eval_results.jsonl":
                data = data.replace(b'"model"', b'"no_such_column"')
            dst.writestr(info, data)
    other = load_settings(data_dir=tmp_path / "elsewhere")
    db2 = connect(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        admin = accounts.bootstrap(None)
        with pytest.raises(ArchiveError, match="nothing was imported"):
            import_archive(other, broken, actor=admin)
        assert chats.list_conversations() == [] and runs.list_runs() == []
        assert not [p for p in other.data_dir.rglob("*") if p.is_file()]  # no file left behind
        unsafe = tmp_path / "unsafe.zip"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(unsafe, "w") as dst:
            for info in src.infolist():
                dst.writestr(info, src.read(info))
            dst.writestr("files/../../escape.txt", "x")
        with pytest.raises(ArchiveError, match="Unsafe path"):
            import_archive(other, unsafe, actor=admin)
        assert not (tmp_path / "escape.txt").exists()
        with pytest.raises(ArchiveError, match="Not a Chat Studio archive"):
            import_archive(other, Path(__file__), actor=admin)
    finally:
        db2.close()


def test_only_queued_or_running_items_are_in_progress(studio):
    assert not items.in_progress("run", studio["run"])  # completed
    runs.update_run(studio["run"], status="running")
    assert items.in_progress("run", studio["run"])
    assert not items.in_progress("run", 999_999) and not items.in_progress("chat", studio["chats"][0])
    evals.finish_eval(studio["eval"], "completed")
    assert not items.in_progress("eval", studio["eval"])
    evals.update_eval(studio["eval"], status="queued")
    assert items.in_progress("eval", studio["eval"])
