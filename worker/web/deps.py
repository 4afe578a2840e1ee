"""Shared dependencies of the routers."""

from __future__ import annotations

import hmac

from fastapi import Header, HTTPException, Request

from worker.runtime import Runtime


def runtime(request: Request) -> Runtime:
    """The process runtime opened at startup."""
    rt: Runtime = request.app.state.rt
    return rt


def operator(request: Request, authorization: str | None = Header(default=None)) -> Runtime:
    """The runtime, for a caller with the operator token (401 otherwise)."""
    rt = runtime(request)
    expected = rt.settings.operator_token or ""
    scheme, _, token = (authorization or "").partition(" ")
    if (
        scheme.lower() != "bearer"
        or not expected
        or not hmac.compare_digest(token.strip().encode(), expected.encode())
    ):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong operator token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return rt
