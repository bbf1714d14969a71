"""The studio's HTTP APIs beside the Gradio UI: the OpenAI-compatible gateway at /v1 and the REST API at /api/v1.

Both are thin front ends over the engines, like the tabs: every route resolves the acting user (api.auth) and calls
an engine function with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engines.services import Services

GATEWAY_PREFIX = "/v1"
REST_PREFIX = "/api/v1"


def install(app: Any, services: Services) -> None:
    """Mount /v1 and /api/v1 on Gradio's FastAPI app (after launch; both check keys themselves)."""
    from api.openai_gateway import build_gateway
    from api.rest import build_rest_app

    app.mount(GATEWAY_PREFIX, build_gateway(services))
    app.mount(REST_PREFIX, build_rest_app(services))
