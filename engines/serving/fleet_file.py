"""The fleet endpoints an admin added or removed, kept in DATA_DIR/fleet.json so they outlive a restart.

FLEET_ENDPOINTS stays the starting point: the file records only the changes made since (added endpoints, and
configured ones an admin took out), so editing the setting later still takes effect for everything else."""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

FILE_NAME = "fleet.json"


def _read(path: Path) -> dict[str, dict[str, list[str]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"added": {}, "removed": {}}
    except (OSError, ValueError) as exc:  # a damaged file must not stop the studio: the setting still applies
        log.warning("fleet.file_unreadable", path=str(path), error=str(exc)[:200])
        return {"added": {}, "removed": {}}
    out: dict[str, dict[str, list[str]]] = {"added": {}, "removed": {}}
    for part in out:
        for base, urls in (data.get(part) or {}).items() if isinstance(data, dict) else ():
            if isinstance(base, str) and isinstance(urls, list):
                out[part][base] = [u for u in urls if isinstance(u, str)]
    return out


def _write(path: Path, data: dict[str, dict[str, list[str]]]) -> None:
    clean = {part: {b: u for b, u in bases.items() if u} for part, bases in data.items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(clean, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)  # a crash mid-write leaves the old file, never half a new one


def effective(configured: dict[str, list[str]], path: Path) -> dict[str, list[str]]:
    """The endpoints per base at start: the configured ones, less those removed, plus those added (order kept)."""
    changes = _read(path)
    out: dict[str, list[str]] = {}
    for base in [*configured, *changes["added"]]:
        removed = set(changes["removed"].get(base, ()))
        urls = [u for u in [*configured.get(base, ()), *changes["added"].get(base, ())] if u not in removed]
        if urls:
            out[base] = list(dict.fromkeys(urls))
    return out


def record(path: Path, configured: dict[str, list[str]], base: str, root: str, *, added: bool) -> None:
    """Remember that an admin added (or removed) `root` as an endpoint of `base`."""
    data = _read(path)
    plus, minus = (data["added"], data["removed"]) if added else (data["removed"], data["added"])
    if root in minus.get(base, []):
        minus[base].remove(root)
    in_setting = root in configured.get(base, ())
    if added != in_setting and root not in plus.setdefault(base, []):  # a change against FLEET_ENDPOINTS
        plus[base].append(root)
    _write(path, data)
