"""The shared services every tab builder is given (no tab reaches for a global)."""

from __future__ import annotations

from dataclasses import dataclass

from engines.serving import ServerManager
from engines.settings import Settings


@dataclass
class Services:
    settings: Settings
    servers: ServerManager
    no_serve: bool = False  # the app manages no model servers (--no-serve)
