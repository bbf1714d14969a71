"""Open the database named by a URL and bind the models to it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from peewee import Database, DatabaseProxy
from playhouse.db_url import connect as connect_url

database = DatabaseProxy()

# WAL lets the UI read while a stream writes; foreign keys make deletes cascade.
SQLITE_PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal", "busy_timeout": 5000}
# Transactions take the write lock when they begin: a deferred one that reads first and writes later fails at once
# with "database is locked" (no busy wait) when another connection wrote in between, which concurrent API requests
# storing their turns from worker threads did. An immediate one waits its turn (busy_timeout) instead.
SQLITE_LOCK_TYPE = "IMMEDIATE"


def normalise_url(url: str) -> str:
    """Accept SQLAlchemy-style URLs from the seed project (`sqlite+aiosqlite:///…`, `postgresql+asyncpg://…`)."""
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+", 1)[0]
    if base == "postgres":
        base = "postgresql"
    return f"{base}{sep}{rest}"


def open_database(url: str) -> Database:
    """The database named by `url`, configured as the studio uses it, not yet bound to the models."""
    url = normalise_url(url)
    if url.startswith("sqlite:///"):
        path = urlsplit(url).path
        if path and path != "/:memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return connect_url(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False, lock_type=SQLITE_LOCK_TYPE)
    return connect_url(url)


def connect(url: str, *, migrate: bool = True) -> Database:
    """Connect, bind the models, and apply pending migrations."""
    db = open_database(url)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    if migrate:
        from storage.migrations import apply_migrations

        apply_migrations(db)
    return db
