"""One name per base model: an adapter's parent is the base's served name, whatever the run called the base (a local
folder, an alias, a hub id), and rows an older studio wrote with the raw base are normalised when the jobs start."""

from __future__ import annotations

import json
import shutil

from engines.history.lineage import lineage
from engines.models import served_name
from engines.serving import ServerManager
from engines.settings import BUNDLED_MODEL, load_settings
from engines.training import JobManager
from storage import catalog, runs


def test_served_name_of_aliases_hub_ids_and_folders(tmp_path):
    settings = load_settings(data_dir=tmp_path, model_dirs=str(tmp_path / "local"))
    folder = tmp_path / "local" / "my-base"
    folder.mkdir(parents=True)
    for alias in ("", "bundled", "default", BUNDLED_MODEL, None):
        assert served_name(alias, settings) == BUNDLED_MODEL
    assert served_name("Qwen/Qwen2.5-0.5B-Instruct", settings) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert served_name(str(folder), settings) == "my-base"
    assert served_name(str(folder) + "/", settings) == "my-base"
    shutil.rmtree(folder)  # after a restart the folder may be gone: the name does not change
    assert served_name(str(folder), settings) == "my-base"
    assert served_name(str(folder)) == "my-base"


def _adapter_run(settings, owner, name: str, base: str):
    adapter = settings.runs_path / name / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    run = runs.create_run(name=name, base_model=base, dataset="d.jsonl", method="lora", spec={},
                          run_dir=str(settings.runs_path / name), owner_id=owner.id)
    runs.finish_run(run.id, "completed", adapter_path=str(adapter))
    return runs.get_run(run.id)


def test_a_finished_run_on_a_local_folder_registers_its_adapter_under_the_served_name(db, owner, tmp_path):
    settings = load_settings(data_dir=tmp_path, model_dirs=str(tmp_path / "local"))
    folder = tmp_path / "local" / "my-base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    run = _adapter_run(settings, owner, "tuned-on-folder", str(folder))
    JobManager(settings, None)._register_adapter(run)
    assert catalog.get_model("tuned-on-folder").parent == "my-base"
    assert [e.name for e in catalog.adapters_of("my-base")] == ["tuned-on-folder"]
    assert [a.name for a in lineage(settings, "my-base").adapters] == ["tuned-on-folder"]


def test_old_rows_with_a_raw_base_are_normalised_and_served_again_after_a_restart(db, owner, tmp_path):
    settings = load_settings(data_dir=tmp_path, model_dirs=str(tmp_path / "local"))
    folder = tmp_path / "local" / "my-base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    # What an older studio wrote: the parent as the run named it (a folder, the "bundled" alias).
    on_folder = _adapter_run(settings, owner, "old-on-folder", str(folder))
    catalog.upsert_model(on_folder.name, "adapter", path=on_folder.adapter_path, parent=str(folder), run_id=on_folder.id)
    on_alias = _adapter_run(settings, owner, "old-on-alias", "bundled")
    catalog.upsert_model(on_alias.name, "adapter", path=on_alias.adapter_path, parent="bundled", run_id=on_alias.id)

    servers = ServerManager(settings)  # nothing starts: only its registry and the command it would run are read
    JobManager(settings, servers).register_saved_adapters()

    assert catalog.get_model("old-on-folder").parent == "my-base"
    assert catalog.get_model("old-on-alias").parent == BUNDLED_MODEL
    assert [a.name for a in servers.saved_adapters("my-base")] == ["old-on-folder"]
    assert [a.name for a in servers.saved_adapters(BUNDLED_MODEL)] == ["old-on-alias"]
    assert [a.name for a in lineage(settings, "my-base").adapters] == ["old-on-folder"]
    # Idempotent: a second start changes nothing.
    JobManager(settings, ServerManager(settings)).register_saved_adapters()
    assert catalog.get_model("old-on-folder").parent == "my-base"
