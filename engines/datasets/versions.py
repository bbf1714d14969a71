"""Import a file into a dataset (all or nothing, or valid rows only), save immutable versions, diff, export."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.accounts import Actor
from engines.datasets import draft
from engines.datasets.formats import FormatError, Problem, Row, detect, normalise, read_records, to_sharegpt
from engines.datasets.validate import check, duplicate_rows, invalid_rows, row_key
from engines.paths import contained
from engines.settings import Settings
from storage import datasets as store
from storage.db import database
from storage.models import DatasetVersion

NAME_RE = re.compile(r"^[A-Za-z0-9가-힣][A-Za-z0-9가-힣._ -]{0,79}$")


class NameTaken(ValueError):
    """A dataset of that name exists already (names are unique across the team); `name` says which."""

    def __init__(self, name: str) -> None:
        super().__init__(f"A dataset named {name!r} exists already: pick another name.")
        self.name = name


class ImportRefused(ValueError):
    """The file has invalid rows and the user asked for all or nothing: nothing was written."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        errors = [p for p in report.problems if p.severity == "error"]
        super().__init__(f"{len(errors)} problem(s) in {len({p.row for p in errors})} row(s); nothing was imported. "
                         "Fix them, or import the valid rows only.")


@dataclass
class ImportReport:
    format: str | None
    rows: list[Row]
    problems: list[Problem]
    skipped: list[int] = field(default_factory=list)
    version: DatasetVersion | None = None
    skipped_path: Path | None = None
    dropped: list[int] = field(default_factory=list)  # exact duplicates left out (of the file, or of the dataset)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def inspect_file(path: Path, *, fmt: str | None = None, mapping: dict[str, str] | None = None,
                 model_format: Any = None, max_tokens: int | None = None) -> ImportReport:
    """Read, detect, normalise and check a file without writing anything."""
    with _no_gc():
        return _inspect(path, fmt, mapping, model_format, max_tokens)


