"""Every query about bounce events and the inbound (bounce) messages already handled.

Functions take a ``Session`` and leave committing to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from worker.bounces.policy import SoftBounce
from worker.models import (
    BounceEvent,
    Delivery,
    DeliveryStatus,
    InboundMessage,
    Subscriber,
)


def create_bounce_event(session: Session, **fields: Any) -> bool:
    """Record a bounce event; False when its provider event id was seen before."""
    event_id = fields.get("provider_event_id")
    if event_id is not None:
        seen = session.execute(
            select(BounceEvent.id).where(BounceEvent.provider_event_id == event_id)
        ).first()
        if seen is not None:
            return False
    try:
        # A savepoint: the same provider event posted twice at once must lose quietly.
        with session.begin_nested():
            session.add(BounceEvent(**fields))
    except IntegrityError:
        return False
    return True


def list_soft_bounces(session: Session, subscriber_id: int, since: datetime) -> list[SoftBounce]:
    """A subscriber's soft bounces received since ``since``, as the strike rule sees them."""
    rows = session.execute(
        select(BounceEvent.received_at, BounceEvent.delayed).where(
            BounceEvent.subscriber_id == subscriber_id,
            BounceEvent.kind == "soft",
            BounceEvent.received_at >= since,
        )
    ).all()
    return [SoftBounce(row.received_at, bool(row.delayed)) for row in rows]


def get_last_accepted(session: Session, subscriber_id: int) -> datetime | None:
    """When mail to a subscriber was last accepted: the latest delivery sent that no bounce
    (other than a delay notice) came back for, or a delivery notice, whichever is later."""
    bounced = (
        select(BounceEvent.id)
        .where(BounceEvent.delivery_id == Delivery.id, BounceEvent.delayed.is_(False))
        .exists()
    )
    last_sent = session.execute(
        select(func.max(Delivery.sent_at)).where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.status == DeliveryStatus.sent.value,
            ~bounced,
        )
    ).scalar_one_or_none()
    noticed = session.execute(
        select(Subscriber.accepted_at).where(Subscriber.id == subscriber_id)
    ).scalar_one_or_none()
    known = [moment for moment in (last_sent, noticed) if moment is not None]
    return max(known) if known else None


def list_bounce_events(
    session: Session, edition_id: int | None = None, kind: str | None = None, limit: int = 1000
) -> list[BounceEvent]:
    """Bounce events, newest first, optionally of one edition or kind."""
    query = select(BounceEvent).order_by(BounceEvent.received_at.desc(), BounceEvent.id.desc())
    if edition_id is not None:
        query = query.where(BounceEvent.edition_id == edition_id)
    if kind:
        query = query.where(BounceEvent.kind == kind)
    return list(session.execute(query.limit(limit)).scalars())


@dataclass(frozen=True)
class BounceFilter:
    """What ``GET /api/bounces`` narrows the events to; None: any."""

    kind: str | None = None
    reason: str | None = None
    since: datetime | None = None
    email: str | None = None
    edition_id: int | None = None

    def where(self) -> list[Any]:
        """The conditions, for a select on ``BounceEvent``."""
        conditions: list[Any] = []
        if self.kind:
            conditions.append(BounceEvent.kind == self.kind)
        if self.reason:
            conditions.append(BounceEvent.reason == self.reason)
        if self.since is not None:
            conditions.append(BounceEvent.received_at >= self.since)
        if self.email:
            conditions.append(func.lower(BounceEvent.recipient) == self.email.strip().casefold())
        if self.edition_id is not None:
            conditions.append(BounceEvent.edition_id == self.edition_id)
        return conditions


def list_bounce_events_page(
    session: Session, wanted: BounceFilter, before_id: int | None, limit: int
) -> tuple[list[BounceEvent], int]:
    """One keyset page of the events ``wanted`` names, newest first, and how many match."""
    conditions = wanted.where()
    query = select(BounceEvent).where(*conditions).order_by(BounceEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(BounceEvent.id < before_id)
    total = session.execute(select(func.count()).select_from(BounceEvent).where(*conditions))
    return list(session.execute(query).scalars()), int(total.scalar_one())


def count_bounce_reasons(session: Session) -> dict[tuple[str, str], int]:
    """Every bounce event on record by (kind, reason)."""
    rows = session.execute(
        select(BounceEvent.kind, BounceEvent.reason, func.count()).group_by(
            BounceEvent.kind, BounceEvent.reason
        )
    )
    return {(kind, reason): int(n) for kind, reason, n in rows}


def count_bounce_kinds(session: Session, edition_id: int) -> dict[str, int]:
    """Bounce events of an edition by kind."""
    rows = session.execute(
        select(BounceEvent.kind, func.count())
        .where(BounceEvent.edition_id == edition_id)
        .group_by(BounceEvent.kind)
    )
    return {kind: int(n) for kind, n in rows}


def bounces_of(subscriber: Subscriber) -> Any:
    # Events matched to the row, and those that only name the address (unmatched DSNs).
    return or_(
        BounceEvent.subscriber_id == subscriber.id,
        func.lower(BounceEvent.recipient) == subscriber.email_key,
    )


def list_bounce_events_of(session: Session, subscriber: Subscriber) -> list[BounceEvent]:
    """Every bounce event about a subscriber, oldest first."""
    return list(
        session.execute(
            select(BounceEvent).where(bounces_of(subscriber)).order_by(BounceEvent.id)
        ).scalars()
    )


def remember_inbound(
    session: Session, key: str, outcome: str, reason: str, raw: bytes | None
) -> bool:
    """Remember that an inbound (bounce) message was handled; False if it was already."""
    if session.execute(select(InboundMessage.id).where(InboundMessage.key == key)).first():
        return False
    session.add(InboundMessage(key=key, outcome=outcome, reason=reason[:1000], raw=raw))
    session.flush()
    return True


def update_inbound(session: Session, key: str, outcome: str, reason: str) -> None:
    """Record how an inbound message ended up (unmatched, forged...)."""
    session.execute(
        update(InboundMessage)
        .where(InboundMessage.key == key)
        .values(outcome=outcome, reason=reason[:1000])
    )
