"""REST routes: arena (to be filled)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/arena", tags=["arena"])
