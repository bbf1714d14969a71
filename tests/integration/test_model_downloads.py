"""Hub downloads as model jobs, through the real huggingface_hub client against a local Hub mirror (HF_ENDPOINT):
progress, cancel and resume, registration in the catalogue, the offline cache, and errors as sentences."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engines.accounts import Actor
from engines.models import ModelError, Registry, resolve_base_model
from engines.models.exports import ExportError, ExportManager
from engines.serving.start import resolve_record
from engines.settings import load_settings
from storage import catalog


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ADMIN = Actor(id=1, name="admin", role="admin")  # downloads are admin-only

@pytest.fixture
def manager(tmp_path, db, hub_mirror) -> ExportManager:
    settings = load_settings(data_dir=tmp_path / "data", model_cache_dir=tmp_path / "models", hf_endpoint=hub_mirror.url)
    return ExportManager(settings)


def test_a_download_is_registered_and_starts_offline_from_the_cache(manager, tiny_model, tmp_path) -> None:
    job = manager.wait(manager.submit_download("studio-test/tiny-llama", actor=ADMIN), timeout=120)
    assert job is not None and job.status == "done", (job, (manager.root / job.id / "export.log").read_text())
    snapshot = Path(job.result)
    assert snapshot.is_relative_to(tmp_path / "models" / "hub")
    expected = {p.name for p in tiny_model.iterdir() if p.suffix in (".json", ".safetensors", ".jinja", ".txt")}
    assert {p.name for p in snapshot.iterdir()} == expected
    for name in expected:  # byte for byte what the mirror served
        assert _sha(snapshot / name) == _sha(tiny_model / name), name
    assert job.detail["bytes_total"] == sum((tiny_model / n).stat().st_size for n in expected)
    assert job.detail["files_done"] == job.detail["files_total"] == len(expected)

    entry = catalog.get_model("studio-test/tiny-llama")
    assert entry is not None and entry.kind == "base" and entry.path == str(snapshot)
    assert (manager.root / job.id / "registered").exists()

    # Start uses the catalogue's folder; and with no network at all, the hub id still resolves from the cache.
    servers = SimpleNamespace(registry=Registry())
    assert resolve_record(manager.settings, servers, "studio-test/tiny-llama", actor=ADMIN).source == str(snapshot)
    offline = load_settings(data_dir=tmp_path / "data", model_cache_dir=tmp_path / "models", offline_mode=True,
                            hf_endpoint="http://127.0.0.1:9")
    assert Path(resolve_base_model(offline, "studio-test/tiny-llama").source) == snapshot


def test_progress_cancel_and_resume(manager, hub_mirror) -> None:
    """Progress shows bytes and files; Cancel stops the process and keeps the finished shard (no torn files);
    downloading again fetches only the missing shard."""
    job_id = manager.submit_download("studio-test/slow", actor=ADMIN)
    snapshots = manager.settings.models_path / "hub" / "models--studio-test--slow" / "snapshots"
    deadline = time.monotonic() + 60
    seen = None
    while time.monotonic() < deadline:  # until the small shard is whole and the big one is on its way
        j = manager.job(job_id)
        assert j.status == "running", j
        if list(snapshots.glob("*/model-00001-of-00002.safetensors")) and 0 < j.detail.get("bytes_done", 0) < j.detail.get("bytes_total", 0):
            seen = dict(j.detail)
            break
        time.sleep(0.2)
    assert seen is not None, "no progress event between 0 and the total"
    assert seen["bytes_total"] == 46 * 1024 * 1024 + len('{"model_type": "llama"}') and seen["files_total"] == 3
    assert seen["rate"] > 0

    assert manager.cancel(job_id, actor=ADMIN) is True
    assert manager.job(job_id).status == "cancelled"
    assert manager.cancel(job_id, actor=ADMIN) is False  # not running any more
    blobs = snapshots.parent / "blobs"
    assert not list(blobs.glob("*.incomplete"))  # the killed process's partial file is gone
    assert catalog.get_model("studio-test/slow") is None

    hub_mirror.requests.clear()
    job = manager.wait(manager.submit_download("studio-test/slow", actor=ADMIN), timeout=120)
    assert job.status == "done", job
    fetched = [r for r in hub_mirror.requests if r.startswith("GET ") and "/resolve/" in r]
    assert any("model-00002-of-00002" in r for r in fetched)
    assert not any("model-00001-of-00002" in r for r in fetched)  # the finished shard is not fetched again
    assert job.detail["bytes_total"] == 40 * 1024 * 1024  # only what was missing
    assert (Path(job.result) / "model-00002-of-00002.safetensors").stat().st_size == 40 * 1024 * 1024
    assert catalog.get_model("studio-test/slow").path == job.result


@pytest.mark.parametrize(("repo", "expected"), [
    ("studio-test/gated", "is gated: accept its licence"),
    ("studio-test/missing", "was not found on the Hub"),
    ("studio-test/empty", "has no model files"),
])
def test_hub_errors_end_as_one_sentence(manager, repo, expected) -> None:
    job = manager.wait(manager.submit_download(repo, actor=ADMIN), timeout=60)
    assert job.status == "error" and expected in job.error and "Error:" not in job.error, job.error
    assert catalog.get_model(repo) is None


def test_an_unreachable_hub_is_named(tmp_path, db) -> None:
    settings = load_settings(data_dir=tmp_path / "d", model_cache_dir=tmp_path / "m", hf_endpoint="http://127.0.0.1:9")
    m = ExportManager(settings)
    job = m.wait(m.submit_download("studio-test/tiny-llama", actor=ADMIN), timeout=60)
    assert job.status == "error" and "could not be reached" in job.error


def test_bad_requests_are_refused_before_anything_starts(manager, tmp_path) -> None:
    for repo, revision in (("not-a-repo", ""), ("../etc/passwd", ""), ("a/b", "../../x"), ("a/b", "main; rm -rf /")):
        with pytest.raises(ExportError):
            manager.submit_download(repo, revision, actor=ADMIN)
    offline = ExportManager(load_settings(data_dir=tmp_path / "o", offline_mode=True))
    with pytest.raises(ExportError, match="offline"):
        offline.submit_download("studio-test/tiny-llama", actor=ADMIN)
    job_id = manager.submit_download("studio-test/slow", actor=ADMIN)
    try:
        with pytest.raises(ExportError, match="already downloading"):
            manager.submit_download("studio-test/slow", actor=ADMIN)
    finally:
        manager.cancel(job_id, actor=ADMIN)
    assert not any(j.status == "running" for j in manager.jobs())


def test_start_with_a_hub_id_downloads_it_as_a_job(manager) -> None:
    """Start given a hub id that is not here yet: the download runs as a job (its progress is in the panel), and
    the server is given the downloaded snapshot."""
    servers = SimpleNamespace(registry=Registry())
    record = resolve_record(manager.settings, servers, "studio-test/tiny-llama", actor=ADMIN)
    jobs = [j for j in manager.jobs() if j.action == "download"]
    assert len(jobs) == 1 and jobs[0].status == "done" and record.source == jobs[0].result
    assert (Path(record.source) / "config.json").is_file()
    assert catalog.get_model("studio-test/tiny-llama").path == record.source
    with pytest.raises(ModelError, match="is gated"):
        resolve_record(manager.settings, servers, "studio-test/gated", actor=ADMIN)
