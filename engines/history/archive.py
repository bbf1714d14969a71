"""Export the whole studio as one archive (a JSONL per table + the files rows point to) and import it back.

Paths under the data folder are stored as `${DATA_DIR}/…` (and under the model cache as `${MODEL_CACHE_DIR}/…`) so an
archive opens in a studio living elsewhere. An archive is untrusted input: before anything is written its central
directory is checked against ARCHIVE_MAX_ENTRIES / ARCHIVE_MAX_BYTES / ARCHIVE_MAX_RATIO, and every path column of
every row is re-rooted into this studio's own folders (a row whose path is absolute, climbs out with `..` or lands
outside its folder refuses the whole archive). Import goes only into an empty studio, is admin-only, gives every
owned row to the importing admin, and is all or nothing: the rows go in inside one transaction, the files are moved
into place inside it too, and any failure removes what was moved and rolls the rows back.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from peewee import BooleanField, PostgresqlDatabase, Table

from engines.accounts import Actor, require_admin
from engines.paths import is_inside
from engines.settings import Settings
from storage import models as m
from storage.db import database
from storage.migrations import MIGRATIONS

FORMAT = 1
PLACEHOLDER = "${DATA_DIR}"
MODELS_PLACEHOLDER = "${MODEL_CACHE_DIR}"
# Parents before children, so foreign keys hold while rows go in.
TABLES: list[type[m.BaseModel]] = [m.Conversation, m.Message, m.ModelEntry, m.Dataset, m.DatasetVersion, m.DatasetRow,
                                   m.DatasetEdit, m.TrainingRun, m.Battle, m.BattleJudgement, m.EvalRun, m.EvalResult]
FILE_DIRS = ("datasets", "runs", "evals")  # under DATA_DIR; what rows point to
SKIP_PARTS = {"checkpoints"}  # resumable state, large, worthless once a run is finished
BATCH = 1000
CHUNK = 1 << 20
# Entries smaller than this are never refused for their ratio: a short run of spaces compresses 100x and is harmless.
RATIO_FLOOR = 1 << 20
MAX_MANIFEST = 1 << 20


def _path_roots(settings: Settings) -> dict[str, dict[str, tuple[Path, ...]]]:
    """Every column that holds a path, per table, and the folders of this studio its value must land in."""
    return {
        "dataset_versions": {"path": (settings.datasets_path,)},
        "training_runs": {"run_dir": (settings.runs_path,), "adapter_path": (settings.runs_path,),
                          "dataset": settings.data_roots},
        "models": {"path": settings.data_roots},
    }


class ArchiveError(ValueError):
    """The archive cannot be imported; the message says why and that nothing changed."""


def _table_name(model: type[m.BaseModel]) -> str:
    return model._meta.table_name


def _under(value: str, folder: str) -> bool:
    """`value` is `folder` or a path below it (not merely a string that starts the same: /data vs /data2)."""
    return value == folder or value.startswith(folder.rstrip("/") + "/")


def _encode(value: Any, prefixes: list[tuple[str, str]]) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, str):
        for folder, placeholder in prefixes:  # longest folder first
            if _under(value, folder):
                return placeholder + value[len(folder):]
    return value


def _rows(model: type[m.BaseModel]) -> Iterator[dict[str, Any]]:
    cur = database.execute_sql(f"SELECT * FROM {_table_name(model)} ORDER BY id")  # noqa: S608  # names from TABLES
    cols = [c[0] for c in cur.description]
    while chunk := cur.fetchmany(BATCH):
        for row in chunk:
            yield dict(zip(cols, row, strict=True))


def export_archive(settings: Settings, dest: Path | None = None,
                   on_progress: Callable[[str, int], None] | None = None, *, actor: Actor) -> Path:
    """Write the archive (zip) into the exports folder; returns its path. Admins only."""
    require_admin(actor, "import or export archives")
    data_dir = str(settings.data_dir.resolve())
    prefixes = sorted([(data_dir, PLACEHOLDER), (str(settings.models_path), MODELS_PLACEHOLDER)],
                      key=lambda p: len(p[0]), reverse=True)
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
                    fh.write((json.dumps({k: _encode(v, prefixes) for k, v in row.items()}, ensure_ascii=False) + "\n").encode())
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


ARCHIVE_NAME = re.compile(r"^chat-studio-archive-\d{8}-\d{6}\.zip$")


def archive_file(settings: Settings, name: str, *, actor: Actor) -> Path:
    """An exported archive by its file name (as `export_archive` named it), for a download. Admins only; any other
    name, or a file that is not (or no longer) in the exports folder, is a LookupError."""
    require_admin(actor, "import or export archives")
    if not ARCHIVE_NAME.match(name or ""):
        raise LookupError(f"There is no archive {str(name)[:80]!r}.")
    path = settings.exports_path / name
    if not is_inside(path, (settings.exports_path,)) or not path.is_file():
        raise LookupError(f"There is no archive {name!r}.")
    return path.resolve()


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GiB"


def check_limits(settings: Settings, path: Path) -> None:
    """Refuse an archive whose central directory exceeds ARCHIVE_MAX_ENTRIES, ARCHIVE_MAX_BYTES or
    ARCHIVE_MAX_RATIO, before anything is unpacked or written. Raises ArchiveError (one sentence)."""
    entries_cap = settings.archive_max_entries
    try:
        with open(path, "rb") as fh:
            # The end record's entry count, read before zipfile builds an object per entry (10M entries: GBs).
            end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # stable since Python 2; no public equivalent
        claimed = int(end[zipfile._ECD_ENTRIES_TOTAL]) if end else None  # type: ignore[attr-defined]
    except (OSError, AttributeError, IndexError, TypeError, ValueError):
        claimed = None
    if claimed is not None and claimed > entries_cap:
        raise _too_many(claimed, entries_cap)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"Not a Chat Studio archive ({exc.__class__.__name__}); nothing was imported.") from None
    if len(infos) > entries_cap:
        raise _too_many(len(infos), entries_cap)
    total = sum(i.file_size for i in infos)
    if total > settings.archive_max_bytes:
        raise ArchiveError(f"The archive would unpack to {_size(total)}, more than the limit of "
                           f"{_size(settings.archive_max_bytes)} (ARCHIVE_MAX_BYTES); nothing was imported.")
    ratio_cap = settings.archive_max_ratio
    for info in infos:
        if info.file_size > RATIO_FLOOR and info.file_size > ratio_cap * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise ArchiveError(f"{info.filename!r} in the archive expands {ratio:,.0f} times, more than the limit of "
                               f"{ratio_cap:,.0f} (ARCHIVE_MAX_RATIO); nothing was imported.")
    packed = sum(i.compress_size for i in infos)
    if total > RATIO_FLOOR and total > ratio_cap * max(packed, 1):
        raise ArchiveError(f"The archive expands {total / max(packed, 1):,.0f} times, more than the limit of "
                           f"{ratio_cap:,.0f} (ARCHIVE_MAX_RATIO); nothing was imported.")


def _too_many(n: int, cap: int) -> ArchiveError:
    return ArchiveError(f"The archive has {n:,} entries, more than the limit of {cap:,} (ARCHIVE_MAX_ENTRIES); "
                        "nothing was imported.")


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            if zf.getinfo("manifest.json").file_size > MAX_MANIFEST:
                raise ValueError("manifest too large")
            manifest = json.loads(zf.read("manifest.json"))
        if not isinstance(manifest, dict):
            raise ValueError("manifest is not an object")
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


def _reroot(settings: Settings, table: str, column: str, row_id: Any, value: Any,
            roots: tuple[Path, ...]) -> Any:
    """A path from an archive row, placed in this studio's folders: `${DATA_DIR}/rel` → data folder / rel,
    `${MODEL_CACHE_DIR}/rel` → model cache / rel; it must then resolve inside `roots`. Anything absolute, any `..`,
    anything that lands elsewhere refuses the archive (the value comes from the archive, so naming it reveals nothing)."""
    if value is None or value == "":
        return value

    def refuse(why: str) -> ArchiveError:
        shown = value if len(str(value)) <= 120 else str(value)[:117] + "…"
        return ArchiveError(f"Row {row_id} of {table} has a {column} {why} ({shown!r}); nothing was imported.")

    if not isinstance(value, str):
        raise refuse("that is not a path")
    for placeholder, base in ((PLACEHOLDER, settings.data_dir.resolve()), (MODELS_PLACEHOLDER, settings.models_path)):
        if value == placeholder or value.startswith(placeholder + "/"):
            rel = PurePosixPath(value[len(placeholder):].lstrip("/"))
            if ".." in rel.parts or "\\" in str(rel):
                raise refuse("that climbs out of its folder with '..'")
            target = base.joinpath(*rel.parts)
            break
    else:
        rel = PurePosixPath(value)
        if rel.is_absolute() or value.startswith("~") or "\\" in value:
            raise refuse("outside the archive's data folder")
        if ".." in rel.parts:
            raise refuse("that climbs out of its folder with '..'")
        if (table, column) != ("training_runs", "dataset"):
            raise refuse("that is not inside the archive's data folder")
        return value  # a bundled sample (assets/datasets/…): resolve_dataset keeps it inside the repo's samples
    if not is_inside(target, roots):
        raise refuse("outside this studio's folders for it")
    return str(target)


def _decoder(model: type[m.BaseModel], settings: Settings, actor: Actor) -> Callable[[dict[str, Any]], dict[str, Any]]:
    fields = {f.column_name: f for f in model._meta.sorted_fields}
    name = _table_name(model)
    paths = _path_roots(settings).get(name, {})
    data_dir, models_dir = str(settings.data_dir.resolve()), str(settings.models_path)

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(row, dict):
            raise ArchiveError(f"{name} holds a line that is not a row; nothing was imported.")
        unknown = set(row) - set(fields)
        if unknown:
            raise ArchiveError(f"{name} has unknown columns {sorted(unknown)}; nothing was imported.")
        out = {}
        for k, v in row.items():
            if k in paths:
                v = _reroot(settings, name, k, row.get("id"), v, paths[k])
            elif isinstance(v, str) and v.startswith(PLACEHOLDER):
                v = data_dir + v[len(PLACEHOLDER):]
            elif isinstance(v, str) and v.startswith(MODELS_PLACEHOLDER):
                v = models_dir + v[len(MODELS_PLACEHOLDER):]
            elif isinstance(fields[k], BooleanField) and v is not None:
                v = bool(v)  # SQLite stores 0/1, PostgreSQL wants booleans
            out[k] = v
        if "owner_id" in fields:
            out["owner_id"] = actor.id  # the archive's user ids mean nothing here: the importing admin owns it all
        return out

    return decode


def _lines(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int]) -> Iterator[bytes]:
    """The lines of one entry, counting the bytes really unpacked (a header can lie about the size)."""
    seen = 0
    with zf.open(info) as fh:
        for line in fh:
            seen += len(line)
            _spend(info, seen, budget, len(line))
            yield line


def _copy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dst: IO[bytes], budget: list[int]) -> None:
    seen = 0
    with zf.open(info) as src:
        while chunk := src.read(CHUNK):
            seen += len(chunk)
            _spend(info, seen, budget, len(chunk))
            dst.write(chunk)


def _spend(info: zipfile.ZipInfo, seen: int, budget: list[int], n: int) -> None:
    budget[0] -= n
    if seen > info.file_size:
        raise ArchiveError(f"{info.filename!r} unpacks to more than its header says; nothing was imported.")
    if budget[0] < 0:
        raise ArchiveError("The archive unpacks to more than the limit (ARCHIVE_MAX_BYTES); nothing was imported.")


def _check_rows(zf: zipfile.ZipFile, settings: Settings, actor: Actor, budget: list[int]) -> None:
    """Decode every row that holds a path before anything is written, so a hostile path refuses the archive early."""
    names = set(zf.namelist())
    for model in TABLES:
        name = _table_name(model)
        member = f"tables/{name}.jsonl"
        if name not in _path_roots(settings) or member not in names:
            continue
        decode = _decoder(model, settings, actor)
        scratch = [budget[0]]  # this pass reads the tables again later: count it against a copy
        for line in _lines(zf, zf.getinfo(member), scratch):
            decode(json.loads(line))


def import_archive(settings: Settings, path: Path, on_progress: Callable[[str, int], None] | None = None,
                   *, actor: Actor) -> dict[str, int]:
    """Load an archive into this (empty) studio; returns rows per table. Admins only.
    Raises ArchiveError and changes nothing (no row, no file inside or outside the data folder)."""
    require_admin(actor, "import or export archives")
    check_limits(settings, path)
    manifest = read_manifest(path)
    busy = occupied_tables()
    if busy:
        listed = ", ".join(f"{k} ({v})" for k, v in busy.items())
        raise ArchiveError(f"Import needs an empty studio, and this one has rows in {listed}. Nothing was imported.")
    budget = [settings.archive_max_bytes]
    try:
        with zipfile.ZipFile(path) as zf:
            _check_rows(zf, settings, actor, budget)
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(f"Import failed ({exc.__class__.__name__}: {str(exc)[:300]}); nothing was imported.") from exc
    data_root = settings.data_dir.resolve()
    made = [d for d in (*reversed(data_root.parents), data_root) if not d.exists()]  # folders to remove on failure
    data_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=data_root))
    moved: list[Path] = []
    counts: dict[str, int] = {}
    done = False
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
                with open(target, "wb") as dst:
                    _copy(zf, info, dst, budget)
            with database.atomic():
                for model in TABLES:
                    name = _table_name(model)
                    decode = _decoder(model, settings, actor)
                    table = Table(name, columns=[f.column_name for f in model._meta.sorted_fields]).bind(database.obj)
                    batch: list[dict[str, Any]] = []
                    n = 0
                    member = f"tables/{name}.jsonl"
                    if member not in zf.namelist():
                        continue
                    for line in _lines(zf, zf.getinfo(member), budget):
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
                    made += [d for d in dest.parents if d.is_relative_to(data_root) and not d.exists() and d not in made]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src.replace(dest)
                    moved.append(dest)
                expected = manifest.get("tables", {})
                short = {k: (counts.get(k, 0), v) for k, v in expected.items() if counts.get(k, 0) != v}
                if short:
                    raise ArchiveError(f"The archive is incomplete (rows read vs manifest: {short}); nothing was imported.")
        done = True
    except Exception as exc:
        for p in moved:
            p.unlink(missing_ok=True)
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"Import failed ({exc.__class__.__name__}: {str(exc)[:300]}); nothing was imported.") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:  # leave the disk as it was: the folders this import made go too (deepest first, only if empty)
            for d in sorted(made, key=lambda d: len(d.parts), reverse=True):
                try:
                    d.rmdir()
                except OSError:
                    pass
    return counts
