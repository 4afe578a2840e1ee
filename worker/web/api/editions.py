"""Editions over the operator API: list, read, preview, create, send, pause, resume, cancel,
retry. State-machine refusals are 409 problems; an unknown week is 404, a malformed one 422."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from worker.actors import actors_of
from worker.errors import Conflict, FieldError, InputError
from worker.models import Edition, EditionStatus, utcnow
from worker.runtime import Runtime
from worker.sending import control
from worker.sending import queries as sending
from worker.web.api.common import Before, Limit, Week, moment, page, week_of_path
from worker.web.deps import operator

router = APIRouter(tags=["editions"])


class WeekBody(BaseModel):
    week: str = Field(pattern=r"^\d{4}-W\d{2}$", examples=["2026-W48"])
    intro: str | None = Field(
        default=None,
        max_length=control.INTRO_MAX,
        description="The editor's one-line intro for this edition (default: the configured one).",
    )


class EditionChanges(BaseModel):
    intro: str = Field(
        max_length=control.INTRO_MAX,
        description='The editor\'s one-line intro; "" goes back to the configured one. Only '
        "while the edition is a draft or paused.",
    )


def edition_json(rt: Runtime, edition: Edition) -> dict[str, Any]:
    """An edition as the list shows it: the counters of ``status --json`` and its times."""
    return {
        **control.status(rt, edition.week).as_json(),
        "kind": edition.kind,
        "subject": edition.subject,
        "pause_reason": edition.pause_reason,
        "created_at": moment(edition.created_at),
        "started_at": moment(edition.started_at),
        "finished_at": moment(edition.finished_at),
    }


@router.get("/editions")
def list_editions(
    rt: Runtime = Depends(operator), limit: Limit = 20, before: Before = None
) -> dict[str, Any]:
    """Editions and alerts, newest first, in keyset pages (pass ``next`` as ``before``)."""
    with rt.session() as session:
        editions = sending.list_editions_page(session, before, limit)
        total = sending.count_editions(session)
    items = [edition_json(rt, e) for e in editions]
    return page(items, total, limit, editions[-1].id if editions else None)


@router.post("/editions", status_code=201)
def post_edition(body: WeekBody, rt: Runtime = Depends(operator)) -> JSONResponse:
    """Create the edition of a week (201), or return the existing one (200)."""
    try:
        week = control.resolve_week(rt, body.week)
    except InputError as exc:
        raise FieldError({"week": str(exc)}) from None
    edition, created = control.ensure_edition(rt, week, utcnow())
    if edition is None:
        raise FieldError({"week": f"nothing to send for {week}: no new comparisons in that week"})
    if body.intro is not None:
        _set_intro(rt, week, body.intro)
    return JSONResponse(control.status(rt, week).as_json(), status_code=201 if created else 200)


def _set_intro(rt: Runtime, week: str, intro: str) -> str:
    try:
        return control.set_intro(rt, week, intro)
    except InputError as exc:
        raise FieldError({"intro": str(exc).removeprefix("intro: ")}) from None


@router.patch("/editions/{week}")
def patch_edition(
    week: Week, body: EditionChanges, rt: Runtime = Depends(operator)
) -> dict[str, Any]:
    """Change an edition's intro (a draft or a paused edition; 409 otherwise)."""
    week = week_of_path(rt, week)
    intro = _set_intro(rt, week, body.intro)
    return {**control.status(rt, week).as_json(), "intro": intro}


@router.get("/editions/{week}")
def get_edition(week: Week, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """The edition's counters (the fields of ``status --json``)."""
    return control.status(rt, week_of_path(rt, week)).as_json()


@router.get("/editions/{week}/preview", response_class=HTMLResponse)
def preview(week: Week, rt: Runtime = Depends(operator)) -> HTMLResponse:
    """The edition's HTML as a sample reader sees it."""
    edition = control.get_edition(rt, week_of_path(rt, week))
    return HTMLResponse(edition.html)


@router.post("/editions/{week}/send")
def send(week: Week, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Start (or restart) sending; idempotent. 409 for a paused or cancelled edition."""
    week = week_of_path(rt, week)
    edition = control.get_edition(rt, week)
    if edition.status == EditionStatus.cancelled.value:
        raise Conflict(f"the {week} edition is cancelled: it cannot be sent")
    outcome = control.start_send(rt, week, utcnow(), actors_of(rt))
    return {**control.status(rt, week).as_json(), "message": outcome.message}


@router.post("/editions/{week}/pause")
def pause(week: Week, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Pause sending: workers stop taking its deliveries."""
    week = week_of_path(rt, week)
    changed = control.pause(rt, week)
    return {**control.status(rt, week).as_json(), "changed": changed}


@router.post("/editions/{week}/resume")
def resume(week: Week, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Resume sending and re-queue what is owed."""
    week = week_of_path(rt, week)
    requeued = control.resume(rt, week, utcnow(), actors_of(rt))
    return {**control.status(rt, week).as_json(), "requeued": requeued}


@router.post("/editions/{week}/cancel")
def cancel(week: Week, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Cancel: what is not sent yet is skipped."""
    week = week_of_path(rt, week)
    skipped = control.cancel(rt, week)
    return {**control.status(rt, week).as_json(), "skipped_now": skipped}


@router.post("/editions/{week}/retry")
def retry(week: Week, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Queue the edition's failed deliveries again."""
    week = week_of_path(rt, week)
    requeued = control.retry_failed(rt, week, utcnow(), actors_of(rt))
    return {**control.status(rt, week).as_json(), "requeued": requeued}
