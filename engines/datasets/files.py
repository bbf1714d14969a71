"""Which dataset files may be trained on: the bundled samples and uploads under DATA_DIR; nothing else."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from engines.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "assets" / "datasets"
MAX_UPLOAD_BYTES = 200 * 1024 * 1024


class DatasetFileError(ValueError):
    """An upload or a path that cannot be used; the message names the line or the rule."""


def _roots(settings: Settings) -> list[Path]:
    return [SAMPLES.resolve(), settings.datasets_path, settings.data_dir.resolve()]


def resolve_dataset(settings: Settings, value: str) -> Path:
    """An existing .jsonl inside the allowed folders (relative paths are taken from the repo root)."""
    raw = Path(value)
    path = (raw if raw.is_absolute() else REPO / raw).resolve()
    if not any(path.is_relative_to(root) for root in _roots(settings)):
        raise DatasetFileError("Datasets must come from assets/datasets or the studio's data folder (pick one from the list).")
    if path.suffix not in (".jsonl", ".json") or not path.is_file():
        raise DatasetFileError(f"No dataset file {raw.name!r}; pick one from the list or upload it.")
    return path


def file_kind(path: Path) -> str:
    """"preference" when the file's first row holds chosen and rejected (TRL's layouts), else "chat"."""
    import json

    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            if line.strip():
                try:
                    first = json.loads(line)
                except ValueError:
                    return "chat"  # a .json list or a broken line: the chat reader reports it
                return "preference" if isinstance(first, dict) and "chosen" in first and "rejected" in first else "chat"
    return "chat"


def training_file(settings: Settings, dataset: str | int, version_id: int | None = None) -> tuple[str, int | None]:
    """What a fine-tune spec's `dataset` names, as (the file to train on, its dataset version id or None).

    A saved version (`version_id`, checked against `dataset` when that is given too), a dataset's id or name (its
    latest version), or a trainable file as `resolve_dataset` takes it (samples, uploads; nothing outside), which is
    returned as it was given.
    DatasetFileError says what is missing, in one sentence that never says whether an outside path exists."""
    from engines.datasets.versions import version_file
    from storage import datasets as store

    ref = str(dataset).strip() if dataset is not None else ""
    ds = None
    if ref and not ref.endswith((".jsonl", ".json")):
        ds = store.get_dataset(int(ref)) if ref.isdigit() else store.dataset_by_name(ref)
        if ds is None:
            raise DatasetFileError(f"No dataset {ref!r}: use an id or a name from the dataset list.")
    if version_id is not None:
        version = store.get_version(int(version_id))
        if version is None or (ds is not None and version.dataset_id != ds.id):
            raise DatasetFileError(f"No version {version_id} of that dataset: use an id from its version list.")
    elif ds is not None:
        version = store.latest_version(ds.id)
        if version is None:
            raise DatasetFileError(f"Dataset {ds.name!r} has no saved version yet: save one first.")
    else:
        path = resolve_dataset(settings, ref)
        found = store.version_by_path(str(path))
        return ref, (found.id if found else None)  # as given (a sample's repo path stays one): no server path shown
    try:
        path = version_file(settings, version)
    except PermissionError:
        raise DatasetFileError("That version's file is not inside the studio's data folders.") from None
    return str(path), version.id


def display_path(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


@dataclass(frozen=True)
class TrainingFile:
    """A file a fine-tune can train on: `kind` "sample", "version" (a saved dataset version, `version` its number) or
    "upload"; `value` is what the spec's `dataset` takes."""

    kind: str
    name: str
    rows: int
    value: str
    version: int | None = None


def training_files(settings: Settings) -> list[TrainingFile]:
    """Every trainable file: samples first, then saved versions, then uploads, newest first."""
    out = [TrainingFile("sample", p.stem, _count_rows(p), display_path(p)) for p in sorted(SAMPLES.glob("*.jsonl"))]
    try:
        from storage import datasets as store

        for v in store.list_versions():
            out.append(TrainingFile("version", v.dataset.name, v.row_count, display_path(Path(v.path)), v.version))
    except Exception:  # noqa: BLE001  # no database bound (a bare script): samples and uploads only
        pass
    uploads = settings.datasets_path / "uploads"
    for p in sorted(uploads.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True):
        out.append(TrainingFile("upload", p.stem, _count_rows(p), display_path(p)))
    return out


def dataset_choices(settings: Settings) -> list[tuple[str, str]]:
    """(label, value) for every trainable file, labelled in English (the UI words `training_files` in its language)."""
    def label(f: TrainingFile) -> str:
        if f.kind == "version":
            return f"{f.name} · v{f.version} ({f.rows} rows)"
        return f"{f.name} ({f.kind}, {f.rows} rows)"

    return [(label(f), f.value) for f in training_files(settings)]


def trainable_datasets() -> list[dict[str, object]]:
    """What a fine-tune spec may name without a server path: the bundled samples (by their repo path) and every saved
    dataset version (by dataset id and version id), samples first, then versions newest first."""
    from storage import datasets as store

    out: list[dict[str, object]] = [
        {"label": f"{p.stem} (sample)", "dataset": display_path(p), "dataset_version_id": None, "rows": _count_rows(p),
         "kind": "chat"}
        for p in sorted(SAMPLES.glob("*.jsonl"))
    ]
    for v in sorted(store.list_versions(), key=lambda v: v.id, reverse=True):
        out.append({"label": f"{v.dataset.name} · v{v.version}", "dataset": str(v.dataset_id), "dataset_version_id": v.id,
                    "rows": v.row_count, "kind": "preference" if v.format == "preference" else "chat"})
    return out


def _count_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def save_upload(settings: Settings, uploaded: str | Path) -> Path:
    """Check an uploaded file with the dataset importer (every bad line reported; any common layout) and save its
    rows, normalised to chat messages, under DATA_DIR/datasets/uploads (all or nothing)."""
    from engines.datasets.formats import READABLE, FormatError
    from engines.datasets.versions import inspect_file, rows_bytes, write_atomic

    src = Path(uploaded)
    if src.stat().st_size > MAX_UPLOAD_BYTES:
        raise DatasetFileError(f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MiB.")
    if src.suffix.lower() not in READABLE:
        raise DatasetFileError(f"Upload a chat dataset file ({', '.join(READABLE)}).")
    try:
        report = inspect_file(src)
    except FormatError as exc:
        raise DatasetFileError(str(exc)) from None
    errors = report.errors
    if errors:
        more = f" … and {len(errors) - 8} more" if len(errors) > 8 else ""
        raise DatasetFileError("; ".join(f"line {p.row}: {p.message}" for p in errors[:8]) + more)
    if not report.rows:
        raise DatasetFileError("The file has no rows.")
    data = rows_bytes(report.rows)
    digest = hashlib.sha256(data).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", src.stem).strip("-")[:60] or "dataset"
    dest = settings.datasets_path / "uploads" / f"{stem}-{digest}.jsonl"
    write_atomic(dest, data)  # a half-written file never shows up in the list
    return dest
