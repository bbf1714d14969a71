"""Preference datasets on disk: immutable hashed versions (kind "preference"), import and export in TRL's layouts.

A version file holds one JSON object per line in TRL's conversational layout — `prompt` (messages, ending with
the user's turn), `chosen` and `rejected` (one assistant message each) — plus `source` (provenance), `category` and
`split`. A DPO/ORPO fine-tune reads it as it is; export writes TRL's string or conversational layout.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engines.accounts import Actor
from engines.datasets import draft
from engines.datasets.formats import (
    PREFERENCE_FORMATS,
    FormatError,
    PreferenceRow,
    Problem,
    detect,
    normalise_preferences,
    read_records,
)
from engines.datasets.preferences import BuildReport, remove_duplicates
from engines.datasets.versions import (
    NAME_RE,
    ImportRefused,
    ImportReport,
    NameTaken,
    version_dir,
    version_file,
    write_atomic,
)
from engines.settings import Settings
from storage import datasets as store
from storage.db import database
from storage.models import DatasetVersion

FORMAT = "preference"
EXPORT_LAYOUTS = ("conversational", "strings")


class NotPreference(ValueError):
    """The dataset or version is a chat dataset, not a preference one."""


def rows_bytes(rows: list[PreferenceRow]) -> bytes:
    return "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise ValueError("Dataset names use letters (Korean too), digits, spaces, '.', '_' or '-' (1-80 characters).")
    if store.dataset_by_name(name):
        raise NameTaken(name)


def create_preference_dataset(settings: Settings, name: str, rows: list[PreferenceRow], *, actor: Actor,
                              note: str | None = None, source_format: str = "studio") -> DatasetVersion:
    """A new preference dataset of the actor's with these rows as version 1; returns the version."""
    _check_name(name)
    if not rows:
        raise ValueError("There are no preference pairs to save.")
    with database.atomic():
        ds = store.create_dataset(name, source_format=source_format, note=note, owner_id=actor.id, kind="preference")
        return save_preference_version(settings, ds.id, rows, actor=actor, note=note)


def save_preference_version(settings: Settings, dataset_id: int, rows: list[PreferenceRow], *, actor: Actor,
                            note: str | None = None) -> DatasetVersion:
    """Rows as the next immutable version of a preference dataset the actor may change (its owner or an admin).

    Lineage: the parent is the previous version; the chats the pairs came from are recorded like a chat dataset's."""
    ds = draft.writable(actor, dataset_id)
    if ds.kind != "preference":
        raise NotPreference(f"{ds.name} is a chat dataset; preference pairs go into a preference dataset.")
    if not rows:
        raise ValueError("There are no preference pairs to save.")
    data = rows_bytes(rows)
    digest = hashlib.sha256(data).hexdigest()
    last = store.latest_version(ds.id)
    if last and last.content_hash == digest:
        raise ValueError(f"Nothing changed since v{last.version}.")
    number = (last.version + 1) if last else 1
    path = version_dir(settings, ds.name) / f"v{number}-{digest[:10]}.jsonl"
    write_atomic(path, data)
    chats = sorted({r.source["conversation_id"] for r in rows if isinstance(r.source.get("conversation_id"), int)})
    try:
        return store.add_version(ds, path=str(path), content_hash=digest, row_count=len(rows), fmt=FORMAT, parent=last,
                                 note=note, source_conversations=chats or None)
    except Exception:
        path.unlink(missing_ok=True)  # the row failed: leave no orphan file behind
        raise


def load_preference_version(settings: Settings, version: DatasetVersion) -> list[PreferenceRow]:
    """A preference version's rows (its file must lie under DATA_DIR/datasets: OutsideDataFolder otherwise)."""
    if version.format != FORMAT:
        raise NotPreference(f"Version {version.id} holds chat rows, not preference pairs.")
    records, problems = read_records(version_file(settings, version))
    rows, bad = normalise_preferences(records)
    if problems or bad:
        first = (problems + bad)[0]
        raise FormatError(f"The version file is damaged (line {first.row}: {first.message}).")
    return rows


def inspect_preference_file(path: Path) -> tuple[str | None, list[PreferenceRow], list[Problem]]:
    """(layout, rows, problems) of a file in one of TRL's preference layouts; nothing is written."""
    records, problems = read_records(path)
    if not records:
        raise FormatError("The file has no examples.")
    layout = detect(records)
    if layout not in PREFERENCE_FORMATS:
        raise FormatError("No preference layout found: each row needs chosen and rejected (and a prompt, or chosen and "
                          "rejected conversations that share everything but their last answer).")
    rows, bad = normalise_preferences(records)
    return layout, rows, sorted(problems + bad, key=lambda p: p.row)


def import_preference_file(settings: Settings, path: Path, name: str, *, actor: Actor, valid_only: bool = False,
                           dedupe: bool = True, note: str | None = None) -> tuple[DatasetVersion, list[Problem], int]:
    """A new preference dataset from a TRL-layout file: (version 1, the problems found, duplicates removed).

    All or nothing unless `valid_only` (ImportRefused carries the problems, like a chat import's); ValueError says what
    else is wrong."""
    _check_name(name)
    layout, rows, problems = inspect_preference_file(path)
    if problems and not valid_only:
        raise ImportRefused(ImportReport(format=layout, rows=[], problems=problems))
    report = BuildReport(rows=[])
    kept = remove_duplicates(rows, report) if dedupe else rows
    removed = len(rows) - len(kept)
    version = create_preference_dataset(settings, name, kept, actor=actor, note=note or f"imported from {path.name}",
                                        source_format=layout or FORMAT)
    return version, problems, removed


def export_preference_version(settings: Settings, version: DatasetVersion, layout: str = "conversational", *,
                              split: str | None = None) -> Path:
    """JSONL in TRL's conversational layout (message lists) or string layout, under DATA_DIR/exports; `split`
    (train | eval) keeps only that side."""
    if layout not in EXPORT_LAYOUTS:
        raise ValueError(f"unknown export layout {layout!r}: {' or '.join(EXPORT_LAYOUTS)}")
    rows = load_preference_version(settings, version)
    if split:
        rows = [r for r in rows if (r.split or "train") == split]
    suffix = f"-{split}" if split else ""
    out = settings.exports_path / "datasets" / f"{Path(version.path).parent.name}-v{version.version}-trl-{layout}{suffix}.jsonl"
    conversational = layout == "conversational"
    write_atomic(out, "".join(json.dumps(r.to_trl(conversational=conversational), ensure_ascii=False) + "\n"
                              for r in rows).encode("utf-8"))
    return out
