"""What the form shows before Start: the dataset size in real tokens and the estimate (no torch); the spec as YAML."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engines.datasets.files import DatasetFileError, resolve_dataset
from engines.models.folders import model_folder
from engines.settings import Settings
from engines.training.calibration import calibrated, calibration
from engines.training.estimate import Estimate, estimate, model_shape
from engines.training.hardware import Hardware
from engines.training.spec import TrainSpec, spec_to_yaml


def _texts(value: object) -> list[str]:
    """The texts of a row's field: a string, or a list of messages."""
    if isinstance(value, str):
        return [value]
    return [str(m.get("content", "")) for m in value or [] if isinstance(m, dict)]


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
                obj = json.loads(line)
                # a preference pair (prompt, chosen, rejected) is fed as the prompt with each answer
                texts = (_texts(obj.get("prompt")) * 2 + _texts(obj.get("chosen")) + _texts(obj.get("rejected"))
                         if "chosen" in obj else _texts(obj.get("messages", [])))
            except (ValueError, AttributeError):
                continue
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


@dataclass(frozen=True)
class NoEstimate:
    """Why there is no estimate yet, for the UI to say in its language: `reason` "no_model" (the base model is not on
    disk: it is downloaded when the job starts) or "dataset" (the dataset could not be read; `detail` says why)."""

    reason: str
    detail: str = ""


def estimate_for(settings: Settings, spec: TrainSpec, hw: Hardware, *, calibrate: bool = True) -> Estimate | NoEstimate:
    """The estimate (its time corrected by this machine's earlier runs unless `calibrate` is False), or why there is
    none yet."""
    folder = model_folder(settings, spec.base_model)
    if folder is None:
        return NoEstimate("no_model")
    try:
        rows, avg = dataset_stats(settings, spec.dataset, spec.base_model)
    except DatasetFileError as exc:
        return NoEstimate("dataset", str(exc))
    raw = estimate(spec, model_shape(folder), hw, rows=rows, avg_tokens=avg)
    return calibrated(raw, calibration(hw.has_gpu)) if calibrate else raw


def save_spec_yaml(settings: Settings, spec: TrainSpec) -> Path:
    """Write a checked spec as YAML under the exports folder (specs/<run name>.yaml) for download; returns the file."""
    out = settings.exports_path / "specs" / f"{spec.output_name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(spec_to_yaml(spec), encoding="utf-8")
    return out
