"""The studio's HTTP APIs beside the Gradio UI: the OpenAI-compatible gateway at /v1 and the REST API at /api/v1.

Both are thin front ends over the engines, like the tabs: every route resolves the acting user (api.auth) and calls
an engine function with it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.routing import Match, Mount

if TYPE_CHECKING:
    from engines.services import Services

GATEWAY_PREFIX = "/v1"
REST_PREFIX = "/api/v1"


class APIMount(Mount):
    """A Mount whose path may hold any character. Starlette's pattern (`.*`) stops at a newline, so a request path with
    %0A (or %0D) fell past the API to the UI's routes; here it reaches the API, whose routes answer it (404, 422)."""

    def __init__(self, path: str, app: Any) -> None:
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


class APIRoutes:
    """ASGI middleware that hands /v1 and /api/v1 to the API apps before Gradio's routes see the request.

    Given to `launch(app_kwargs={"middleware": [...]})`, it is in place from the server's first request: mounted on
    the app after launch, the API answered 404 for the moment between the server starting and the mount."""

    def __init__(self, app: Any, services: Services) -> None:
        from api.openai_gateway import build_gateway
        from api.rest import build_rest_app

        self.app = app
        self.mounts = [APIMount(GATEWAY_PREFIX, build_gateway(services)), APIMount(REST_PREFIX, build_rest_app(services))]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            for mount in self.mounts:
                match, child = mount.matches(scope)
                if match == Match.FULL:
                    # The API app is the top of its own routing here, so `url_for` builds on app_root_path: make it
                    # the mount's path, or download links lose their /api/v1 prefix.
                    await mount.handle({**scope, **child, "app_root_path": child["root_path"]}, receive, send)
                    return
        await self.app(scope, receive, send)


def api_middleware(services: Services) -> Middleware:
    """/v1 and /api/v1 for `launch(app_kwargs={"middleware": [gate, api_middleware(services)]})` (both check keys)."""
    return Middleware(APIRoutes, services=services)
