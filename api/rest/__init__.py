"""REST API v1: the automation interface over the engines (OpenAPI at /api/v1/openapi.json, docs at /api/v1/docs).

Each area is one module with a `router`; `build_rest_app` includes them all. Routes take the acting user from
`api.auth.acting_user` and the shared services from `api.rest.deps.services`, and call engine functions only."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from api.auth import acting_user
from api.rest.errors import ERRORS, install_error_handlers

if TYPE_CHECKING:
    from engines.services import Services

AREAS = ("conversations", "datasets", "preferences", "finetunes", "evaluations", "arena", "history", "models")


def build_rest_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Chat Studio REST API", version="1", docs_url=None, redoc_url=None, openapi_url=None,
        description="Everything the studio's UI does, for scripts. Send a studio API key as `Authorization: Bearer "
                    "cs-…`; a studio without accounts answers requests from this machine without a key.",
    )
    app.state.services = services
    install_error_handlers(app)
    for area in AREAS:
        module = importlib.import_module(f"api.rest.{area}")
        app.include_router(module.router, dependencies=[Depends(acting_user)], responses=ERRORS)

    # The description and its docs page: a logged-in browser reaches them through the login gate; a script sends its
    # key, which is checked here (a wrong key gets 401, not the description).
    async def key_if_sent(request: Request) -> None:
        if request.headers.get("authorization") or request.headers.get("x-api-key"):
            await acting_user(request)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(key_if_sent)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(key_if_sent)])
    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=request.scope.get("root_path", "") + "/openapi.json",
                                   title="Chat Studio REST API")

    @app.get("/me", tags=["people"], summary="Who the key belongs to", responses=ERRORS)
    async def me(actor=Depends(acting_user)) -> dict:
        return {"id": actor.id, "name": actor.name, "role": actor.role}

    return app
