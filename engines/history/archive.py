"""Export the whole studio as one archive (a JSONL per table + the files rows point to) and import it back.

Paths under the data folder are stored as `${DATA_DIR}/…` so an archive opens in a studio living elsewhere.
Import goes only into an empty studio and is all or nothing: the rows go in inside one transaction, the files
are moved into place inside it too, and any failure removes what was moved and rolls the rows back.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from peewee import BooleanField, PostgresqlDatabase, Table

from engines.settings import Settings
from storage import models as m
from storage.db import database
from storage.migrations import MIGRATIONS

FORMAT = 1
PLACEHOLDER = "${DATA_DIR}"
# Parents before children, so foreign keys hold while rows go in.
TABLES: list[type[m.BaseModel]] = [m.Conversation, m.Message, m.ModelEntry, m.Dataset, m.DatasetVersion, m.DatasetRow,
                                   m.DatasetEdit, m.TrainingRun, m.Battle, m.EvalRun, m.EvalResult]
FILE_DIRS = ("datasets", "runs", "evals")  # under DATA_DIR; what rows point to
SKIP_PARTS = {"checkpoints"}  # resumable state, large, worthless once a run is finished
BATCH = 1000


class ArchiveError(ValueError):
    """The archive cannot be imported; the message says why and that nothing changed."""


def _table_name(model: type[m.BaseModel]) -> str:
    return model._meta.table_name


def _encode(value: Any, data_dir: str) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, str) and value.startswith(data_dir):
        return PLACEHOLDER + value[len(data_dir):]
    return value


def _rows(model: type[m.BaseModel]) -> Iterator[dict[str, Any]]:
    cur = database.execute_sql(f"SELECT * FROM {_table_name(model)} ORDER BY id")  # noqa: S608  # names from TABLES
    cols = [c[0] for c in cur.description]
    while chunk := cur.fetchmany(BATCH):
        for row in chunk:
            yield dict(zip(cols, row, strict=True))


def export_archive(settings: Settings, dest: Path | None = None,
                   on_progress: Callable[[str, int], None] | None = None) -> Path:
    """Write the archive (zip) into the exports folder; returns its path."""
    data_dir = str(settings.data_dir.resolve())
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = dest or settings.exports_path / f"chat-studio-archive-{stamp}.zip"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".zip.partial")
    counts: dict[str, int] = {}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for model in TABLES:
            name = _table_name(model)
            n = 0
            with zf.open(f"tables/{name}.jsonl", "w") as fh:
                for row in _rows(model):
                    fh.write((json.dumps({k: _encode(v, data_dir) for k, v in row.items()}, ensure_ascii=False) + "\n").encode())
                    n += 1
            counts[name] = n
            if on_progress:
                on_progress(name, n)
        files = 0
        for sub in FILE_DIRS:
            root = settings.data_dir.resolve() / sub
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(settings.data_dir.resolve())
                if path.is_file() and not SKIP_PARTS & set(rel.parts) and not path.name.endswith(".partial"):
                    zf.write(path, f"files/{rel.as_posix()}")
                    files += 1
        manifest = {"format": FORMAT, "schema": max(n for n, _ in MIGRATIONS), "created_at": dt.datetime.now(dt.UTC).isoformat(),
                    "tables": counts, "files": files}
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
    tmp.replace(dest)
    return dest


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ArchiveError(f"Not a Chat Studio archive ({exc.__class__.__name__}); nothing was imported.") from None
    if manifest.get("format") != FORMAT:
        raise ArchiveError(f"Archive format {manifest.get('format')!r} is not one this studio reads; nothing was imported.")
    if int(manifest.get("schema", 0)) > max(n for n, _ in MIGRATIONS):
        raise ArchiveError("The archive comes from a newer Chat Studio; upgrade first. Nothing was imported.")
    return manifest


def occupied_tables() -> dict[str, int]:
    """Tables that already hold rows (an import needs an empty studio)."""
    out = {}
    for model in TABLES:
        n = model.select().count()
        if n:
            out[_table_name(model)] = n
    return out


def _decoder(model: type[m.BaseModel], data_dir: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    fields = {f.column_name: f for f in model._meta.sorted_fields}

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        unknown = set(row) - set(fields)
        if unknown:
            raise ArchiveError(f"{_table_name(model)} has unknown columns {sorted(unknown)}; nothing was imported.")
        out = {}
        for k, v in row.items():
            if isinstance(v, str) and v.startswith(PLACEHOLDER):
                v = data_dir + v[len(PLACEHOLDER):]
            elif isinstance(fields[k], BooleanField) and v is not None:
                v = bool(v)  # SQLite stores 0/1, PostgreSQL wants booleans
            out[k] = v
        return out

    return decode


def import_archive(settings: Settings, path: Path, on_progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Load an archive into this (empty) studio; returns rows per table. Raises ArchiveError and changes nothing."""
    manifest = read_manifest(path)
    busy = occupied_tables()
    if busy:
        listed = ", ".join(f"{k} ({v})" for k, v in busy.items())
        raise ArchiveError(f"Import needs an empty studio, and this one has rows in {listed}. Nothing was imported.")
    data_root = settings.data_dir.resolve()
    data_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=data_root))
    moved: list[Path] = []
    counts: dict[str, int] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.startswith("files/") or info.is_dir():
                    continue
                rel = PurePosixPath(info.filename).relative_to("files")
                if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts[0] not in FILE_DIRS:
                    raise ArchiveError(f"Unsafe path {info.filename!r} in the archive; nothing was imported.")
                target = staging / Path(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            with database.atomic():
                for model in TABLES:
                    name = _table_name(model)
                    decode = _decoder(model, str(data_root))
                    table = Table(name, columns=[f.column_name for f in model._meta.sorted_fields]).bind(database.obj)
                    batch: list[dict[str, Any]] = []
                    n = 0
                    member = f"tables/{name}.jsonl"
                    if member not in zf.namelist():
                        continue
                    with zf.open(member) as fh:
                        for line in fh:
                            batch.append(decode(json.loads(line)))
                            if len(batch) >= BATCH:
                                table.insert(batch).execute()
                                n += len(batch)
                                batch = []
                    if batch:
                        table.insert(batch).execute()
                        n += len(batch)
                    counts[name] = n
                    if on_progress:
                        on_progress(name, n)
                if isinstance(database.obj, PostgresqlDatabase):  # explicit ids: move each sequence past them
                    for model in TABLES:
                        database.execute_sql(f"SELECT setval(pg_get_serial_sequence('{_table_name(model)}', 'id'), "
                                             f"COALESCE((SELECT MAX(id) FROM {_table_name(model)}), 1))")
                for src in sorted(p for p in staging.rglob("*") if p.is_file()):
                    dest = data_root / src.relative_to(staging)
                    if dest.exists():
                        raise ArchiveError(f"{dest.relative_to(data_root)} exists already; nothing was imported.")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src.replace(dest)
                    moved.append(dest)
                expected = manifest.get("tables", {})
                short = {k: (counts.get(k, 0), v) for k, v in expected.items() if counts.get(k, 0) != v}
                if short:
                    raise ArchiveError(f"The archive is incomplete (rows read vs manifest: {short}); nothing was imported.")
    except Exception as exc:
        for p in moved:
            p.unlink(missing_ok=True)
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"Import failed ({exc.__class__.__name__}: {str(exc)[:300]}); nothing was imported.") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts
