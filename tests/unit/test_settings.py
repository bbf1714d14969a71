import pytest

from engines.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("PORT", "HOST", "AUTH", "DATABASE_URL", "VLLM_BASE_URL", "DEFAULT_TEMPERATURE", "MODEL_1_ENABLED", "MODEL_1_PATH",
                 "RAY_ADDRESS", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_safe_and_local():
    s = load_settings()
    assert s.host == "127.0.0.1" and s.port == 7860
    assert s.default_temperature == 0.7 and s.default_max_tokens == 512
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("studio.db")
    assert s.auth_pair is None


def test_environment_and_dotenv_are_read(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("PORT=8123\nDEFAULT_MAX_TOKENS=64\n")
    monkeypatch.setenv("DEFAULT_TEMPERATURE", "0.2")
    s = load_settings()
    assert (s.port, s.default_max_tokens, s.default_temperature) == (8123, 64, 0.2)


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("PORT", "abc", "PORT='abc'"),
        ("PORT", "70000", "PORT='70000'"),
        ("DEFAULT_TEMPERATURE", "5", "DEFAULT_TEMPERATURE"),
        ("VLLM_BASE_URL", "localhost:8000", "VLLM_BASE_URL"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("OFFLINE_MODE", "maybe", "OFFLINE_MODE"),
        ("RAY_ADDRESS", "head:8265", "RAY_ADDRESS"),
        ("RAY_NUM_GPUS", "-1", "RAY_NUM_GPUS"),
    ],
)
def test_bad_value_names_the_variable_in_one_line(monkeypatch, name, value, needle):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_auth_must_be_user_colon_password_and_is_never_echoed(monkeypatch):
    monkeypatch.setenv("AUTH", "justapassword")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "AUTH" in str(err.value) and "justapassword" not in str(err.value)
    monkeypatch.setenv("AUTH", "alice:s3cret")
    assert load_settings().auth_pair == ("alice", "s3cret")
    assert "s3cret" not in repr(load_settings())


def test_seed_style_sqlalchemy_url_is_accepted(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///./data/app.db")
    assert load_settings().db_url == "sqlite+aiosqlite:///./data/app.db"


def test_model_slot_requires_a_path(monkeypatch):
    monkeypatch.setenv("MODEL_1_ENABLED", "true")
    with pytest.raises(SettingsError, match="MODEL_1_PATH"):
        load_settings()
    monkeypatch.setenv("MODEL_1_PATH", "meta-llama/Llama-3.1-8B-Instruct")
    slots = load_settings().model_slots()
    assert len(slots) == 1 and slots[0].gpu == "0" and slots[0].path.endswith("8B-Instruct")


def test_env_example_copied_as_is_gives_the_defaults(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (tmp_path / ".env").write_text((root / ".env.example").read_text())
    s = load_settings()
    assert (s.host, s.port, s.auth_pair, s.vllm_base_url, s.vllm_enforce_eager) == ("127.0.0.1", 7860, None, None, None)


def test_ray_jobs_need_an_http_mlflow_server_and_the_token_is_never_echoed(monkeypatch):
    assert load_settings().compute == "local"
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265/")
    with pytest.raises(SettingsError, match="MLFLOW_TRACKING_URI=http"):
        load_settings()  # a local SQLite store cannot be reached from the nodes
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cret-token")
    s = load_settings()
    assert (s.compute, s.ray_address, s.ray_num_gpus, s.ray_worker_python) == ("ray", "http://head:8265", None, "python")
    assert "s3cret" not in repr(s)
