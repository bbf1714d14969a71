"""A file someone sends to the studio (a browser upload, an API request), inspected or imported as a dataset.

The Datasets tab and the REST API share these: the file is staged under DATA_DIR/datasets/incoming with a name of
our own (the sender's name only gives the suffix and a readable stem), read with the importer, and removed after.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engines.accounts import Actor
from engines.datasets import draft
from engines.datasets.files import MAX_UPLOAD_BYTES, DatasetFileError
from engines.datasets.formats import (
    READABLE,
    FormatError,
    PreferenceLayout,
    PreferenceRow,
    Problem,
    fields_found,
    read_records,
)
from engines.datasets.preference_files import import_preference_file, inspect_preference_file
from engines.datasets.render import ModelFormat
from engines.datasets.versions import ImportReport, append_file, import_file, inspect_file
from engines.settings import Settings
from storage.models import DatasetVersion

CHUNK = 1 << 20
MAPPING_KEYS = ("user", "assistant", "system", "category")
GUESSES = {"user": ("question", "input", "query", "user", "q"), "assistant": ("answer", "output", "reply", "assistant", "a"),
           "system": ("system",), "category": ("category", "topic", "label")}


def safe_stem(filename: str | None) -> str:
    """A readable stem from a sender's file name: no folders, no dots-only names, only plain characters."""
    stem = Path(Path(str(filename or "")).name).stem
    return re.sub(r"[^A-Za-z0-9가-힣._-]+", "-", stem).strip("-.")[:60] or "dataset"


