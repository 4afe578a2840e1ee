"""Errors on reader paths as HTML pages in the site's layout, never raw JSON.

Installed last by ``create_app``: each handler answers a reader path itself and hands any
other path (the operator API, webhooks, health and metrics) to the handler that was in place
before, so machine clients keep their error bodies.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.errors import InputError, InvalidToken, NewsletterError, NotFound
from worker.web.pages import page

log = logging.getLogger(__name__)

MACHINE_PATHS = ("/api", "/webhooks", "/healthz", "/metrics", "/openapi.json", "/docs", "/redoc")
"""Paths whose callers are programs: their errors stay as they are."""

Handler = Callable[[Request, Exception], Response | Awaitable[Response]]

_TEXTS = {
    400: ("This request is not right", "Something in the address or the form is not right."),
    404: (
        "Page not found",
        "There is no page at this address. It may have moved, or the link may be cut short.",
    ),
    405: ("Not allowed here", "This page does not take that kind of request."),
    422: ("This request is not right", "Something in the address or the form is not right."),
    429: ("Too many requests", "Please wait a minute and try again."),
    500: (
        "Something went wrong on our side",
        "We could not show this page. Please try again in a few minutes.",
    ),
    503: (
        "We are briefly unavailable",
        "We could not show this page right now. Please try again in a few minutes.",
    ),
}


def for_readers(request: Request) -> bool:
    """True when the path is a reader's (a person with a browser), not a program's."""
    path = request.url.path
    return not any(path == p or path.startswith(p + "/") for p in MACHINE_PATHS)


def error_page(request: Request, status_code: int) -> Response:
    """The site's error page for ``status_code``."""
    heading, text = _TEXTS.get(
        status_code,
        (
            HTTPStatus(status_code).phrase
            if status_code in HTTPStatus._value2member_map_
            else "Something went wrong",
            "This page could not be shown.",
        ),
    )
    rt = getattr(request.app.state, "rt", None)
    site_url = rt.settings.site_url if rt is not None else None
    response = page(
        request, "error.html", status_code, heading=heading, text=text, site_url=site_url
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _status_of(exc: Exception) -> int:
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, RequestValidationError | InputError | InvalidToken):
        return 400 if isinstance(exc, InvalidToken) else 422
    if isinstance(exc, NewsletterError):
        return 503
    return 500


async def _server_error(_request: Request, _exc: Exception) -> Response:
    return PlainTextResponse("Internal Server Error", status_code=500)


def _wrap(previous: Handler | None) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        if for_readers(request):
            status_code = _status_of(exc)
            if status_code >= 500:
                log.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
            response = error_page(request, status_code)
            if isinstance(exc, StarletteHTTPException) and exc.headers:
                response.headers.update(exc.headers)
            return response
        answer = (previous or _server_error)(request, exc)
        return await answer if isinstance(answer, Awaitable) else answer

    return handle


def install(app: FastAPI) -> None:
    """HTML error pages for reader paths; every other path keeps the handler it had."""
    for exc_class in (
        StarletteHTTPException,
        RequestValidationError,
        NotFound,
        InputError,
        InvalidToken,
        NewsletterError,
        Exception,
    ):
        app.add_exception_handler(exc_class, _wrap(app.exception_handlers.get(exc_class)))
