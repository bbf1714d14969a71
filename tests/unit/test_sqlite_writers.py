"""Concurrent writers on the studio's SQLite file: transactions that read before they write must wait, not fail."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from peewee import Database, OperationalError, SqliteDatabase

from storage.db import SQLITE_PRAGMAS, open_database

THREADS = 6
PER_THREAD = 12


def _hammer(db: Database) -> tuple[list[Exception], int]:
    """Each thread: begin, read the count, pause, insert — as storing a chat turn does. (errors, rows stored)."""
    db.execute_sql("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, n INTEGER)")
    errors: list[Exception] = []

    def work() -> None:
        for _ in range(PER_THREAD):
            try:
                with db.atomic():
                    (n,) = db.execute_sql("SELECT count(*) FROM t").fetchone()
                    time.sleep(0.003)  # another writer commits here
                    db.execute_sql("INSERT INTO t (n) VALUES (?)", (n,))
            except OperationalError as exc:
                errors.append(exc)
        db.close()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    (count,) = db.execute_sql("SELECT count(*) FROM t").fetchone()
    return errors, count


def test_the_studio_database_serialises_writers_instead_of_failing(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'studio.db'}")
    errors, count = _hammer(db)
    assert errors == []
    assert count == THREADS * PER_THREAD


def test_deferred_transactions_do_fail_under_the_same_load(tmp_path: Path) -> None:
    """The hazard is real: without immediate transactions the same work loses writes to "database is locked"."""
    db = SqliteDatabase(str(tmp_path / "plain.db"), pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    errors, count = _hammer(db)
    assert errors, "deferred transactions all succeeded: the test no longer shows the hazard"
    assert "locked" in str(errors[0])
    assert count == THREADS * PER_THREAD - len(errors)
