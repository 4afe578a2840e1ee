"""What the console reads about editions in progress: counts of many editions at once, when
each message went, the last errors grouped by reply, and uncertain sends. Read-only queries;
every write about editions stays in ``worker.sending.queries``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlmodel import Session

from worker.models import BounceEvent, Delivery, DeliveryStatus, Edition, Subscriber
from worker.sending.queries import COUNTED


def _aware(moment: datetime) -> datetime:
    # SQLite hands times back naive; every time we store is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def list_editions_page(session: Session, offset: int, limit: int) -> tuple[list[Edition], int]:
    """One page of editions and alerts, newest first, and how many there are."""
    total = session.execute(select(func.count()).select_from(Edition)).scalar_one()
    rows = session.execute(
        select(Edition)
        .order_by(Edition.created_at.desc(), Edition.id.desc())
        .offset(offset)
        .limit(limit)
    ).scalars()
    return list(rows), int(total)


def count_deliveries_of(session: Session, edition_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Deliveries by status for each of ``edition_ids`` (every status present)."""
    counts = {edition_id: dict.fromkeys(COUNTED, 0) for edition_id in edition_ids}
    if not edition_ids:
        return counts
    rows = session.execute(
        select(Delivery.edition_id, Delivery.status, func.count())
        .where(Delivery.edition_id.in_(tuple(edition_ids)))
        .group_by(Delivery.edition_id, Delivery.status)
    )
    for edition_id, status, n in rows:
        counts[edition_id][status] = int(n)
    return counts


def count_bounce_kinds_of(
    session: Session, edition_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """Bounce events by kind for each of ``edition_ids``."""
    counts: dict[int, dict[str, int]] = {edition_id: {} for edition_id in edition_ids}
    if not edition_ids:
        return counts
    rows = session.execute(
        select(BounceEvent.edition_id, BounceEvent.kind, func.count())
        .where(BounceEvent.edition_id.in_(tuple(edition_ids)))
        .group_by(BounceEvent.edition_id, BounceEvent.kind)
    )
    for edition_id, kind, n in rows:
        counts[edition_id][kind] = int(n)
    return counts


def count_sent_since(
    session: Session, edition_ids: Sequence[int], since: datetime
) -> dict[int, int]:
    """Messages of each edition the server took since ``since``."""
    if not edition_ids:
        return {}
    rows = session.execute(
        select(Delivery.edition_id, func.count())
        .where(
            Delivery.edition_id.in_(tuple(edition_ids)),
            Delivery.status == DeliveryStatus.sent.value,
            Delivery.sent_at >= since,
        )
        .group_by(Delivery.edition_id)
    )
    return {edition_id: int(n) for edition_id, n in rows}


def list_sent_times(session: Session, edition_id: int) -> list[datetime]:
    """When each message of the edition was taken by the server, oldest first."""
    rows = session.execute(
        select(Delivery.sent_at)
        .where(Delivery.edition_id == edition_id, Delivery.sent_at.is_not(None))
        .order_by(Delivery.sent_at)
    ).scalars()
    return [_aware(moment) for moment in rows]


@dataclass(frozen=True)
class ErrorGroup:
    """Deliveries of an edition that got the same last reply."""

    reply: str
    count: int
    statuses: str


def list_error_groups(session: Session, edition_id: int, limit: int = 20) -> list[ErrorGroup]:
    """The last replies of failed, bounced and retrying deliveries, most frequent first."""
    rows = session.execute(
        select(
            Delivery.last_error,
            func.count(),
            func.min(Delivery.status),
            func.max(Delivery.status),
        )
        .where(
            Delivery.edition_id == edition_id,
            Delivery.last_error.is_not(None),
            Delivery.status.in_(
                (
                    DeliveryStatus.failed.value,
                    DeliveryStatus.bounced.value,
                    DeliveryStatus.queued.value,
                )
            ),
        )
        .group_by(Delivery.last_error)
        .order_by(func.count().desc())
        .limit(limit)
    )
    return [
        ErrorGroup(reply, int(n), low if low == high else f"{low}, {high}")
        for reply, n, low, high in rows
    ]


@dataclass(frozen=True)
class UncertainSend:
    """A delivery whose final reply never came at least once."""

    delivery_id: int
    subscriber_id: int
    email: str
    status: str
    uncertain: int
    last_error: str | None


def list_uncertain(session: Session, edition_id: int, limit: int = 50) -> list[UncertainSend]:
    """Deliveries of the edition with uncertain attempts (SPEC §6: in flight)."""
    rows = session.execute(
        select(
            Delivery.id,
            Delivery.subscriber_id,
            Subscriber.email,
            Delivery.status,
            Delivery.uncertain,
            Delivery.last_error,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.edition_id == edition_id, Delivery.uncertain > 0)
        .order_by(Delivery.id)
        .limit(limit)
    )
    return [UncertainSend(*row) for row in rows]
