"""Persistence: peewee models over SQLite (default) or PostgreSQL, numbered migrations."""

from storage.db import connect, database

__all__ = ["connect", "database"]
