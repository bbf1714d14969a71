"""The shared services every tab builder is given (no tab reaches for a global); defined in engines.services, where
the API routes take them from too."""

from __future__ import annotations

from engines.services import Services

__all__ = ["Services"]
