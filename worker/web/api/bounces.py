"""Bounce and complaint events over the operator API, newest first, filtered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from worker.bounces import queries as bounces
from worker.errors import NotFound
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.web.api.common import WEEK_PATTERN, Before, Limit, moment, page, week_of_path
from worker.web.deps import operator

router = APIRouter(tags=["bounces"])

Kind = Literal["hard", "soft", "complaint", "sender"]


@router.get("/bounces")
def list_bounces(
    rt: Runtime = Depends(operator),
    kind: Kind | None = None,
    reason: Annotated[
        str | None, Query(max_length=40, description="A reason, e.g. `userunknown`.")
    ] = None,
    since: Annotated[datetime | None, Query(description="Received at or after (ISO 8601).")] = None,
    email: Annotated[str | None, Query(max_length=320, description="The recipient.")] = None,
    week: Annotated[str | None, Query(pattern=WEEK_PATTERN, description="The edition.")] = None,
    limit: Limit = 100,
    before: Before = None,
) -> dict[str, Any]:
    """Bounce events in keyset pages (pass ``next`` as ``before``); ``total`` counts matches."""
    edition_id = None
    if since is not None:
        since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
    with rt.session() as session:
        if week is not None:
            edition = sending.get_edition(session, week_of_path(rt, week))
            if edition is None:
                raise NotFound(f"no edition for {week}")
            edition_id = edition.id
        wanted = bounces.BounceFilter(kind, reason, since, email, edition_id)
        events, total = bounces.list_bounce_events_page(session, wanted, before, limit)
        weeks = {
            i: getattr(sending.get_edition_by_id(session, i), "week", None)
            for i in {e.edition_id for e in events if e.edition_id is not None}
        }
    items = [
        {
            "id": e.id,
            "received_at": moment(e.received_at),
            "recipient": e.recipient,
            "kind": e.kind,
            "reason": e.reason,
            "delayed": e.delayed,
            "source": e.source,
            "status_code": e.status_code,
            "diagnostic": e.diagnostic,
            "week": weeks.get(e.edition_id) if e.edition_id else None,
        }
        for e in events
    ]
    return page(items, total, limit, events[-1].id if events else None)
