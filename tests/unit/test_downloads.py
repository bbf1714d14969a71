"""Hub download pieces that need no network: the disk-space check, hub errors as sentences, the progress screen."""

from __future__ import annotations

import errno

import httpx2
import pytest
from huggingface_hub.errors import DryRunError, GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

from engines.models.download import hub_error_message, remove_partial_files, space_problem
from engines.models.exports import ExportJob
from studio.download_panel import download_progress_html, downloads_frame, human_bytes

GIB = 1024**3


def _http_error(cls, status: int):
    request = httpx2.Request("GET", "https://huggingface.co/api/models/a/b")
    return cls("denied", response=httpx2.Response(status, request=request))


def test_space_check_counts_the_margin() -> None:
    assert space_problem(1 * GIB, 10 * GIB) is None
    msg = space_problem(16 * GIB, 10 * GIB)
    assert msg and "16.00 GiB" in msg and "10.00 GiB is free" in msg
    assert space_problem(int(9.8 * GIB), 10 * GIB) is not None  # fits, but would leave under the margin


def test_the_hub_answer_wins_over_the_wrapper() -> None:
    """A dry run wraps a gated/missing repo in DryRunError; the user must read why, not 'could not be reached'."""
    for inner, expected in ((_http_error(GatedRepoError, 401), "is gated"),
                            (_http_error(RepositoryNotFoundError, 404), "was not found")):
        try:
            try:
                raise inner
            except Exception as exc:
                raise DryRunError("Dry run cannot be performed") from exc
        except DryRunError as wrapped:
            assert expected in hub_error_message(wrapped, "a/b")
    assert "could not be reached" in hub_error_message(LocalEntryNotFoundError("offline"), "a/b")
    assert "disk is full" in hub_error_message(OSError(errno.ENOSPC, "No space left on device"), "a/b")


def test_partial_files_of_one_repo_are_removed(tmp_path) -> None:
    blobs = tmp_path / "models--a--b" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "abc.1234.incomplete").write_bytes(b"x")
    (blobs / "done-blob").write_bytes(b"y")
    other = tmp_path / "models--a--c" / "blobs"
    other.mkdir(parents=True)
    (other / "zzz.incomplete").write_bytes(b"z")
    assert remove_partial_files(tmp_path, "a/b") == 1
    assert (blobs / "done-blob").exists() and (other / "zzz.incomplete").exists()


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (512, "512 B"), (1536, "1.50 KiB"), (5 * GIB, "5.00 GiB")])
def test_human_bytes(n, text) -> None:
    assert human_bytes(n) == text


def test_the_progress_bar_says_bytes_files_rate_and_eta() -> None:
    job = ExportJob("j1", "download", "Qwen/Qwen2.5-7B-Instruct", "running", stage="downloading", pct=25.0,
                    detail={"bytes_done": 4 * GIB, "bytes_total": 16 * GIB, "files_done": 2, "files_total": 8,
                            "rate": 100 * 1024**2})
    out = download_progress_html("en", job)
    assert "data-status='running'" in out and "width:25.0%" in out
    assert "4.00 GiB of 16.00 GiB" in out and "2/8 files" in out and "100.00 MiB/s" in out and "ETA 2m 03s" in out
    assert "파일 2/8" in download_progress_html("ko", job)

    failed = ExportJob("j2", "download", "a/b", "error", error="a/b is gated: <accept>")
    out = download_progress_html("en", failed)
    assert "data-status='error'" in out and "&lt;accept&gt;" in out  # escaped
    assert "No downloads yet" in download_progress_html("en", None)
    done = ExportJob("j3", "download", "a/b", "done", pct=100, result="/m/hub/x", detail={"bytes_total": 2 * GIB})
    assert "width:100.0%" in download_progress_html("en", done) and "2.00 GiB" in download_progress_html("en", done)
    frame = downloads_frame("en", [job, failed, done])
    assert list(frame["Status"]) == ["running", "failed", "done"] and frame["Size"][0] == "16.00 GiB"


def test_a_job_spawned_a_moment_ago_is_running_not_interrupted(tmp_path) -> None:
    """Between the job folder and its pid file there is a short window: the job is not "interrupted" in it."""
    import json
    import os
    import time

    from engines.models.exports import ExportManager
    from engines.settings import load_settings

    manager = ExportManager(load_settings(data_dir=tmp_path))
    folder = manager.root / "20261128-000000-download-a-b"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"action": "download", "model": "a/b"}))
    assert manager.job(folder.name).status == "running"
    old = time.time() - 120
    os.utime(folder / "job.json", (old, old))
    assert manager.job(folder.name).status == "interrupted"
