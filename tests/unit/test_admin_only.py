"""Servers, downloads and exports are admin-only: the engines refuse a member (PermissionDenied) at every entry point the
UI calls, and the Models tab shows a member those controls disabled with the reason."""

from __future__ import annotations

import gradio as gr
import pytest

from engines import accounts
from engines.accounts import Actor, PermissionDenied
from engines.models import ModelError, ModelRecord
from engines.models.exports import ExportError, ExportManager
from engines.serving import ServerManager
from engines.settings import load_settings

MEMBER = Actor(id=2, name="member", role="member")
ADMIN = Actor(id=1, name="admin", role="admin")


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data", model_cache_dir=tmp_path / "models", offline_mode=True)


def never_resolved() -> ModelRecord:
    raise ModelError("resolved: the start was let through")


def test_a_member_cannot_start_stop_or_restart_a_server(settings):
    servers = ServerManager(settings)
    for call in (lambda: servers.start_server(never_resolved, actor=MEMBER),
                 lambda: servers.stop_server("any", actor=MEMBER),
                 lambda: servers.restart_server("any", actor=MEMBER)):
        with pytest.raises(PermissionDenied, match="Only an admin can start or stop model servers"):
            call()
    assert servers.status() == {} and servers.pending_error() is None  # nothing was even resolved


def test_an_admin_passes_the_server_checks(settings):
    servers = ServerManager(settings)
    servers.start_server(never_resolved, actor=ADMIN).join(10)
    assert servers.pending_error() == "resolved: the start was let through"
    servers.stop_server("nothing-running", actor=ADMIN)  # stopping what does not run is a no-op
    with pytest.raises(KeyError):
        servers.restart_server("nothing-running", actor=ADMIN)


def test_a_member_cannot_download_export_or_cancel(settings, db):
    exports = ExportManager(settings)
    with pytest.raises(PermissionDenied, match="Only an admin can download models"):
        exports.submit_download("org/model", actor=MEMBER)
    for action in ("merge", "gguf", "push"):
        with pytest.raises(PermissionDenied, match="Only an admin can export models"):
            exports.submit(action, "SmolLM2-135M-Instruct", actor=MEMBER, repo_id="me/model")
    with pytest.raises(PermissionDenied):
        exports.cancel("20260101-000000-merge-x", actor=MEMBER)
    assert exports.jobs() == []  # no job folder was written


def test_an_admin_passes_the_export_checks(settings, db):
    exports = ExportManager(settings)
    with pytest.raises(ExportError, match="offline"):  # past the role check: refused for its own reason
        exports.submit_download("org/model", actor=ADMIN)
    with pytest.raises(ExportError, match="needs an adapter|No local folder"):
        exports.submit("merge", "SmolLM2-135M-Instruct", actor=ADMIN)
    assert exports.cancel("20260101-000000-merge-x", actor=ADMIN) is False


def handlers_and_access(settings) -> tuple[dict, list]:
    from studio.download_panel import build_download_panel
    from studio.exports_panel import build_exports_panel
    from studio.i18n import Translatable
    from studio.models_tab import build_models_tab
    from studio.services import Services

    services = Services(settings=settings, servers=ServerManager(settings))
    tr = Translatable()
    with gr.Blocks() as demo:
        lang = gr.State("en")
        models = build_models_tab(services, tr, lang)
        build_download_panel(services, tr, lang, models.refresh)
        build_exports_panel(services, tr, lang)
    fns = {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
    return fns, [fns["models_access"], fns["download_access"], fns["exports_access"]]


def test_the_models_tab_disables_admin_controls_for_a_member_and_says_why(settings, db):
    accounts.add_user("boss", "password-1", role="admin")
    accounts.add_user("mia", "password-2")
    handlers, access = handlers_and_access(settings)
    member, admin = gr.Request(username="mia"), gr.Request(username="boss")
    for fn, admin_enabled in zip(access, (True, False, True), strict=True):  # downloads: off here (OFFLINE_MODE)
        note, *controls = fn(member)
        assert note["visible"] is True and controls and all(c["interactive"] is False for c in controls)
        note, *controls = fn(admin)
        assert note["visible"] is False and all(c["interactive"] is admin_enabled for c in controls)
    reason = "Only an admin can start or stop servers, download or export models."
    calls = [
        lambda r: handlers["start_server"]("en", "SmolLM2-135M-Instruct", "", None, 1024, None, r),
        lambda r: handlers["stop_server"]("en", "SmolLM2-135M-Instruct", r),
        lambda r: handlers["restart_server"]("en", "SmolLM2-135M-Instruct", r),
        lambda r: handlers["download_model"]("org/model", "", "en", r),
        lambda r: handlers["export_model"]("SmolLM2-135M-Instruct", "merge", "", True, "en", r),
    ]
    for call in calls:
        with pytest.raises(gr.Error, match=reason):
            call(member)
    with pytest.raises(gr.Error, match="offline"):  # the admin gets past the role check
        calls[3](admin)
