"""The job backends' pure parts: bundles that are the same bytes for the same content, event lines read back from a
job's output, artifact paths that cannot leave their folder, and the worker code a remote job carries."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engines.compute import ComputeError, JobBackend, LocalBackend, backends_for
from engines.compute.mlflow_store import _safe
from engines.compute.ray_jobs import RayBackend, job_id_for, package_uri, zip_bytes
from engines.events import EVENT_MARK, EventWriter, read_events, split_output
from engines.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_a_bundle_zip_is_the_same_bytes_for_the_same_content_and_carries_no_bytecode(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.py").write_text("X = 1\n")
    (tmp_path / "a" / "__pycache__").mkdir()
    (tmp_path / "a" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "data.jsonl").write_text('{"messages": []}\n')
    first = zip_bytes([("pkg", tmp_path / "a"), ("dataset.jsonl", tmp_path / "data.jsonl")])
    (tmp_path / "data.jsonl").touch()  # a new mtime changes nothing
    again = zip_bytes([("dataset.jsonl", tmp_path / "data.jsonl"), ("pkg", tmp_path / "a")])
    assert first == again and package_uri(first) == package_uri(again)
    assert package_uri(first).startswith("gcs://_ray_pkg_") and package_uri(first).endswith(".zip")
    assert sorted(zipfile.ZipFile(io.BytesIO(first)).namelist()) == ["dataset.jsonl", "pkg/x.py"]
    (tmp_path / "data.jsonl").write_text('{"messages": [1]}\n')
    assert package_uri(zip_bytes([("dataset.jsonl", tmp_path / "data.jsonl")])) != package_uri(first)
    with pytest.raises(ComputeError, match="missing"):
        zip_bytes([("gone.jsonl", tmp_path / "gone.jsonl")])


def test_event_lines_are_read_back_from_a_jobs_output_even_after_a_progress_bar(tmp_path):
    out = io.StringIO()
    writer = EventWriter(tmp_path / "events.jsonl", echo=out)
    writer.emit("progress", step=1, total_steps=4)
    writer.close()
    printed = out.getvalue()
    assert printed.startswith(EVENT_MARK) and printed.endswith("\n")
    text = "loading\n\r 25%|██▌       | 1/4 [00:01<00:03]" + printed + "View run x at http://mlflow\n"
    events, other = split_output(text)
    assert [json.loads(e)["step"] for e in events] == [1]
    assert other == ["loading", "\r 25%|██▌       | 1/4 [00:01<00:03]", "View run x at http://mlflow"]
    assert read_events(tmp_path / "events.jsonl")[0][0]["type"] == "progress"  # the file is written as before


@pytest.mark.parametrize("bad", ["../x", "adapter/../../etc/passwd", "/etc/passwd", ""])
def test_an_artifact_path_that_could_leave_its_folder_is_refused(bad):
    with pytest.raises(ComputeError):
        _safe(bad)
    assert str(_safe("adapter/adapter_config.json")) == "adapter/adapter_config.json"


def test_backends_by_name_and_the_ray_job_id(tmp_path):
    local = backends_for(load_settings(data_dir=tmp_path))
    assert list(local) == ["local"] and isinstance(local["local"], LocalBackend)
    both = backends_for(load_settings(data_dir=tmp_path, ray_address="http://127.0.0.1:9", mlflow_tracking_uri="http://127.0.0.1:9"))
    assert set(both) == {"local", "ray"} and all(isinstance(b, JobBackend) for b in both.values())
    ray = both["ray"]
    assert isinstance(ray, RayBackend) and ray.remote and not both["local"].remote
    assert ray.entrypoint("engines.training.worker") == "python -m engines.training.worker --bundle ."
    from engines.compute import JobBundle

    bundle = JobBundle(key=7, name="my run/ä", folder=tmp_path, module="m", grace_s=45)
    assert job_id_for(bundle).startswith("chat-studio-7-my-run-") and job_id_for(bundle) != job_id_for(bundle)
    env = ray.environment(bundle)
    assert env["RAY_JOB_STOP_WAIT_TIME_S"] == "45" and not any(k.endswith(("_TOKEN", "_KEY", "PASSWORD")) for k in env)


def test_the_code_a_remote_job_carries_is_everything_the_worker_imports_from_the_repo():
    """WORKER_CODE is what a Ray node gets of this repo: importing the worker and every training backend it may load
    (CPU ones here) pulls in nothing else of engines/, storage/, studio/ or api/."""
    from engines.training.jobs import WORKER_CODE

    code = ("import sys\nimport engines.training.worker, engines.training.backend_hf, engines.training.backend_preference\n"
            "print('\\n'.join(m.__file__ for n, m in list(sys.modules.items()) "
            "if n.split('.')[0] in ('engines', 'storage', 'studio', 'api') and getattr(m, '__file__', None)))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    files = [Path(line).relative_to(ROOT).as_posix() for line in r.stdout.split()]
    carried = [f for f in files if any(f == c or f.startswith(c + "/") for c in WORKER_CODE)]
    assert files and carried == files, sorted(set(files) - set(carried))
    assert not any(f.startswith(("storage/", "studio/", "api/")) for f in files)
