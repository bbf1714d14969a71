"""REST routes: conversations (to be filled)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/conversations", tags=["conversations"])
