"""The operator API: ``Authorization: Bearer <NEWSLETTER_OPERATOR_TOKEN>`` on every route.

This module holds the comparisons and the test send, and gathers the routers of
``worker.web.api`` (editions, subscribers, bounces) under ``/api``. Errors are problem details
(``worker.web.problems``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from worker.catalog.records import validate_record
from worker.catalog.service import load_comparison_records
from worker.errors import FieldError, InputError
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending import control
from worker.subscribers.rules import clean_email
from worker.web.api import bounces, editions, subscribers
from worker.web.deps import operator

router = APIRouter(prefix="/api", dependencies=[Depends(operator)])


class TestSendBody(BaseModel):
    email: str = Field(max_length=320)
    week: str | None = Field(default=None, pattern=r"^\d{4}-W\d{2}$", examples=["2026-W48"])


@router.post("/comparisons", tags=["comparisons"])
def post_comparison(
    record: dict[str, Any] = Body(...), rt: Runtime = Depends(operator)
) -> JSONResponse:
    """Create or update one comparison (import format); 201 when new."""
    valid = validate_record(0, record)  # a RecordError is a 422 naming its field
    report = load_comparison_records(rt.engine, [valid])
    return JSONResponse(
        {"slug": valid.slug, "created": bool(report.created)},
        status_code=201 if report.created else 200,
    )


@router.post("/test-send", tags=["editions"])
def test_send(body: TestSendBody, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Send the week's digest to one address: no delivery, ``[TEST]`` subject."""
    try:
        address = clean_email(body.email)
        week = control.resolve_week(rt, body.week)
    except InputError as exc:
        field = "email" if str(exc).startswith("email") else "week"
        raise FieldError({field: str(exc)}) from None
    message_id = control.test_send(rt, address, week, utcnow())
    return {"email": address, "week": week, "message_id": message_id}


router.include_router(editions.router)
router.include_router(subscribers.router)
router.include_router(bounces.router)
