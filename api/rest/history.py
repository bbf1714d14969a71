"""REST routes: history (to be filled)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/history", tags=["history"])
