"""RFC 9457 problem details for the operator API: every error under ``/api`` (and ``/metrics``)
is ``application/problem+json`` with ``type``, ``title``, ``status`` and ``detail``; a 422 also
names the field(s) at fault (``field``, and ``errors`` with one entry per field).

The handlers wrap the ones the app had before: a path outside the API (reader pages) keeps the
answer its own handler gives, so install them last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

from worker.errors import Conflict, InputError, NewsletterError, NotFound

MEDIA_TYPE = "application/problem+json"
PREFIXES = ("/api/", "/metrics")
"""Paths whose errors are problem details; the reader pages answer in HTML."""

TYPES = {
    400: "/problems/bad-request",
    401: "/problems/unauthorized",
    404: "/problems/not-found",
    405: "/problems/method-not-allowed",
    409: "/problems/conflict",
    422: "/problems/invalid-input",
    500: "/problems/internal-error",
    503: "/problems/unavailable",
}
"""One ``type`` per kind of problem (relative URIs, resolved against the API's own address)."""

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE


def problem(
    status: int,
    detail: str,
    errors: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    """A problem-details answer; ``errors`` (``{"field", "message"}``) for a 422."""
    body: dict[str, Any] = {
        "type": TYPES.get(status, "about:blank"),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["field"] = errors[0]["field"]
        body["errors"] = list(errors)
    return ProblemResponse(body, status_code=status, headers=headers)


def _field_of(loc: Sequence[Any]) -> str:
    """``("body", "tools", 1, "pricing")`` → ``tools[1].pricing``; the part is left out."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or (str(loc[0]) if loc else "body")


def _validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    return [
        {"field": _field_of(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
        for e in exc.errors()
    ]


def _input_errors(exc: InputError) -> list[dict[str, str]]:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict):
        return [{"field": k, "message": v} for k, v in errors.items()]
    field = getattr(exc, "field", None)
    if field is None:
        # Our checks say "field: problem" (``clean_email``, ``parse_week`` callers...).
        head, sep, _rest = str(exc).partition(": ")
        field = head if sep and head.replace("_", "").isalnum() else "body"
    return [{"field": field, "message": str(exc)}]


def to_problem(exc: Exception) -> ProblemResponse:
    """The problem-details answer for an error raised under the API."""
    if isinstance(exc, RequestValidationError):
        errors = _validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid input"
        return problem(422, detail, errors)
    if isinstance(exc, HTTPException):
        return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    if isinstance(exc, NotFound):
        return problem(404, str(exc))
    if isinstance(exc, Conflict):
        return problem(409, str(exc))
    if isinstance(exc, InputError):
        return problem(422, str(exc), _input_errors(exc))
    return problem(503, str(exc))


def install(app: FastAPI) -> None:
    """Answer errors under the API with problem details; other paths keep their handlers."""
    before = dict(app.exception_handlers)

    async def handle(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(PREFIXES):
            return to_problem(exc)
        for cls in type(exc).__mro__:
            previous = before.get(cls)
            if previous is not None:
                answer = previous(request, exc)
                return await answer if isinstance(answer, Awaitable) else answer
        raise exc

    handled = (HTTPException, RequestValidationError, NewsletterError, NotFound, Conflict)
    for cls in (*handled, InputError):
        app.add_exception_handler(cls, handle)

    async def crashed(request: Request, exc: Exception) -> Response:
        # Starlette logs the exception after this answer, whatever the path.
        if request.url.path.startswith(PREFIXES):
            return problem(500, "internal error: the server's log has the details")
        return PlainTextResponse("Internal Server Error", status_code=500)

    if Exception not in before:
        app.add_exception_handler(Exception, crashed)
