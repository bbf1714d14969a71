"""Hostile archives and hostile rows, on real SQLite files and real zips (issue 12).

An archive is built with the real export, then tampered with: paths inside its rows (absolute, `..`, the wrong
folder), a 1 MB → 1 GiB bomb, 100k entries. Each is refused with one sentence and nothing is written inside or
outside the data folder. Then rows of a good import are edited directly in SQLite to point at a planted outside
file: version Export, Show run (log, events, curves), Resume, cancel, a queued or running row and a model export
never read or write it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engines import accounts
from engines.datasets.versions import diff_versions, export_version, load_version
from engines.evaluation.prompts import PromptSetError, build_prompt_set
from engines.history.archive import ArchiveError, export_archive, import_archive
from engines.history.lineage import run_curves
from engines.models.exports import ExportError, ExportManager
from engines.paths import OutsideDataFolder
from engines.settings import load_settings
from engines.training.jobs import JobManager
from storage import catalog, connect, runs
from storage import datasets as dstore
from storage.models import Conversation, Dataset, DatasetVersion, Message, ModelEntry, TrainingRun

SECRET = "TOP-SECRET-OUTSIDE-7f3a"
ROW = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "split": "eval"}


@pytest.fixture
def outside(tmp_path) -> Path:
    """Files an attacker wants read: a dataset-like file and a run-like folder, outside every data folder."""
    root = tmp_path / "outside"
    (root / "run").mkdir(parents=True)
    (root / "secret.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": SECRET},
                                                               {"role": "assistant", "content": SECRET}]}) + "\n")
    (root / "run" / "train.log").write_text(f"{SECRET}\n")
    (root / "run" / "events.jsonl").write_text(
        json.dumps({"t": 1, "type": "log", "level": "info", "message": SECRET}) + "\n"
        + json.dumps({"t": 2, "type": "metric", "step": 1, "loss": 0.5, "secret": SECRET}) + "\n")
    (root / "run" / "spec.json").write_text(json.dumps({"secret": SECRET}))
    (root / "adapter").mkdir()
    (root / "adapter" / "adapter_config.json").write_text(json.dumps({"secret": SECRET}))
    return root


@pytest.fixture
def archive(db, tmp_path) -> Path:
    """A small real studio (a chat, a dataset version, an interrupted run with its adapter), exported for real."""
    settings = load_settings(data_dir=tmp_path / "source")
    admin = accounts.bootstrap(None)
    conv = Conversation.create(owner_id=admin.id, title="Capitals")
    Message.create(conversation=conv, role="user", content="Capital of Korea?")
    data = (json.dumps(ROW) + "\n").encode()
    vfile = settings.datasets_path / "versions" / "helpers" / "v1-0123456789.jsonl"
    vfile.parent.mkdir(parents=True)
    vfile.write_bytes(data)
    ds = dstore.create_dataset("helpers", source_format="studio", owner_id=admin.id)
    version = dstore.add_version(ds, path=str(vfile), content_hash=hashlib.sha256(data).hexdigest(), row_count=1)
    run_dir = settings.runs_path / "tuned-a"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    (run_dir / "train.log").write_text("step 1\n")
    (run_dir / "events.jsonl").write_text(json.dumps({"t": 1, "type": "metric", "step": 1, "loss": 1.0}) + "\n")
    (run_dir / "spec.json").write_text("{}")
    run = runs.create_run(name="tuned-a", base_model="SmolLM2-135M-Instruct", dataset=str(vfile), method="lora",
                          spec={"lora_r": 8}, run_dir=str(run_dir), dataset_version_id=version.id, owner_id=admin.id)
    runs.finish_run(run.id, "interrupted", adapter_path=str(run_dir / "adapter"))
    catalog.upsert_model("tuned-a", "adapter", path=str(run_dir / "adapter"), parent="SmolLM2-135M-Instruct", run_id=run.id)
    return export_archive(settings, tmp_path / "good.zip", actor=admin)


@pytest.fixture
def target(tmp_path):
    """An empty studio to import into (its own SQLite file and data folder), and its first admin."""
    settings = load_settings(data_dir=tmp_path / "studio")
    database = connect(f"sqlite:///{tmp_path / 'target.db'}")
    admin = accounts.bootstrap(None)
    yield settings, admin
    database.close()


def tamper(src: Path, dst: Path, table: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Path:
    """A copy of the archive whose rows of `table` went through `change` (everything else byte for byte)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == f"tables/{table}.jsonl":
                data = "".join(json.dumps(change(json.loads(line))) + "\n" for line in data.decode().splitlines()).encode()
            zout.writestr(info.filename, data)
    return dst


def disk(tmp_path: Path) -> dict[str, int]:
    """Every file and folder under the test's folder with its size, except the archives and the SQLite files
    (the database is checked through its rows)."""
    out = {}
    for p in tmp_path.rglob("*"):
        if p.suffix == ".zip" or ".db" in p.name:
            continue
        out[str(p.relative_to(tmp_path))] = p.stat().st_size if p.is_file() else -1
    return out


