"""Where a base model lies on disk: the bundled model, a catalogue entry or a folder inside the model roots
(MODEL_CACHE_DIR, MODEL_DIRS, merged exports); a folder anywhere else is never looked at.

Fine-tuning (form checks, the estimate), dataset previews (the tokenizer and chat template), model exports and
the servers' Start all ask here.
"""

from __future__ import annotations

from pathlib import Path

from engines.models.registry import BUNDLED_MODEL, looks_like_hub_id, model_roots, refusal
from engines.paths import is_inside
from engines.settings import Settings
from storage import catalog


def model_folder(settings: Settings, base_model: str) -> Path | None:
    """The local folder of a base model, if it is on disk (bundled, registered or a path) inside the model roots
    (MODEL_CACHE_DIR, MODEL_DIRS, merged exports); a folder anywhere else is never looked at."""
    if base_model in ("", "bundled", "default", BUNDLED_MODEL):
        p = settings.models_path / BUNDLED_MODEL
        return p if (p / "config.json").is_file() else None
    roots = model_roots(settings)
    entry = catalog.get_model(base_model)
    if entry and entry.path and is_inside(entry.path, roots) and (Path(entry.path) / "config.json").is_file():
        return Path(entry.path).resolve()
    if not is_inside(base_model, roots):
        return None
    p = Path(base_model).expanduser().resolve()
    return p if (p / "config.json").is_file() else None


def base_model_problem(settings: Settings, base_model: str) -> str | None:
    """Why a fine-tune's base model cannot be used, or None. A folder outside the model roots gets one sentence,
    whether it exists or not; a hub id (org/name) is checked when the job starts."""
    value = (base_model or "").strip()
    if value in ("", "bundled", "default", BUNDLED_MODEL) or catalog.get_model(value) is not None:
        return None
    if looks_like_hub_id(value) and not is_inside(value, model_roots(settings)):
        return None
    if not is_inside(value, model_roots(settings)):
        return refusal(value)
    if not (Path(value).expanduser().resolve() / "config.json").is_file():
        return f"{value} is not a model folder (no config.json)"
    return None
