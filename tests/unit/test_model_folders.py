"""Model folders only from MODEL_CACHE_DIR or an admin's MODEL_DIRS: serving (resolve_base_model), a fine-tune's base
model (JobManager.validate) and the planner's folder lookup refuse anything else with one sentence that never says
whether the outside path exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engines.models import ModelError, resolve_base_model
from engines.models.folders import base_model_problem, model_folder
from engines.models.registry import OUTSIDE_MODEL_DIRS
from engines.settings import load_settings


def model_dir(parent: Path, name: str) -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture
def places(tmp_path):
    """A studio whose model cache is tmp/cache, with an admin's extra folder tmp/extra and a folder outside both."""
    settings = load_settings(data_dir=tmp_path / "data", model_cache_dir=tmp_path / "cache",
                             model_dirs=str(tmp_path / "extra"), offline_mode=True)
    return settings, tmp_path


def refusal(settings, value: str) -> str:
    with pytest.raises(ModelError) as err:
        resolve_base_model(settings, value)
    return str(err.value)


def test_a_folder_outside_is_refused_without_saying_whether_it_exists(places):
    settings, tmp = places
    outside = model_dir(tmp / "elsewhere", "real-model")  # a real model folder, just not an allowed one
    for value in (str(outside), str(tmp / "elsewhere" / "missing"), "/etc", "/no/such/dir", "~/whatever", "./x"):
        assert refusal(settings, value) == OUTSIDE_MODEL_DIRS, value
    assert "/etc" not in refusal(settings, "/etc") and "config.json" not in refusal(settings, "/etc")


def test_folders_inside_the_cache_and_model_dirs_are_served(places):
    settings, tmp = places
    cached = model_dir(settings.models_path, "cached-model")
    extra = model_dir(tmp / "extra" / "team", "extra-model")
    assert resolve_base_model(settings, str(cached)).source == str(cached.resolve())
    rec = resolve_base_model(settings, str(extra))
    assert (rec.name, rec.source) == ("extra-model", str(extra.resolve()))
    empty = settings.models_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ModelError, match="no config.json"):  # inside: saying what is wrong reveals nothing
        resolve_base_model(settings, str(empty))
    without_extra = load_settings(data_dir=tmp / "data", model_cache_dir=tmp / "cache", offline_mode=True)
    assert refusal(without_extra, str(extra)) == OUTSIDE_MODEL_DIRS  # MODEL_DIRS is what allowed it


def test_a_symlink_inside_pointing_outside_and_dotdot_escapes_are_refused(places, db):
    settings, tmp = places
    outside = model_dir(tmp / "elsewhere", "secret-model")
    link = settings.models_path / "innocent"
    settings.models_path.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, link)
    assert refusal(settings, str(link)) == OUTSIDE_MODEL_DIRS
    escape = f"{settings.models_path}/../elsewhere/secret-model"
    assert refusal(settings, escape) == OUTSIDE_MODEL_DIRS
    assert model_folder(settings, str(link)) is None and model_folder(settings, escape) is None


def test_hub_ids_still_go_to_the_hub(places, db):
    settings, _ = places
    with pytest.raises(ModelError, match="offline"):  # treated as a hub id (offline here), not as a folder
        resolve_base_model(settings, "meta-llama/Llama-3.1-8B-Instruct")
    assert base_model_problem(settings, "meta-llama/Llama-3.1-8B-Instruct") is None


def test_a_fine_tunes_base_model_folder_is_checked_the_same_way(places, db):
    from engines.training import JobManager
    from engines.training.spec import SpecError

    settings, tmp = places
    outside = model_dir(tmp / "elsewhere", "real-model")
    inside = model_dir(tmp / "extra", "ok-model")
    jobs = JobManager(settings, None)
    spec = {"dataset": "assets/datasets/studio-helper-en.jsonl", "output_name": "t1", "max_steps": 1}
    messages = []
    for value in (str(outside), str(tmp / "elsewhere" / "missing"), "/etc"):
        with pytest.raises(SpecError) as err:
            jobs.validate(spec | {"base_model": value})
        messages.append(err.value.fields["base_model"])
    assert messages == [OUTSIDE_MODEL_DIRS] * 3
    assert jobs.validate(spec | {"base_model": str(inside)}).base_model == str(inside)
    assert model_folder(settings, str(outside)) is None and model_folder(settings, str(inside)) == inside.resolve()
    assert base_model_problem(settings, str(settings.models_path / "nothing-here")) == f"{settings.models_path / 'nothing-here'} is not a model folder (no config.json)"
