"""Shared dependencies of the routers."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from worker.runtime import Runtime

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="operatorToken",
    description="`NEWSLETTER_OPERATOR_TOKEN` (printed by `newsletter up`); `/metrics` takes "
    "`NEWSLETTER_METRICS_TOKEN` instead when it is set.",
)
"""The bearer scheme, declared in the OpenAPI document (so ``/docs`` offers "Authorize")."""


def runtime(request: Request) -> Runtime:
    """The process runtime opened at startup."""
    rt: Runtime = request.app.state.rt
    return rt


def _matches(credentials: HTTPAuthorizationCredentials | None, *tokens: str | None) -> bool:
    """True when the bearer token is one of ``tokens``, compared in constant time."""
    if credentials is None:
        return False
    given = credentials.credentials.strip().encode()
    found = False
    for token in tokens:
        if token and hmac.compare_digest(given, token.encode()):
            found = True
    return found


def _refuse(what: str) -> HTTPException:
    return HTTPException(
        status_code=401, detail=f"missing or wrong {what}", headers={"WWW-Authenticate": "Bearer"}
    )


def operator(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> Runtime:
    """The runtime, for a caller with the operator token (401 otherwise)."""
    rt = runtime(request)
    if not _matches(credentials, rt.settings.operator_token):
        raise _refuse("operator token")
    return rt


def metrics_reader(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> Runtime:
    """The runtime, for a caller with the metrics token, or the operator token when no metrics
    token is set (401 otherwise): a scraper's token opens nothing else, and once it is set the
    operator token is not needed, nor taken, to read metrics."""
    rt = runtime(request)
    if rt.settings.metrics_token:
        if not _matches(credentials, rt.settings.metrics_token):
            raise _refuse("metrics token")
    elif not _matches(credentials, rt.settings.operator_token):
        raise _refuse("operator token")
    return rt