def nothing_imported() -> None:
    assert runs.list_runs() == [] and DatasetVersion.select().count() == 0 and ModelEntry.select().count() == 0
    assert Conversation.select().count() == 0 and Dataset.select().count() == 0


# ---- paths inside rows ---------------------------------------------------------------------------------------

HOSTILE = [
    ("dataset_versions", "path", "{outside}/secret.jsonl"),
    ("dataset_versions", "path", "${{DATA_DIR}}/../outside/secret.jsonl"),
    ("dataset_versions", "path", "${{DATA_DIR}}/datasets/../../outside/secret.jsonl"),
    ("dataset_versions", "path", "${{DATA_DIR}}/runs/tuned-a/train.log"),  # inside, but not where versions live
    ("dataset_versions", "path", "../../outside/secret.jsonl"),
    ("training_runs", "run_dir", "{outside}/run"),
    ("training_runs", "run_dir", "${{DATA_DIR}}/runs/../../outside/run"),
    ("training_runs", "adapter_path", "{outside}/adapter"),
    ("training_runs", "dataset", "{outside}/secret.jsonl"),
    ("models", "path", "{outside}/adapter"),
    ("models", "path", "${{MODEL_CACHE_DIR}}/../../outside/adapter"),
]


@pytest.mark.parametrize(("table", "column", "value"), HOSTILE)
def test_a_row_path_outside_refuses_the_archive_writing_nothing(archive, target, outside, tmp_path, table, column, value):
    settings, admin = target
    hostile = tamper(archive, tmp_path / "hostile.zip", table,
                     lambda row: {**row, column: value.format(outside=outside)})
    before = disk(tmp_path)
    with pytest.raises(ArchiveError, match=rf"Row \d+ of {table} has a {column} .*nothing was imported\.$"):
        import_archive(settings, hostile, actor=admin)
    nothing_imported()
    assert disk(tmp_path) == before  # no file or folder appeared, inside or outside the data folder


def test_a_good_archive_is_rerooted_and_owned_by_the_importing_admin(archive, target, tmp_path):
    settings, admin = target
    claimed = tamper(archive, tmp_path / "claimed.zip", "training_runs", lambda row: {**row, "owner_id": 999})
    counts = import_archive(settings, claimed, actor=admin)
    assert counts["training_runs"] == 1 and counts["dataset_versions"] == 1
    run = runs.run_by_name("tuned-a")
    root = settings.data_dir.resolve()
    assert Path(run.run_dir) == root / "runs" / "tuned-a" and Path(run.adapter_path) == root / "runs" / "tuned-a" / "adapter"
    assert Path(DatasetVersion.get().path).is_relative_to(settings.datasets_path)
    assert Path(catalog.get_model("tuned-a").path) == root / "runs" / "tuned-a" / "adapter"
    assert (root / "runs" / "tuned-a" / "train.log").read_text() == "step 1\n"
    # The archive's user ids mean nothing here: every owned row is the importing admin's.
    assert {run.owner_id, Dataset.get().owner_id, Conversation.get().owner_id} == {admin.id}
    assert [r.messages for r in load_version(settings, DatasetVersion.get())] == [ROW["messages"]]


def test_only_an_admin_moves_archives(archive, target, tmp_path):
    settings, _ = target
    member = accounts.add_user("bob", "correct-horse-9", role="member")
    before = disk(tmp_path)
    with pytest.raises(accounts.PermissionDenied, match="Only an admin can import or export archives"):
        import_archive(settings, archive, actor=member)
    with pytest.raises(accounts.PermissionDenied, match="Only an admin"):
        export_archive(settings, tmp_path / "mine.zip", actor=member)
    nothing_imported()
    assert disk(tmp_path) == before and not (tmp_path / "mine.zip").exists()


# ---- size limits -------------------------------------------------------------------------------------------------

