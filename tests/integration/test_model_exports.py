"""Exports as real subprocesses: an adapter merged into a 16-bit folder that the CPU vLLM server then serves;
GGUF and Hub pushes that cannot run here say why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from engines.accounts import Actor
from engines.models import resolve_base_model
from engines.models.exports import ExportError, ExportManager
from engines.serving import ServerManager
from engines.settings import load_settings
from storage import catalog
from tests.conftest import MODELS_DIR

pytestmark = pytest.mark.server


ADMIN = Actor(id=1, name="admin", role="admin")  # exports are admin-only

@pytest.fixture
def export_settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data", model_cache_dir=MODELS_DIR, vllm_start_timeout=400)


def own_copy(settings, name: str, adapter: Path) -> Path:
    """The session's adapter copied into this studio's runs folder: an export reads adapters only from its own data."""
    folder = settings.runs_path / name / "adapter"
    shutil.copytree(adapter, folder, dirs_exist_ok=True)
    return folder


def test_a_merged_adapter_is_a_model_folder_the_server_answers_from(db, export_settings, bundled_model, served_adapter,
                                                                    served_adapter_path):
    adapter = own_copy(export_settings, served_adapter, served_adapter_path)
    catalog.upsert_model(served_adapter, "adapter", path=str(adapter), parent=bundled_model.name)
    exports = ExportManager(export_settings)
    job_id = exports.submit("merge", served_adapter, actor=ADMIN)
    assert exports.jobs()[0].id == job_id
    job = exports.wait(job_id, 300)
    assert job.status == "done", (job.error, (exports.root / job_id / "export.log").read_text()[-2000:])
    folder = export_settings.exports_path / "merged" / f"{served_adapter}-merged"
    assert str(folder) == job.result
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg.get("torch_dtype", cfg.get("dtype")) == "bfloat16" and "peft_type" not in cfg  # a plain 16-bit model
    assert not (folder.parent / f"{folder.name}.partial").exists()

    servers = ServerManager(export_settings)
    try:
        endpoint = servers.ensure(resolve_base_model(export_settings, str(folder)))
        r = httpx.post(f"{endpoint.base_url}/chat/completions", timeout=120, json={
            "model": endpoint.model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 12,
            "temperature": 0})
        r.raise_for_status()
        assert r.json()["choices"][0]["message"]["content"].strip()
    finally:
        servers.stop_all()


def test_gguf_on_cpu_and_pushes_without_a_token_say_why(db, export_settings, bundled_model):
    exports = ExportManager(export_settings)
    job = exports.wait(exports.submit("gguf", bundled_model.name, actor=ADMIN), 120)
    assert job.status == "error" and "llama.cpp" in job.error and "Unsloth" in job.error
    with pytest.raises(ExportError, match="HUGGINGFACE_TOKEN"):
        exports.submit("push", bundled_model.name, actor=ADMIN, repo_id="me/model")
    with pytest.raises(ExportError, match="owner/name"):
        exports.submit("push", bundled_model.name, actor=ADMIN, repo_id="../../etc")
    with pytest.raises(ExportError, match="needs an adapter"):
        exports.submit("merge", bundled_model.name, actor=ADMIN)


def test_the_panel_cancels_a_running_merge_and_leaves_nothing_half_written(db, export_settings, bundled_model,
                                                                           served_adapter, served_adapter_path):
    import time

    import gradio as gr

    from engines.serving.manager import pid_alive
    from studio.exports_panel import build_exports_panel
    from studio.i18n import Translatable
    from studio.services import Services

    catalog.upsert_model(served_adapter, "adapter", path=str(own_copy(export_settings, served_adapter, served_adapter_path)),
                         parent=bundled_model.name)
    with gr.Blocks() as demo:
        build_exports_panel(Services(settings=export_settings, servers=ServerManager(export_settings)), Translatable(),
                            gr.State("en"))
    handlers = {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
    exports = ExportManager(export_settings)
    with pytest.raises(gr.Error, match="No export is running"):
        handlers["cancel_export"]("en")
    handlers["export_model"](served_adapter, "merge", "", True, "en")
    job = exports.jobs()[0]
    deadline = time.monotonic() + 60
    while exports.job(job.id).stage == "" and time.monotonic() < deadline:  # the worker has started its work
        time.sleep(0.2)
    assert exports.job(job.id).status == "running"
    table = handlers["cancel_export"]("en")
    assert list(table["Status"])[0] == "cancelled"
    assert not pid_alive(int((exports.root / job.id / "pid").read_text()))
    out = export_settings.exports_path / "merged" / f"{served_adapter}-merged"
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
