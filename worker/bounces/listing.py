"""Recent bounce events for the console, filtered by kind and reason, readers' problems apart
from the sender's own."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import Session

from worker.models import BounceEvent

SENDER_KINDS = ("sender",)
"""Kinds that say something about us (our IP, content, authentication), not the reader."""


def list_recent_bounces(
    session: Session,
    kind: str = "",
    reason: str = "",
    sender_side: bool | None = None,
    limit: int = 100,
) -> tuple[list[BounceEvent], int]:
    """The newest bounce events matching the filters, and how many match in all."""
    conditions = []
    if kind:
        conditions.append(BounceEvent.kind == kind)
    if reason:
        conditions.append(BounceEvent.reason == reason)
    if sender_side is True:
        conditions.append(BounceEvent.kind.in_(SENDER_KINDS))
    elif sender_side is False:
        conditions.append(BounceEvent.kind.not_in(SENDER_KINDS))
    total = session.execute(
        select(func.count()).select_from(BounceEvent).where(*conditions)
    ).scalar_one()
    rows = session.execute(
        select(BounceEvent)
        .where(*conditions)
        .order_by(BounceEvent.received_at.desc(), BounceEvent.id.desc())
        .limit(limit)
    ).scalars()
    return list(rows), int(total)


def list_bounce_reasons(session: Session) -> list[str]:
    """Every reason some bounce event has, sorted (the filter's choices)."""
    return sorted(set(session.execute(select(BounceEvent.reason).distinct()).scalars()))