@contextmanager
def _no_gc() -> Iterator[None]:
    """Parsing allocates millions of small containers and no cycles: the cyclic GC only slows it (~25%)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _inspect(path: Path, fmt: str | None, mapping: dict[str, str] | None, model_format: Any, max_tokens: int | None) -> ImportReport:
    records, problems = read_records(path)
    if not records and not problems:
        raise FormatError("The file has no examples.")
    if not records:  # every line is broken: report them all
        return ImportReport(format=None, rows=[], problems=problems)
    found = fmt or (None if mapping else detect(records))
    rows, convert_problems = normalise(records, found, mapping)
    counter = None
    if model_format is not None:
        def counter(rs: list[Row]) -> list[int]:
            return model_format.count_tokens([model_format.text(r.messages) for r in rs])
    problems = sorted(problems + convert_problems + check(rows, count_tokens=counter, max_tokens=max_tokens),
                      key=lambda p: (p.row, p.kind))
    return ImportReport(format=found or "mapped", rows=rows, problems=problems)


def rows_bytes(rows: list[Row]) -> bytes:
    return "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def _kept_rows(report: ImportReport, *, valid_only: bool, drop_duplicates: bool,
               existing: set[tuple] | None = None) -> list[Row]:
    """The file's rows an import keeps: refused (ImportRefused) when a row is invalid unless valid_only; exact
    duplicates (within the file, or of a row the dataset already has) left out when drop_duplicates."""
    bad = invalid_rows(report.problems)
    if bad and not valid_only:
        raise ImportRefused(report)
    dropped = duplicate_rows(report.problems) if drop_duplicates else set()
    if existing is not None:
        for row in report.rows:
            if row.source not in bad and row_key(row) in existing:
                report.problems.append(Problem(row.source, "duplicate", "already in the dataset", "warning"))
                if drop_duplicates:
                    dropped.add(row.source)
        report.problems.sort(key=lambda p: (p.row, p.kind))
    report.skipped, report.dropped = sorted(bad), sorted(dropped - bad)
    return [r for r in report.rows if r.source not in bad and r.source not in dropped]


def import_file(settings: Settings, path: Path, name: str, *, actor: Actor, valid_only: bool = False, fmt: str | None = None,
                mapping: dict[str, str] | None = None, model_format: Any = None, max_tokens: int | None = None,
                note: str | None = None, drop_duplicates: bool = True) -> ImportReport:
    """A new dataset of `actor`'s with version 1 from a file. Refused (nothing written) if any row is invalid, unless
    valid_only; exact duplicate rows are left out unless drop_duplicates is False."""
    if not NAME_RE.match(name):
        raise ValueError("Dataset names use letters (Korean too), digits, spaces, '.', '_' or '-' (1-80 characters).")
    if store.dataset_by_name(name):
        raise NameTaken(name)
    report = inspect_file(path, fmt=fmt, mapping=mapping, model_format=model_format, max_tokens=max_tokens)
    keep = _kept_rows(report, valid_only=valid_only, drop_duplicates=drop_duplicates)
    if not keep:
        raise ImportRefused(report)
    bad = set(report.skipped)
    with database.atomic():
        ds = store.create_dataset(name, source_format=report.format, note=note, owner_id=actor.id)
        report.version = save_version(settings, ds.id, keep, actor=actor, note=note or f"imported from {path.name}")
        draft.fill(ds.id, keep, actor=actor)
    if bad:
        report.skipped_path = write_skipped(settings, name, report)
    return report


class NothingToAppend(ValueError):
    """Nothing new to save: every row of the file is already in the dataset (`reason` "all_present"), or with them
    the working copy is its last saved version again ("same_as_saved"). No version was made, nothing changed."""

    def __init__(self, message: str, reason: str = "all_present") -> None:
        super().__init__(message)
        self.reason = reason


def append_file(settings: Settings, path: Path, dataset_id: int, *, actor: Actor, valid_only: bool = False,
                fmt: str | None = None, mapping: dict[str, str] | None = None, model_format: Any = None,
                max_tokens: int | None = None, drop_duplicates: bool = True, note: str | None = None) -> ImportReport:
    """Add a file's rows to a dataset of `actor`'s (or any, for an admin) and save the result as its next version.

    The same rules as an import (all or nothing unless valid_only; exact duplicates, also of rows the dataset has,
    left out unless drop_duplicates is False); the working copy's unsaved changes go into the new version with them.
    Either the rows are added and the version saved, or nothing changes."""
    ds = draft.writable(actor, dataset_id)  # before reading the file: a refusal costs nothing
    if ds.kind == "preference":  # its versions hold pairs: chat rows appended would make a version of another kind
        raise ValueError(f"{ds.name!r} holds preference pairs: chat rows cannot be appended to it.")
    report = inspect_file(path, fmt=fmt, mapping=mapping, model_format=model_format, max_tokens=max_tokens)
    keep = _kept_rows(report, valid_only=valid_only, drop_duplicates=drop_duplicates,
                      existing={row_key(r) for r in draft.all_rows(dataset_id)})
    if not keep:
        if report.errors and not report.dropped:
            raise ImportRefused(report)
        raise NothingToAppend(f"Every row of the file is already in {ds.name!r}: nothing was appended.")
    with database.atomic():  # the rows and the version together: a failed save leaves the working copy as it was
        draft.fill(dataset_id, keep, actor=actor, replace=False, action="append")
        note = f"{note or f'appended from {path.name}'} ({len(keep)} rows)"
        try:
            report.version = save_draft(settings, dataset_id, note, actor=actor)
        except ValueError as exc:  # the rows make the working copy its last version again (e.g. after an Undo)
            if not str(exc).startswith("Nothing changed"):
                raise
            raise NothingToAppend(f"With the file's rows, {ds.name!r} is the same as its last saved version: "
                                  "nothing was appended.", "same_as_saved") from None
    if report.skipped:
        report.skipped_path = write_skipped(settings, ds.name, report)
    return report


def version_dir(settings: Settings, dataset_name: str) -> Path:
    return settings.datasets_path / "versions" / re.sub(r"[^A-Za-z0-9가-힣._-]+", "_", dataset_name)


def save_version(settings: Settings, dataset_id: int, rows: list[Row], *, actor: Actor, note: str | None = None,
                 parent: DatasetVersion | None = None, source_conversations: list[int] | None = None) -> DatasetVersion:
    """Write rows as an immutable JSONL file named by its content hash and record it (atomic: file, then row).

    Only the dataset's owner or an admin saves versions of it (PermissionDenied otherwise)."""
    ds = store.get_dataset(dataset_id)
    if ds is None:
        raise KeyError(dataset_id)
    draft.writable(actor, ds.id)
    data = rows_bytes(rows)
    digest = hashlib.sha256(data).hexdigest()
    last = store.latest_version(dataset_id)
    number = (last.version + 1) if last else 1
    path = version_dir(settings, ds.name) / f"v{number}-{digest[:10]}.jsonl"
    write_atomic(path, data)
    try:
        return store.add_version(ds, path=str(path), content_hash=digest, row_count=len(rows),
                                 parent=parent or last, note=note, source_conversations=source_conversations)
    except Exception:
        path.unlink(missing_ok=True)  # the row failed: leave no orphan file behind
        raise


def version_file(settings: Settings, version: DatasetVersion) -> Path:
    """The version's file, resolved. A row is not trusted (an archive or a hand edit may have written it): a path
    outside the datasets folder raises OutsideDataFolder and nothing is read."""
    return contained(version.path, (settings.datasets_path,), what="dataset version's file")


