"""Shared FastAPI dependencies of the REST routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from engines.services import Services


def services(request: Request) -> Services:
    """The studio's services (settings, servers, jobs, evaluations), set by build_rest_app."""
    return request.app.state.services
