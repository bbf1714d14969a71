"""One error shape for every REST route: `{"error": {"code": ..., "message": ...}}` with the right status (an invalid
fine-tune spec adds `fields`, a refused dataset import adds `problems`).

Engine exceptions are mapped here once, so routes just call engines and let them raise:

| exception | status | code |
|---|---|---|
| `NotAuthenticated` | 401 | not_authenticated |
| `PermissionDenied`, `OutsideDataFolder` | 403 | forbidden |
| `NotFound`, `ConversationNotFound`, `BattleNotFound`, an id past the database's range | 404 | not_found |
| `InvalidCursor` (a cursor this API did not hand out) | 400 | invalid_cursor |
| `NameTaken` (dataset names) | 409 | name_taken |
| `SpecError` (fine-tune spec) | 422 | invalid_spec, with `fields` |
| `ImportRefused` (dataset import, all or nothing) | 422 | import_refused, with `problems` |
| request validation | 422 | invalid_request, with `fields` for a body's bad fields |
| `AccountError` and other `ValueError` (the engines' input errors) | 400 | bad_request |
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import NotAuthenticated
from api.rest.pages import InvalidCursor
from engines.accounts import AccountError, PermissionDenied
from engines.conversations import ConversationNotFound
from engines.datasets.versions import ImportRefused, NameTaken
from engines.evaluation.compare import BattleNotFound
from engines.paths import OutsideDataFolder
from engines.training.spec import SpecError


class NotFound(LookupError):
    """404 for a route's own lookups (a dataset, run or evaluation id that does not exist)."""


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def _problem(p: Any) -> dict[str, Any]:
    return {"row": p.row, "kind": p.kind, "message": p.message, "severity": "error" if p.severity == "error" else "warning"}


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

    async def invalid_cursor(_: Request, exc: InvalidCursor) -> JSONResponse:
        return error_response(400, "invalid_cursor", str(exc))

    async def name_taken(_: Request, exc: NameTaken) -> JSONResponse:
        return error_response(409, "name_taken", str(exc))

    async def invalid_spec(_: Request, exc: SpecError) -> JSONResponse:
        return error_response(422, "invalid_spec", str(exc), fields=exc.fields)

    async def import_refused(_: Request, exc: ImportRefused) -> JSONResponse:
        return error_response(422, "import_refused", str(exc), problems=[_problem(p) for p in exc.report.problems[:500]])

    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        fields: dict[str, str] = {}  # a body's top-level field → its first message (as invalid_spec's `fields`)
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            if len(loc) > 1 and loc[0] == "body":
                fields.setdefault(loc[1], str(err.get("msg")))
        for err in exc.errors()[:10]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return error_response(422, "invalid_request", "; ".join(parts) or "Invalid request.", **({"fields": fields} if fields else {}))

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
    # Handlers are found along the exception's MRO: these ValueError subclasses get their own status, not 400.
    app.add_exception_handler(InvalidCursor, invalid_cursor)
    app.add_exception_handler(NameTaken, name_taken)
    app.add_exception_handler(SpecError, invalid_spec)
    app.add_exception_handler(ImportRefused, import_refused)
    app.add_exception_handler(AccountError, bad_request)
    app.add_exception_handler(ValueError, bad_request)  # the engines' own input errors (EditError, …)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)


class ProblemDetail(BaseModel):
    row: int = Field(description="The line of the imported file.")
    kind: str
    message: str
    severity: Literal["error", "warning"]


class ErrorDetail(BaseModel):
    code: str = Field(description="not_authenticated | forbidden | not_found | name_taken | bad_request | invalid_cursor "
                                  "| invalid_request | invalid_spec | import_refused | …")
    message: str = Field(description="One sentence for a person.")
    fields: dict[str, str] | None = Field(None, description="invalid_spec, and invalid_request for a body's fields: one "
                                                            "message per bad field.")
    problems: list[ProblemDetail] | None = Field(None, description="import_refused only: what is wrong, row by row "
                                                                   "(the first 500).")


class ErrorBody(BaseModel):
    error: ErrorDetail


_ERROR_TEXT = {400: "The request cannot be done as asked (the message says why).",
               401: "No key, or a key that is unknown, revoked or of a disabled account.",
               403: "Not allowed: admin-only, or not the owner.",
               404: "No such item of yours (another person's private item reads the same).",
               409: "The name is taken.",
               422: "A field is missing or has the wrong form (a fine-tune spec: `fields`; a refused import: `problems`)."}


def error_responses(*codes: int) -> dict[int | str, dict]:
    """The error statuses a router or route declares in the OpenAPI description (all with `ErrorBody`)."""
    return {code: {"model": ErrorBody, "description": _ERROR_TEXT.get(code, "Error.")} for code in codes}


ERRORS = error_responses(400, 401, 403, 404, 422)  # what every REST route may answer besides its success