def with_extra(src: Path, dst: Path, add: Callable[[zipfile.ZipFile], None], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """The real archive plus hostile entries (its manifest and tables stay valid, so only the limits can refuse it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        add(zout)
    return dst


def test_a_zip_bomb_is_refused_quickly_and_writes_nothing(archive, target, tmp_path):
    settings, admin = target

    def bomb(zf: zipfile.ZipFile) -> None:
        zero = bytes(1 << 24)
        with zf.open("files/datasets/bomb.jsonl", "w", force_zip64=True) as fh:
            for _ in range(64):  # 1 GiB of zeros
                fh.write(zero)

    path = with_extra(archive, tmp_path / "bomb.zip", bomb)
    assert path.stat().st_size < 2 * 2**20  # about 1 MB on disk
    before, free = disk(tmp_path), shutil.disk_usage(tmp_path).free
    started = time.monotonic()
    with pytest.raises(ArchiveError, match=r"expands [\d,]+ times, more than the limit of 200 \(ARCHIVE_MAX_RATIO\); "
                                           r"nothing was imported\.$"):
        import_archive(settings, path, actor=admin)
    assert time.monotonic() - started < 5
    nothing_imported()
    assert disk(tmp_path) == before
    assert free - shutil.disk_usage(tmp_path).free < 256 * 2**20  # not the 1 GiB the old import wrote


def test_the_total_size_limit_names_its_setting(archive, tmp_path, outside):
    settings = load_settings(data_dir=tmp_path / "studio", archive_max_bytes=2**20)
    database = connect(f"sqlite:///{tmp_path / 'target.db'}")
    try:
        admin = accounts.bootstrap(None)
        path = with_extra(archive, tmp_path / "big.zip", lambda zf: zf.writestr("files/datasets/noise.bin", os.urandom(2 * 2**20)))
        before = disk(tmp_path)
        with pytest.raises(ArchiveError, match=r"would unpack to 2\.0 MiB, more than the limit of 1\.0 MiB "
                                               r"\(ARCHIVE_MAX_BYTES\); nothing was imported\.$"):
            import_archive(settings, path, actor=admin)
        nothing_imported()
        assert disk(tmp_path) == before
    finally:
        database.close()


def test_a_hundred_thousand_entries_are_refused_writing_nothing(archive, target, tmp_path):
    settings, admin = target

    def many(zf: zipfile.ZipFile) -> None:
        for i in range(100_000):
            zf.writestr(f"files/datasets/many/{i}.txt", "x")

    path = with_extra(archive, tmp_path / "many.zip", many, compression=zipfile.ZIP_STORED)
    before = disk(tmp_path)
    started = time.monotonic()
    with pytest.raises(ArchiveError, match=r"has 100,0\d\d entries, more than the limit of 10,000 \(ARCHIVE_MAX_ENTRIES\); "
                                           r"nothing was imported\.$"):
        import_archive(settings, path, actor=admin)
    assert time.monotonic() - started < 5
    nothing_imported()
    assert disk(tmp_path) == before


# ---- rows edited in SQLite after a good import ----------------------------------------------------------------------

def test_rows_edited_in_sqlite_never_read_or_write_outside(archive, target, outside, tmp_path):
    settings, admin = target
    import_archive(settings, archive, actor=admin)
    version = DatasetVersion.get()
    good = load_version(settings, version)
    DatasetVersion.update(path=str(outside / "secret.jsonl")).where(DatasetVersion.id == version.id).execute()
    run = runs.run_by_name("tuned-a")
    TrainingRun.update(run_dir=str(outside / "run")).where(TrainingRun.id == run.id).execute()
    ModelEntry.update(path=str(outside / "adapter")).where(ModelEntry.name == "tuned-a").execute()
    version = DatasetVersion.get()
    jobs = JobManager(settings, servers=None, serve_adapters=False)
    before = disk(tmp_path)

    # Dataset version: Export, read, compare, evaluate on it.
    with pytest.raises(OutsideDataFolder, match="not inside the studio's data folders"):
        export_version(settings, version, "openai")
    with pytest.raises(OutsideDataFolder):
        load_version(settings, version)
    with pytest.raises(OutsideDataFolder):
        diff_versions(settings, version, version)
    with pytest.raises(PromptSetError, match="not inside"):
        build_prompt_set(settings, "dataset", version_id=version.id, split="all")
    assert good and not (settings.exports_path / "datasets").exists()

    # Show run: the log tail, the event log lines and the curves say so instead of showing the planted file.
    tail_text = jobs.log_tail(run.id)
    assert SECRET not in tail_text and "not inside the studio's data folders" in tail_text
    history = jobs.history(run.id)
    assert SECRET not in json.dumps(history.logs + history.metrics) and history.metrics == []
    with pytest.raises(OutsideDataFolder):
        jobs.events(run.id)
    frame, source = run_curves(settings, runs.get_run(run.id))
    assert frame.empty and source == ""

    # Resume: refused before queueing; no job.json, no log line, no worker in the outside folder.
    with pytest.raises(ValueError, match="not inside the studio's data folders.*cannot be resumed"):
        jobs.resume(run.id, actor=admin)
    assert runs.get_run(run.id).status == "interrupted"

    # A row set to queued or running by hand: the loop fails it without touching the folder.
    TrainingRun.update(status="queued").where(TrainingRun.id == run.id).execute()
    jobs.tick()
    after = runs.get_run(run.id)
    assert after.status == "failed" and "not inside" in after.error and after.pid is None
    TrainingRun.update(status="running", pid=os.getpid()).where(TrainingRun.id == run.id).execute()
    with pytest.raises(ValueError, match="cannot be cancelled"):
        jobs.cancel(run.id, actor=admin)
    jobs.tick()
    after = runs.get_run(run.id)
    assert after.status == "failed" and SECRET not in (after.metrics or "")

    # The adapter a model row points to is neither exported nor served.
    with pytest.raises(ExportError, match="not inside the studio's data folders"):
        ExportManager(settings).submit("merge", "tuned-a", actor=admin)
    assert not (settings.exports_path / "jobs").exists()

    assert disk(tmp_path) == before  # nothing written anywhere: no job.json, no log line, no export
    assert (outside / "run" / "train.log").read_text() == f"{SECRET}\n"
    assert sorted(p.name for p in (outside / "run").iterdir()) == ["events.jsonl", "spec.json", "train.log"]
