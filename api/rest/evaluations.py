"""REST routes: evaluations (to be filled)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/evaluations", tags=["evaluations"])
