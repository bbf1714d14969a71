"""One error shape for every REST route: `{"error": {"code": ..., "message": ...}}` with the right status.

Engine exceptions are mapped here once, so routes just call engines and let them raise."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import NotAuthenticated
from engines.accounts import AccountError, PermissionDenied
from engines.conversations import ConversationNotFound
from engines.evaluation.compare import BattleNotFound
from engines.paths import OutsideDataFolder


class NotFound(LookupError):
    """404 for a route's own lookups (a dataset, run or evaluation id that does not exist)."""


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    async def not_authenticated(_: Request, exc: NotAuthenticated) -> JSONResponse:
        resp = error_response(401, "not_authenticated", exc.message)
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    async def denied(_: Request, exc: Exception) -> JSONResponse:
        return error_response(403, "forbidden", str(exc))

    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return error_response(404, "not_found", str(exc).strip("'\""))

    async def bad_request(_: Request, exc: Exception) -> JSONResponse:
        return error_response(400, "bad_request", str(exc))

    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:10]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return error_response(422, "invalid_request", "; ".join(parts) or "Invalid request.")

    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    app.add_exception_handler(NotAuthenticated, not_authenticated)
    app.add_exception_handler(PermissionDenied, denied)
    app.add_exception_handler(OutsideDataFolder, denied)
    app.add_exception_handler(ConversationNotFound, not_found)
    app.add_exception_handler(BattleNotFound, not_found)
    app.add_exception_handler(NotFound, not_found)

    async def out_of_range(_: Request, exc: OverflowError) -> JSONResponse:
        return error_response(404, "not_found", "No such id (it is out of range).")

    app.add_exception_handler(OverflowError, out_of_range)  # an id past the database's integer range
    app.add_exception_handler(AccountError, bad_request)
    app.add_exception_handler(ValueError, bad_request)  # the engines' own input errors (SpecError, EditError, …)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)


class ErrorDetail(BaseModel):
    code: str = Field(description="not_authenticated | forbidden | not_found | bad_request | invalid_request | …")
    message: str = Field(description="One sentence for a person.")


class ErrorBody(BaseModel):
    error: ErrorDetail


_ERROR_TEXT = {400: "The request cannot be done as asked (the message says why).",
               401: "No key, or a key that is unknown, revoked or of a disabled account.",
               403: "Not allowed: admin-only, or not the owner.",
               404: "No such item of yours (another person's private item reads the same).",
               422: "A field is missing or has the wrong form."}


def error_responses(*codes: int) -> dict[int | str, dict]:
    """The error statuses a router or route declares in the OpenAPI description (all with `ErrorBody`)."""
    return {code: {"model": ErrorBody, "description": _ERROR_TEXT.get(code, "Error.")} for code in codes}


ERRORS = error_responses(400, 401, 403, 404, 422)  # what every REST route may answer besides its success
