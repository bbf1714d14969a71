"""Studio settings, read from the environment and `.env` (every name is documented in .env.example)."""

from __future__ import annotations

import os
import sys
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_MODEL = "SmolLM2-135M-Instruct"
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def endpoint_root(url: str) -> str:
    """An endpoint's root URL (no trailing slash, no /v1): where /metrics, /health and /v1/... hang."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("//", 1)[1]) == 0:
        raise ValueError(f"{url[:80]!r} is not an http:// or https:// URL")
    return url.removesuffix("/v1")


def parse_fleet(text: str) -> dict[str, list[str]]:
    """FLEET_ENDPOINTS "base=url1,url2;base2=url3" -> {base: [root URLs]} (duplicates dropped, order kept)."""
    out: dict[str, list[str]] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        base, sep, urls = part.partition("=")
        if not sep or not base.strip():
            raise ValueError(f"{part.strip()[:80]!r} is not base=url[,url...]")
        roots = out.setdefault(base.strip(), [])
        for u in urls.split(","):
            if u.strip() and (root := endpoint_root(u)) not in roots:
                roots.append(root)
    return out


class SettingsError(ValueError):
    """One clear line naming the variable that is wrong."""


class ModelSlot(BaseSettings):
    """MODEL_1_* / MODEL_2_*: a base model pinned to one GPU and port."""

    enabled: bool = False
    path: str = ""
    gpu: str = ""
    port: int | None = Field(default=None, ge=1024, le=65535)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    debug: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    auth: SecretStr | None = None
    ui_language: Literal["en", "ko"] = "en"

    data_dir: Path = Path("data")
    log_dir: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    database_url: str | None = None
    model_cache_dir: Path | None = None
    # Extra folders (os.pathsep-separated) an admin allows models to be served and fine-tuned from, besides MODEL_CACHE_DIR.
    model_dirs: str = ""

    # Archive import limits: a hostile archive is refused before anything is written.
    archive_max_bytes: int = Field(default=4 * 1024**3, ge=1)  # total uncompressed size
    archive_max_entries: int = Field(default=10_000, ge=1)
    archive_max_ratio: float = Field(default=200.0, ge=1.0)  # uncompressed / compressed, per entry and overall

    # Logins: after this many failures in a row for one name or address, each further try waits longer.
    login_max_failures: int = Field(default=5, ge=1)

    default_model: str = BUNDLED_MODEL
    vllm_base_url: str | None = None
    vllm_api_key: SecretStr | None = None
    # More endpoints per base model (the fleet): "base=http://h1:8000,http://h2:8000;other=http://router:8001".
    fleet_endpoints: str = ""
    fleet_api_key: SecretStr | None = None  # sent to every fleet endpoint (their `vllm serve --api-key`)
    huggingface_token: SecretStr | None = None
    hf_endpoint: str | None = None  # a Hub mirror (e.g. a company proxy); None: huggingface.co
    offline_mode: bool = False

    default_temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    default_top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    default_max_tokens: int = Field(default=512, ge=1, le=131072)
    request_timeout: float = Field(default=120.0, gt=0)

    server_python: str = sys.executable
    vllm_max_model_len: int = Field(default=2048, ge=128)
    vllm_max_lora_rank: int = 64
    vllm_max_loras: int = Field(default=4, ge=1)
    vllm_cpu_kvcache_space: int = Field(default=1, ge=1)
    vllm_gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    vllm_start_timeout: float = Field(default=300.0, gt=0)
    vllm_enforce_eager: bool | None = None
    vllm_extra_args: str = ""

    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: Path | None = None
    mlflow_ui_port: int | None = Field(default=None, ge=1024, le=65535)
    eval_concurrency: int = Field(default=32, ge=1, le=1024)  # requests in flight per model server in batch evaluation
    train_cancel_grace: float = Field(default=30.0, gt=0)
    train_backend: Literal["auto", "unsloth", "transformers"] = "auto"

    # Fine-tunes as Ray jobs (engines/compute/ray.py, docs/scale-out.md): the head's dashboard / Jobs API URL.
    ray_address: str | None = None  # http://HEAD:8265; empty: jobs run as local subprocesses
    ray_auth_token: SecretStr | None = None  # the cluster's token when it runs with RAY_AUTH_MODE=token
    ray_worker_python: str = "python"  # the interpreter on the Ray nodes that has torch/transformers/peft/mlflow
    ray_num_gpus: float | None = Field(default=None, ge=0)  # GPUs a job asks for; None: 1 when the cluster has GPUs, else 0
    ray_num_cpus: float = Field(default=1.0, ge=0)
    ray_models_path: str | None = None  # where the nodes see MODEL_CACHE_DIR (same path when empty)

    model_1_enabled: bool = False
    model_1_path: str = ""
    model_1_gpu: str = "0"
    model_1_port: int | None = Field(default=None, ge=1024, le=65535)
    model_2_enabled: bool = False
    model_2_path: str = ""
    model_2_gpu: str = "1"
    model_2_port: int | None = Field(default=None, ge=1024, le=65535)

    @field_validator("auth")
    @classmethod
    def _auth_is_user_colon_password(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and v.get_secret_value():
            user, sep, pw = v.get_secret_value().partition(":")
            if not sep or not user or not pw:
                raise ValueError("must be user:password")
        return v or None

    @field_validator("vllm_max_lora_rank")
    @classmethod
    def _rank_vllm_accepts(cls, v: int) -> int:
        if v not in LORA_RANKS:
            raise ValueError(f"must be one of {', '.join(map(str, LORA_RANKS))} (what vLLM accepts)")
        return v

    @field_validator("vllm_base_url", "hf_endpoint")
    @classmethod
    def _url_has_scheme(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v or None

    @field_validator("ray_address")
    @classmethod
    def _ray_address_is_the_jobs_api(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be the Ray dashboard's http:// or https:// URL (the Jobs API), e.g. http://head:8265")
        return v.rstrip("/") if v else None

    @field_validator("fleet_endpoints")
    @classmethod
    def _fleet_is_parsable(cls, v: str) -> str:
        parse_fleet(v)
        return v

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str | None) -> str | None:
        if v and v.split(":", 1)[0].split("+", 1)[0] not in ("sqlite", "postgres", "postgresql"):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return v or None

    @model_validator(mode="after")
    def _ray_jobs_share_an_mlflow_server(self) -> Settings:
        if self.ray_address and not (self.mlflow_tracking_uri or "").startswith(("http://", "https://")):
            raise ValueError("RAY_ADDRESS needs MLFLOW_TRACKING_URI=http(s)://… (an `mlflow server` the Ray nodes and the "
                             "studio both reach: checkpoints and adapters travel through its artifact store)")
        return self

    @model_validator(mode="after")
    def _slots_have_paths(self) -> Settings:
        for n in (1, 2):
            if getattr(self, f"model_{n}_enabled") and not getattr(self, f"model_{n}_path"):
                raise ValueError(f"MODEL_{n}_PATH is required when MODEL_{n}_ENABLED is true")
        return self

    # Derived locations: everything the studio writes lives under data_dir unless overridden.
    @cached_property
    def logs_path(self) -> Path:
        return (self.log_dir or self.data_dir / "logs").resolve()

    @cached_property
    def models_path(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").resolve()

    @cached_property
    def servers_path(self) -> Path:
        return (self.data_dir / "servers").resolve()

    @cached_property
    def exports_path(self) -> Path:
        return (self.data_dir / "exports").resolve()

    @cached_property
    def runs_path(self) -> Path:
        return (self.data_dir / "runs").resolve()

    @cached_property
    def datasets_path(self) -> Path:
        return (self.data_dir / "datasets").resolve()

    @cached_property
    def mlflow_artifacts_path(self) -> Path:
        return (self.mlflow_artifact_root or self.data_dir / "mlflow-artifacts").resolve()

    @cached_property
    def allowed_model_paths(self) -> tuple[Path, ...]:
        """Folders models may be read from: the model cache and the admin's MODEL_DIRS."""
        extra = [Path(p).expanduser().resolve() for p in self.model_dirs.split(os.pathsep) if p.strip()]
        return (self.models_path, *extra)

    @cached_property
    def data_roots(self) -> tuple[Path, ...]:
        """Every folder the studio itself reads and writes; a path from a row, an archive or a request must lie inside one."""
        roots = [self.data_dir.resolve(), self.logs_path, self.models_path, self.mlflow_artifacts_path]
        return tuple(dict.fromkeys(roots))

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'studio.db').resolve()}"

    @property
    def compute(self) -> str:
        """The job backend new fine-tunes run on: `ray` with RAY_ADDRESS, else `local`."""
        return "ray" if self.ray_address else "local"

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def auth_pair(self) -> tuple[str, str] | None:
        if not self.auth:
            return None
        user, _, pw = self.auth.get_secret_value().partition(":")
        return user, pw

    def model_slots(self) -> list[ModelSlot]:
        """The enabled MODEL_n_* slots, in order."""
        slots = []
        for n in (1, 2):
            if getattr(self, f"model_{n}_enabled"):
                slots.append(
                    ModelSlot(
                        enabled=True,
                        path=getattr(self, f"model_{n}_path"),
                        gpu=getattr(self, f"model_{n}_gpu"),
                        port=getattr(self, f"model_{n}_port"),
                    )
                )
        return slots


def load_settings(**overrides: object) -> Settings:
    """Settings from env/.env; raises SettingsError with one line naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = "_".join(str(p) for p in err.get("loc", ())).upper()
        name = loc or "SETTINGS"
        raw = err.get("input")
        shown = "" if name in ("AUTH", "HUGGINGFACE_TOKEN", "VLLM_API_KEY", "FLEET_API_KEY", "RAY_AUTH_TOKEN") or isinstance(raw, dict) else f"={raw!r}"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        raise SettingsError(f"Invalid setting {name}{shown}: {msg}") from None


def environment_for_children(settings: Settings) -> dict[str, str]:
    """Environment for server/worker subprocesses: the app's, plus hub credentials and offline flags."""
    env = dict(os.environ)
    if settings.huggingface_token:
        env["HF_TOKEN"] = settings.huggingface_token.get_secret_value()
    if settings.hf_endpoint:
        env["HF_ENDPOINT"] = settings.hf_endpoint.rstrip("/")
    if settings.offline_mode:
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    return env
