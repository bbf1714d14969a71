"""A fine-tune whose base model is a Hub id downloads it outside the job manager's lock: while a slow download runs
(the real huggingface_hub client against the session's throttled Hub mirror), Cancel and other runs' progress answer
at once, the download's progress shows in the run's log, and a run cancelled mid-download never starts a worker."""

from __future__ import annotations

import shutil
import time

import pytest

from engines.settings import load_settings
from engines.training import JobManager
from storage import runs

pytestmark = pytest.mark.training


def _spec(base: str, dataset, name: str) -> dict:
    return {"base_model": base, "dataset": str(dataset), "output_name": name, "lora_r": 8, "batch_size": 2,
            "max_seq_len": 128, "max_steps": 1}


def _timed(fn, *args, **kwargs):
    start = time.monotonic()
    out = fn(*args, **kwargs)
    return out, time.monotonic() - start


def test_cancel_and_progress_answer_while_a_base_model_downloads(db, owner, tmp_path, hub_mirror, tiny_dataset):
    # Its own model cache: the 46 MiB "studio-test/slow" repo (6 MiB/s, ~8 s) is downloaded afresh.
    settings = load_settings(data_dir=tmp_path, model_cache_dir=tmp_path / "models", hf_endpoint=hub_mirror.url)
    dataset = settings.datasets_path / "tiny.jsonl"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_dataset, dataset)
    jm = JobManager(settings, None, poll_s=0.2)
    downloading = jm.submit(_spec("studio-test/slow", dataset, "on-hub-model"), actor=owner)
    waiting = jm.submit(_spec("studio-test/slow", dataset, "queued-behind"), actor=owner)
    blobs = settings.models_path / "hub" / "models--studio-test--slow" / "blobs"
    jm.start()
    try:
        deadline = time.monotonic() + 60
        while not any(blobs.glob("*.incomplete")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(blobs.glob("*.incomplete")), "the download did not start"

        # The download is in progress: nothing that needs the manager's lock waits for it.
        history, took = _timed(jm.history, waiting)
        assert took < 1.5, f"history waited {took:.1f} s for the download"
        assert history.logs == []
        status, took = _timed(jm.cancel, waiting, actor=owner)
        assert (status, runs.get_run(waiting).status) == ("cancelled", "cancelled") and took < 1.5, took
        assert any(blobs.glob("*.incomplete")), "the download ended before the checks: they proved nothing"

        # Its progress is visible while the run is still queued.
        def downloading_lines() -> list[str]:
            return [line for line in jm.history(downloading).logs if "downloading the base model studio-test/slow" in line]

        deadline = time.monotonic() + 30
        while not downloading_lines() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert downloading_lines() and runs.get_run(downloading).status == "queued"
        progress = jm.preparing(downloading)
        assert progress is not None and progress.get("bytes_total", 0) >= 46 * 2**20

        # Cancelled mid-download: the download finishes (or not) but no worker is ever started for it.
        status, took = _timed(jm.cancel, downloading, actor=owner)
        assert status == "cancelled" and took < 1.5, took
        deadline = time.monotonic() + 60
        while jm.preparing(downloading) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jm.preparing(downloading) is None
        time.sleep(0.6)  # a few more ticks
        run = runs.get_run(downloading)
        assert run.status == "cancelled" and run.pid is None and run.started_at is None
        assert not (settings.runs_path / "on-hub-model" / "job.json").exists()
    finally:
        jm.stop()
