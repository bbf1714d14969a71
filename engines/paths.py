"""The trust boundary for file paths: a path that comes from a row, an archive or a request must lie inside
the studio's own folders (or a model folder an admin allowed) once resolved, or it is refused."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class OutsideDataFolder(PermissionError):
    """A path resolved outside every allowed folder; the message never says whether it exists."""


def is_inside(path: str | Path, roots: Iterable[Path]) -> bool:
    """True when `path`, with symlinks and `..` resolved, is one of `roots` or lies below one."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    for root in roots:
        root = Path(root).resolve()
        if resolved == root or resolved.is_relative_to(root):
            return True
    return False


def contained(path: str | Path, roots: Iterable[Path], *, what: str = "path") -> Path:
    """The resolved path if it lies inside one of `roots`; else OutsideDataFolder (without revealing anything)."""
    roots = tuple(roots)
    if not str(path).strip() or not is_inside(path, roots):
        raise OutsideDataFolder(f"The {what} is not inside the studio's data folders.")
    return Path(path).expanduser().resolve()


def shown_path(path: str | Path, roots: Iterable[Path]) -> str:
    """A path as it may be shown to a person or a client: relative to the first of `roots` it lies in (`runs/x/adapter`),
    else only its last part; never the server's absolute path."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(str(path)).name
    for root in roots:
        root = Path(root).resolve()
        if resolved.is_relative_to(root) and resolved != root:
            return resolved.relative_to(root).as_posix()
    return resolved.name
