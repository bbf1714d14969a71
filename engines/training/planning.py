"""What the form shows before Start: the model folder, dataset size in real tokens, and the estimate (no torch)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from engines.datasets.files import DatasetFileError, resolve_dataset
from engines.models.registry import (
    BUNDLED_MODEL,
    looks_like_hub_id,
    model_roots,
    refusal,
)
from engines.paths import is_inside
from engines.settings import Settings
from engines.training.estimate import Estimate, estimate, model_shape
from engines.training.hardware import Hardware
from engines.training.spec import TrainSpec
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


@lru_cache(maxsize=32)
def _dataset_tokens(path: str, mtime: float, tokenizer_json: str) -> tuple[int, float]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    rows, total = 0, 0
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                msgs = json.loads(line).get("messages", [])
            except (ValueError, AttributeError):
                continue
            texts = [m.get("content", "") for m in msgs if isinstance(m, dict)]
            total += sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)) + 5 * len(texts)
            rows += 1
    return rows, total / rows if rows else 0.0


def dataset_stats(settings: Settings, dataset: str, base_model: str) -> tuple[int, float]:
    """Rows and mean tokens per row (chat formatting included), counted with the model's own tokenizer."""
    path = resolve_dataset(settings, dataset)
    folder = model_folder(settings, base_model)
    tok = folder / "tokenizer.json" if folder else None
    if tok is None or not tok.is_file():
        with open(path, "rb") as fh:
            rows = sum(1 for line in fh if line.strip())
        return rows, 256.0
    return _dataset_tokens(str(path), path.stat().st_mtime, str(tok))


def estimate_for(settings: Settings, spec: TrainSpec, hw: Hardware) -> Estimate | str:
    """The estimate, or a sentence saying why there is none yet."""
    folder = model_folder(settings, spec.base_model)
    if folder is None:
        return "The estimate appears once the base model is on disk (it is downloaded when the job starts)."
    try:
        rows, avg = dataset_stats(settings, spec.dataset, spec.base_model)
    except DatasetFileError as exc:
        return str(exc)
    return estimate(spec, model_shape(folder), hw, rows=rows, avg_tokens=avg)