def load_version(settings: Settings, version: DatasetVersion) -> list[Row]:
    if version.format == "preference":  # prompt/chosen/rejected lines: engines.datasets.preference_files reads them
        raise ValueError(f"Version {version.id} holds preference pairs, not chat rows.")
    rows = []
    with open(version_file(settings, version), encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            obj = json.loads(line)
            rows.append(Row(obj["messages"], obj.get("category"), n, {"split": obj["split"]} if obj.get("split") else {}))
    return rows


@dataclass
class Diff:
    added: list[Row]
    removed: list[Row]
    changed: list[tuple[Row, Row]]


def diff_versions(settings: Settings, old: DatasetVersion, new: DatasetVersion) -> Diff:
    """Rows added, removed, and changed (same first user turn, different content) from `old` to `new`."""
    def key(r: Row) -> str:
        return json.dumps(r.to_json(), ensure_ascii=False, sort_keys=True)

    def first_user(r: Row) -> str:
        return next((m["content"] for m in r.messages if m["role"] == "user"), "")

    a, b = load_version(settings, old), load_version(settings, new)
    a_keys, b_keys = {key(r) for r in a}, {key(r) for r in b}
    only_a = [r for r in a if key(r) not in b_keys]
    only_b = [r for r in b if key(r) not in a_keys]
    by_prompt = {first_user(r): r for r in only_a}
    changed = [(by_prompt[first_user(r)], r) for r in only_b if first_user(r) in by_prompt]
    changed_old = {id(o) for o, _ in changed}
    changed_new = {id(n) for _, n in changed}
    return Diff(added=[r for r in only_b if id(r) not in changed_new], removed=[r for r in only_a if id(r) not in changed_old],
                changed=changed)


def export_version(settings: Settings, version: DatasetVersion, fmt: str = "openai") -> Path:
    """JSONL (OpenAI messages or ShareGPT) or Parquet under DATA_DIR/exports."""
    rows = load_version(settings, version)  # refuses a row pointing outside the data folder before anything is written
    base = settings.exports_path / "datasets" / f"{Path(version.path).parent.name}-v{version.version}"
    if fmt == "openai":
        out = base.with_suffix(".jsonl")
        write_atomic(out, rows_bytes(rows))
    elif fmt == "sharegpt":
        out = base.with_name(base.name + "-sharegpt.jsonl")
        write_atomic(out, "".join(json.dumps(to_sharegpt(r), ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
    elif fmt == "parquet":
        import pandas as pd

        out = base.with_suffix(".parquet")
        out.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"messages": [r.messages for r in rows], "category": [r.category for r in rows]})
        tmp = out.with_name(out.name + ".part")
        frame.to_parquet(tmp, index=False)
        tmp.replace(out)
    else:
        raise ValueError(f"unknown export format {fmt!r}: openai, sharegpt or parquet")
    return out


def write_skipped(settings: Settings, name: str, report: ImportReport) -> Path:
    """The rows left out of an import, each with its problems, as a downloadable JSONL."""
    by_row: dict[int, list[str]] = {}
    for p in report.problems:
        if p.severity == "error":
            by_row.setdefault(p.row, []).append(f"{p.kind}: {p.message}")
    out = settings.exports_path / "datasets" / f"{re.sub(r'[^A-Za-z0-9가-힣._-]+', '_', name)}-skipped.jsonl"
    write_atomic(out, "".join(json.dumps({"row": r, "problems": ps}, ensure_ascii=False) + "\n" for r, ps in sorted(by_row.items())).encode())
    return out


def create_empty(name: str, note: str | None = None, *, actor: Actor) -> int:
    """A new dataset of `actor`'s with no rows yet (to collect chat answers or generated examples into)."""
    if not NAME_RE.match(name):
        raise ValueError("Dataset names use letters (Korean too), digits, spaces, '.', '_' or '-' (1-80 characters).")
    if store.dataset_by_name(name):
        raise NameTaken(name)
    return store.create_dataset(name, source_format="studio", note=note, owner_id=actor.id).id


def save_draft(settings: Settings, dataset_id: int, note: str | None = None, *, actor: Actor) -> DatasetVersion:
    """Freeze the working copy as the next version (refused when a row is invalid or the copy is empty)."""
    draft.writable(actor, dataset_id)  # before reading every row: a refusal costs nothing
    rows = draft.all_rows(dataset_id)
    if not rows:
        raise ValueError("The dataset has no rows to save.")
    bad = invalid_rows(check(rows))
    if bad:
        raise ValueError(f"{len(bad)} row(s) have problems (e.g. row id {min(bad)}); fix or delete them first.")
    last = store.latest_version(dataset_id)
    if last and last.content_hash == hashlib.sha256(rows_bytes(rows)).hexdigest():
        raise ValueError(f"Nothing changed since v{last.version}.")
    sources = sorted({r.extra["conversation_id"] for r in rows if r.extra.get("conversation_id")})
    return save_version(settings, dataset_id, rows, actor=actor, note=note, source_conversations=sources)
