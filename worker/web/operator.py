"""The operator API: ``Authorization: Bearer <NEWSLETTER_OPERATOR_TOKEN>`` on every route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from worker.actors import actors_of
from worker.catalog.records import validate_record
from worker.catalog.service import load_comparison_records
from worker.errors import InputError, NotFound, RecordError
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending import control
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import clean_email, split_categories
from worker.web.deps import operator

router = APIRouter(prefix="/api", tags=["operator"])


class WeekBody(BaseModel):
    week: str


class TestSendBody(BaseModel):
    email: str
    week: str | None = None


@router.post("/comparisons")
def post_comparison(
    record: dict[str, Any] = Body(...), rt: Runtime = Depends(operator)
) -> JSONResponse:
    """Create or update one comparison (import format); 201 when new."""
    try:
        valid = validate_record(0, record)
    except RecordError as exc:
        return JSONResponse(
            {"detail": f"{exc.field}: {exc.problem}", "field": exc.field}, status_code=422
        )
    report = load_comparison_records(rt.engine, [valid])
    return JSONResponse(
        {"slug": valid.slug, "created": bool(report.created)},
        status_code=201 if report.created else 200,
    )


@router.post("/editions")
def post_edition(body: WeekBody, rt: Runtime = Depends(operator)) -> JSONResponse:
    """Create the edition of a week (201), or return the existing one (200)."""
    week = control.resolve_week(rt, body.week)
    edition, created = control.ensure_edition(rt, week, utcnow())
    if edition is None:
        raise InputError(f"nothing to send for {week}: no new comparisons in that week")
    return JSONResponse(control.status(rt, week).as_json(), status_code=201 if created else 200)


@router.get("/editions/{week}")
def get_edition(week: str, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """The edition's counters (the fields of ``status --json``)."""
    return control.status(rt, _week(rt, week)).as_json()


@router.get("/editions/{week}/preview", response_class=HTMLResponse)
def preview(week: str, rt: Runtime = Depends(operator)) -> HTMLResponse:
    """The edition's HTML as a sample reader sees it."""
    edition = control.get_edition(rt, _week(rt, week))
    return HTMLResponse(edition.html)


@router.post("/editions/{week}/send")
def send(week: str, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Start (or restart) sending; idempotent."""
    week = _week(rt, week)
    control.get_edition(rt, week)
    outcome = control.start_send(rt, week, utcnow(), actors_of(rt))
    return {**control.status(rt, week).as_json(), "message": outcome.message}


@router.post("/editions/{week}/pause")
def pause(week: str, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Pause sending."""
    week = _week(rt, week)
    control.pause(rt, week)
    return control.status(rt, week).as_json()


@router.post("/editions/{week}/resume")
def resume(week: str, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Resume sending and re-queue what is owed."""
    week = _week(rt, week)
    requeued = control.resume(rt, week, utcnow(), actors_of(rt))
    return {**control.status(rt, week).as_json(), "requeued": requeued}


@router.post("/editions/{week}/cancel")
def cancel(week: str, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Cancel: nothing more is sent."""
    week = _week(rt, week)
    control.cancel(rt, week)
    return control.status(rt, week).as_json()


@router.post("/test-send")
def test_send(body: TestSendBody, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Send the week's digest to one address: no delivery, ``[TEST]`` subject."""
    address = clean_email(body.email)
    week = control.resolve_week(rt, body.week)
    message_id = control.test_send(rt, address, week, utcnow())
    return {"email": address, "week": week, "message_id": message_id}


@router.get("/subscribers")
def list_subscribers(
    after: int = Query(0, ge=0, description="Return subscribers with ids above this."),
    limit: int = Query(100, ge=1, le=1000),
    status: str | None = Query(None),
    rt: Runtime = Depends(operator),
) -> dict[str, Any]:
    """One keyset page of subscribers; pass ``next`` as ``after`` for the next page."""
    with rt.session() as session:
        page = subscribers.list_subscribers_page(session, after, limit, status)
    items = [
        {
            "id": s.id,
            "email": s.email,
            "name": s.name,
            "status": s.status,
            "categories": split_categories(s.categories),
            "cadence": s.cadence,
            "created_at": s.created_at.isoformat() if s.created_at else None,
        }
        for s in page
    ]
    return {"items": items, "next": page[-1].id if len(page) == limit else None}


def _week(rt: Runtime, week: str) -> str:
    try:
        return control.resolve_week(rt, week)
    except InputError as exc:
        raise NotFound(str(exc)) from None
