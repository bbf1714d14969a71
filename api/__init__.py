"""The studio's HTTP APIs beside the Gradio UI: the OpenAI-compatible gateway at /v1 and the REST API at /api/v1.

Both are thin front ends over the engines, like the tabs: every route resolves the acting user (api.auth) and calls
an engine function with it."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.routing import Mount

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


def install(app: Any, services: Services) -> None:
    """Mount /v1 and /api/v1 on Gradio's FastAPI app (after launch; both check keys themselves)."""
    from api.openai_gateway import build_gateway
    from api.rest import build_rest_app

    app.router.routes.append(APIMount(GATEWAY_PREFIX, build_gateway(services)))
    app.router.routes.append(APIMount(REST_PREFIX, build_rest_app(services)))
