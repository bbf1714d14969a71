"""/api/v1/models: served models, server status for everyone; starting, stopping, restarting servers and model jobs
for admins only (a member gets 403 and nothing happens)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.api

SERVER_FIELDS = {"name", "status", "port", "gpu", "pid", "restarts", "error", "max_model_len", "gpu_memory_utilization",
                 "metrics"}


def test_anyone_sees_the_served_models_and_the_servers(api_studio) -> None:
    with api_studio.client() as c:
        models = c.get("/models")
        assert models.status_code == 200, models.text
        assert {"name": api_studio.model, "kind": "external", "parent": None} in models.json()  # through VLLM_BASE_URL
        servers = c.get("/models/servers").json()
        assert set(servers) == {"manages_servers", "servers", "external_endpoints", "start_error"}
        assert servers["external_endpoints"] == 1 and servers["manages_servers"] is True
        assert all(set(s) == SERVER_FIELDS for s in servers["servers"])
        assert c.get("/models/jobs").json() == [] or all({"id", "action", "status", "started_at"} <= set(j)
                                                         for j in c.get("/models/jobs").json())


def test_a_member_may_not_start_stop_restart_download_export_or_cancel(api_studio) -> None:
    with api_studio.client() as c:
        before = c.get("/models/servers").json()
        for r in (c.post("/models/servers", json={"model": api_studio.model}),
                  c.post(f"/models/servers/{api_studio.model}/stop"),
                  c.post(f"/models/servers/{api_studio.model}/restart"),
                  c.post("/models/downloads", json={"repo_id": "studio-test/tiny-llama"}),
                  c.post("/models/exports", json={"action": "merge", "model": api_studio.model}),
                  c.post("/models/jobs/20260101-000000-download-x/cancel")):
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "forbidden" and "admin" in r.json()["error"]["message"]
        assert c.get("/models/servers").json()["servers"] == before["servers"]  # nothing started or stopped
        assert c.get("/models/jobs").json() == []  # no download or export was queued


def test_admin_actions_check_what_they_are_given(api_studio) -> None:
    with api_studio.client(api_studio.admin_key) as c:
        for r in (c.post("/models/servers/no-such-server/stop"), c.post("/models/servers/org/no-such/restart"),
                  c.post("/models/jobs/20260101-000000-download-x/cancel"), c.get("/models/jobs/nope"),
                  c.get("/models/jobs/..%2F..%2Fstudio.db")):
            assert r.status_code == 404, r.text
        outside = c.post("/models/servers", json={"model": "/etc"})  # a folder outside the model folders
        assert outside.status_code == 400 and "MODEL_CACHE_DIR" in outside.json()["error"]["message"]
        assert c.post("/models/servers", json={"model": "x", "port": 80}).status_code == 422
        assert c.post("/models/servers", json={"model": "x", "gpu": "0; rm -rf /"}).status_code == 422
        assert c.post("/models/downloads", json={"repo_id": "not a repo"}).status_code == 400
        assert c.post("/models/exports", json={"action": "merge", "model": api_studio.model}).status_code == 400
        assert c.post("/models/exports", json={"action": "shell", "model": "x"}).status_code == 422
        assert "/etc" not in {s["name"] for s in c.get("/models/servers").json()["servers"]}
        assert c.get("/models/jobs").json() == []


def test_fleet_endpoints_are_added_listed_and_removed_by_admins_only(api_studio) -> None:
    from tests.conftest import free_port

    elsewhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there: registered, reported down
    with api_studio.client() as member:
        assert member.get("/models/fleet").status_code == 200
        refused = member.post("/models/fleet", json={"base": api_studio.model, "url": elsewhere})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    with api_studio.client(api_studio.admin_key) as admin:
        assert admin.post("/models/fleet", json={"base": api_studio.model, "url": "ftp://x:1"}).status_code == 400
        assert admin.post("/models/fleet", json={"base": " ", "url": elsewhere}).status_code in (400, 422)
        added = admin.post("/models/fleet", json={"base": api_studio.model, "url": f"{elsewhere}/v1/"})
        assert added.status_code == 201, added.text
        assert added.json() == {"base": api_studio.model, "url": elsewhere, "adapter_error": None}
        listed = [e for e in admin.get("/models/fleet").json() if e["url"] == elsewhere]
        assert len(listed) == 1 and listed[0]["base"] == api_studio.model and listed[0]["managed"] is False
        assert listed[0]["health"] in ("down", "unknown") and listed[0]["in_flight"] == 0
        assert (api_studio.data_dir / "fleet.json").is_file()  # kept for the next start
        with api_studio.client() as member:
            assert member.delete("/models/fleet", params={"base": api_studio.model, "url": elsewhere}).status_code == 403
        gone = admin.delete("/models/fleet", params={"base": api_studio.model, "url": elsewhere})
        assert gone.status_code == 200 and gone.json() == {"removed": True}
        again = admin.delete("/models/fleet", params={"base": api_studio.model, "url": elsewhere})
        assert again.status_code == 404
        assert all(e["url"] != elsewhere for e in admin.get("/models/fleet").json())
