"""OpenAI-compatible gateway (being written)."""

from __future__ import annotations

from fastapi import FastAPI


def build_gateway(services) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    return app
