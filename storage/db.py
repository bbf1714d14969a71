"""Open the database named by a URL and bind the models to it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from peewee import Database, DatabaseProxy
from playhouse.db_url import connect as connect_url

database = DatabaseProxy()

# WAL lets the UI read while a stream writes; foreign keys make deletes cascade.
SQLITE_PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal", "busy_timeout": 5000}


def normalise_url(url: str) -> str:
    """Accept SQLAlchemy-style URLs from the seed project (`sqlite+aiosqlite:///…`, `postgresql+asyncpg://…`)."""
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+", 1)[0]
    if base == "postgres":
        base = "postgresql"
    return f"{base}{sep}{rest}"


def connect(url: str, *, migrate: bool = True) -> Database:
    """Connect, bind the models, and apply pending migrations."""
    url = normalise_url(url)
    if url.startswith("sqlite:///"):
        path = urlsplit(url).path
        if path and path != "/:memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = connect_url(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    else:
        db = connect_url(url)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    if migrate:
        from storage.migrations import apply_migrations

        apply_migrations(db)
    return db
