"""The engine functions the REST API added: starting a server by name for an admin, a job id that can only name a job
folder, an archive that can only be fetched by the name export gave it, paths shown without the server's folders, and
a dataset version row pointing outside the data folder refused over HTTP."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from engines.accounts import Actor, PermissionDenied
from engines.history.archive import archive_file
from engines.models.exports import ExportManager
from engines.paths import shown_path
from engines.serving import ServerManager
from engines.serving.start import StartRequest, start_model_server, stop_model_server
from engines.settings import load_settings

MEMBER = Actor(id=2, name="member", role="member")
ADMIN = Actor(id=1, name="admin", role="admin")


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data", model_cache_dir=tmp_path / "models", offline_mode=True)


def test_starting_a_server_by_name_is_for_admins_and_checks_the_name(settings, db):
    servers = ServerManager(settings)
    with pytest.raises(PermissionDenied):
        start_model_server(settings, servers, StartRequest("bundled"), actor=MEMBER)
    with pytest.raises(PermissionDenied):
        stop_model_server(servers, "bundled", actor=MEMBER)
    with pytest.raises(ValueError, match="--no-serve"):
        start_model_server(settings, servers, StartRequest("bundled"), actor=ADMIN, no_serve=True)
    with pytest.raises(ValueError, match="MODEL_CACHE_DIR"):  # a folder outside the model roots: refused at once
        start_model_server(settings, servers, StartRequest(str(settings.data_dir.parent)), actor=ADMIN)
    with pytest.raises(KeyError):
        stop_model_server(servers, "nothing-running", actor=ADMIN)
    assert servers.status() == {} and servers.pending_error() is None


def test_a_job_id_names_only_a_job_folder(settings, db):
    secret = settings.data_dir / "job.json"
    secret.parent.mkdir(parents=True)
    secret.write_text('{"action": "download", "model": "x"}')
    jobs = ExportManager(settings)
    for bad in ("..", "../..", "../../data", "/etc", "20260101-000000-download-../../x", ""):
        assert jobs.job(bad) is None


def test_an_archive_is_fetched_by_its_exported_name_only(settings):
    settings.exports_path.mkdir(parents=True)
    good = settings.exports_path / "chat-studio-archive-20260101-000000.zip"
    good.write_bytes(b"PK")
    (settings.data_dir / "studio.db").write_bytes(b"secret")
    assert archive_file(settings, good.name, actor=ADMIN) == good.resolve()
    with pytest.raises(PermissionDenied):
        archive_file(settings, good.name, actor=MEMBER)
    for bad in ("../studio.db", "studio.db", "chat-studio-archive-20990101-000000.zip", "chat-studio-archive-x.zip"):
        with pytest.raises(LookupError):
            archive_file(settings, bad, actor=ADMIN)


def test_a_path_is_shown_relative_to_the_data_folder_or_by_its_name(tmp_path):
    root = tmp_path / "data"
    assert shown_path(root / "runs" / "a" / "adapter", (root,)) == "runs/a/adapter"
    assert shown_path("/opt/models/secret/model.gguf", (root,)) == "model.gguf"
    assert shown_path(root, (root,)) == "data"


def test_a_version_row_pointing_outside_is_refused_without_reading_it(db, owner, settings, tmp_path) -> None:
    from api.rest import build_rest_app
    from engines import accounts
    from engines.datasets.versions import create_empty
    from engines.services import Services
    from storage import datasets as store

    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"messages": [{"role": "user", "content": "TOP SECRET"}]}) + "\n")
    ds = create_empty("tampered", actor=owner)
    v = store.add_version(store.get_dataset(ds), path=str(secret), content_hash="x", row_count=1)
    _, key = accounts.create_api_key(owner)
    app = build_rest_app(Services(settings=settings, servers=ServerManager(settings)))
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
        for resp in (c.get(f"/datasets/{ds}/versions/{v.id}/rows"), c.get(f"/datasets/{ds}/versions/{v.id}/download"),
                     c.post(f"/datasets/{ds}/versions/{v.id}/export", json={"format": "openai"}),
                     c.get(f"/datasets/{ds}/diff", params={"old": v.id, "new": v.id})):
            assert resp.status_code == 403, resp.text
            assert "TOP SECRET" not in resp.text and str(tmp_path) not in resp.text