@contextmanager
def staged_upload(settings: Settings, stream: BinaryIO, filename: str | None) -> Iterator[Path]:
    """Copy an uploaded stream into a private folder under DATA_DIR/datasets/incoming (at most MAX_UPLOAD_BYTES),
    yield its path, and remove it afterwards. The sender's name never becomes a path: only its suffix is used."""
    suffix = Path(str(filename or "")).suffix.lower()
    if suffix not in READABLE:
        raise DatasetFileError(f"Upload a chat dataset file ({', '.join(READABLE)}).")
    folder = settings.datasets_path / "incoming" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    path = folder / f"{safe_stem(filename)}{suffix}"
    try:
        written = 0
        with open(path, "wb") as out:
            while chunk := stream.read(CHUNK):
                written += len(chunk)
                if written > MAX_UPLOAD_BYTES:
                    raise DatasetFileError(f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB.")
                out.write(chunk)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_formats: dict[Path, ModelFormat | None] = {}  # by model folder: names from requests never grow it


def model_format_for(settings: Settings, model: str | None) -> ModelFormat | None:
    """The chat template and tokenizer of a base model on disk (token counts, previews), or None when it has none here."""
    from engines.chat_templates import TemplateError
    from engines.models.folders import model_folder

    folder = model_folder(settings, model or settings.default_model)
    if folder is None:
        return None
    if folder not in _formats:
        try:
            _formats[folder] = ModelFormat(folder)
        except TemplateError:
            _formats[folder] = None
    return _formats[folder]


@dataclass
class Inspection:
    """What an import would find, without writing anything: the layout, the rows, the problems; or, for a layout
    the importer cannot tell, the fields it found and a guessed column mapping."""

    report: ImportReport | None
    error: str | None = None
    fields: list[str] | None = None
    guess: dict[str, str | None] | None = None
    preference: bool = False  # TRL preference pairs: `inspect_preference_upload` reads them


def guess_mapping(fields: list[str]) -> dict[str, str | None]:
    return {k: next((f for f in fields if f.lower() in names), None) for k, names in GUESSES.items()}


def inspect_upload(settings: Settings, path: Path, *, fmt: str | None = None, mapping: dict[str, str] | None = None,
                   template_model: str | None = None) -> Inspection:
    try:
        return Inspection(inspect_file(path, fmt=fmt, mapping=mapping, model_format=model_format_for(settings, template_model),
                                       max_tokens=settings.vllm_max_model_len))
    except PreferenceLayout as exc:
        return Inspection(None, error=str(exc), preference=True)
    except FormatError as exc:
        try:
            found = fields_found(read_records(path)[0])
        except FormatError:
            found = []
        return Inspection(None, error=str(exc), fields=found, guess=guess_mapping(found) if found else None)


@dataclass
class PreferenceInspection:
    """A file in one of TRL's preference layouts: its layout, pairs and problems (nothing written)."""

    layout: str
    rows: list[PreferenceRow]
    problems: list[Problem]


def inspect_preference_upload(path: Path) -> PreferenceInspection | None:
    """The file's preference pairs when it is in a TRL preference layout; None when it holds something else. (Ask
    after `inspect_upload` says `preference`, or `import_upload` raises PreferenceLayout: a chat file is read once.)"""
    try:
        layout, rows, problems = inspect_preference_file(path)
    except FormatError:
        return None
    return PreferenceInspection(layout or "preference", rows, problems)


def import_preference_upload(settings: Settings, path: Path, name: str, *, actor: Actor, valid_only: bool = False,
                             drop_duplicates: bool = True, source_name: str | None = None) -> tuple[DatasetVersion, list[Problem], int]:
    """A new preference dataset from an uploaded TRL file (`preference_files.import_preference_file`): the Datasets
    tab's import takes one the way the REST `/preferences/datasets/import` does."""
    stem = safe_stem(source_name or path.name)
    return import_preference_file(settings, path, (name or "").strip() or stem, actor=actor, valid_only=valid_only,
                                  dedupe=drop_duplicates, note=f"imported from {stem}{path.suffix}")


def clean_mapping(mapping: dict[str, str | None] | None) -> dict[str, str] | None:
    """A column mapping with the empty entries left out; it needs a user and an assistant column (ValueError)."""
    picked = {k: v for k, v in (mapping or {}).items() if k in MAPPING_KEYS and v}
    if not picked:
        return None
    if not (picked.get("user") and picked.get("assistant")):
        raise ValueError("A column mapping needs at least the user and the assistant columns.")
    return picked


def import_upload(settings: Settings, path: Path, name: str, *, actor: Actor, valid_only: bool = False, fmt: str | None = None,
                  mapping: dict[str, str | None] | None = None, template_model: str | None = None,
                  source_name: str | None = None, drop_duplicates: bool = True) -> ImportReport:
    """A new dataset of `actor`'s from an uploaded file: all or nothing (ImportRefused), or its valid rows only."""
    return import_file(settings, path, (name or "").strip() or safe_stem(source_name or path.name), actor=actor,
                       valid_only=valid_only, fmt=fmt or None, mapping=clean_mapping(mapping),
                       model_format=model_format_for(settings, template_model), max_tokens=settings.vllm_max_model_len,
                       note=f"imported from {safe_stem(source_name or path.name)}{path.suffix}",
                       drop_duplicates=drop_duplicates)


def append_upload(settings: Settings, path: Path, dataset_id: int, *, actor: Actor, valid_only: bool = False,
                  fmt: str | None = None, mapping: dict[str, str | None] | None = None, template_model: str | None = None,
                  source_name: str | None = None, drop_duplicates: bool = True) -> ImportReport:
    """An uploaded file's rows added to a dataset and saved as its next version (`versions.append_file`)."""
    stem = f"{safe_stem(source_name or path.name)}{path.suffix}"
    return append_file(settings, path, int(dataset_id), actor=actor, valid_only=valid_only, fmt=fmt or None,
                       mapping=clean_mapping(mapping), model_format=model_format_for(settings, template_model),
                       max_tokens=settings.vllm_max_model_len, drop_duplicates=drop_duplicates,
                       note=f"appended from {stem}")


@dataclass
class Stats:
    rows: int
    turns_mean: float
    tokens: int
    tokens_by_role: dict[str, list[int]]
    turns: list[int]
    categories: list[tuple[str, int]]
    splits: dict[str, int]
    counted_with: str  # the model whose tokenizer counted, or "≈ chars/4"


def dataset_stats(settings: Settings, dataset_id: int, template_model: str | None = None) -> Stats:
    """Rows, turns and token counts per role of a dataset's working copy (with a model's tokenizer when on disk)."""
    rows = draft.all_rows(dataset_id)
    fmt = model_format_for(settings, template_model)
    flat = [(m["role"], m["content"]) for r in rows for m in r.messages]
    counts = fmt.count_tokens([c for _, c in flat]) if (fmt and flat) else [len(c) // 4 for _, c in flat]
    per_role: dict[str, list[int]] = {"system": [], "user": [], "assistant": []}
    for (role, _), n in zip(flat, counts, strict=True):
        per_role.setdefault(role, []).append(n)
    turns = [len(r.messages) for r in rows]
    splits: dict[str, int] = {}
    for r in rows:
        key = r.extra.get("split") or "(none)"
        splits[key] = splits.get(key, 0) + 1
    return Stats(rows=len(rows), turns_mean=sum(turns) / max(len(rows), 1), tokens=sum(counts),
                 tokens_by_role={k: v for k, v in per_role.items() if v}, turns=turns,
                 categories=draft.categories(dataset_id), splits=splits,
                 counted_with=(template_model or settings.default_model) if fmt else "≈ chars/4")
