"""Every query about subscribers, their consent and the suppression list.

Longer than 400 lines on purpose: every statement about subscribers is named here, in one place
for the noun, so that who may be mailed and what is kept about them can be read side by side.

Functions take a ``Session`` and leave committing to the caller.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlmodel import Session

from worker.bounces.queries import bounces_of
from worker.models import (
    BounceEvent,
    Delivery,
    Edition,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from worker.sending.tokens import keyed_digest
from worker.subscribers.rules import (
    SEPARATOR,
    SubscriberInput,
    can_move,
    email_key,
    join_categories,
    moves_into,
)


def new_token() -> str:
    """A random, unguessable public handle for a subscriber (links never carry ids)."""
    return secrets.token_urlsafe(18)


def get_subscriber_by_email(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address, compared case-insensitively."""
    return session.exec(
        select(Subscriber).where(Subscriber.email_key == email_key(email))
    ).scalar_one_or_none()


def get_subscriber_by_token(session: Session, token: str) -> Subscriber | None:
    """The subscriber a link's token names."""
    return session.exec(select(Subscriber).where(Subscriber.token == token)).scalar_one_or_none()


def get_subscriber_by_id(session: Session, subscriber_id: int) -> Subscriber | None:
    """The subscriber with this id."""
    return session.get(Subscriber, subscriber_id)


def suppression_hash(secret_key: str, email: str) -> str:
    """Keyed hash of an address, kept after erasure so it is never mailed again."""
    return keyed_digest(secret_key, email_key(email)).hex()


def is_suppressed(session: Session, secret_key: str, email: str) -> bool:
    """True when an erased address had bounced or complained."""
    digest = suppression_hash(secret_key, email)
    return (
        session.execute(select(Suppression.id).where(Suppression.email_hash == digest)).first()
        is not None
    )


@dataclass
class MergeCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


def merge_subscribers(
    session: Session, batch: Sequence[SubscriberInput], confirmed: bool, source: str
) -> MergeCounts:
    """Add new subscribers and update known ones (by case-insensitive address) in one batch.

    Known subscribers keep their status unless the row carries one; bounced and complained
    addresses are never reactivated by an import.
    """
    counts = MergeCounts()
    by_key: dict[str, SubscriberInput] = {}
    for item in batch:
        by_key[item.key] = item  # a later row for the same address wins
    existing = {
        s.email_key: s
        for s in session.execute(
            select(Subscriber).where(Subscriber.email_key.in_(list(by_key)))
        ).scalars()
    }
    now = utcnow()
    new_rows = []
    for key, item in by_key.items():
        status = item.status or (
            SubscriberStatus.active.value if confirmed else SubscriberStatus.pending.value
        )
        known = existing.get(key)
        if known is None:
            new_rows.append(
                {
                    "email": item.email,
                    "email_key": key,
                    "token": new_token(),
                    "name": item.name,
                    "status": status,
                    "categories": join_categories(item.categories),
                    "cadence": item.cadence,
                    "consent_at": item.created_at or now,
                    "consent_source": source,
                    "created_at": item.created_at or now,
                    "status_changed_at": now,
                    "confirmed_at": item.confirmed_at
                    or (now if status == SubscriberStatus.active.value else None),
                }
            )
            continue
        changed = False
        for field, value in (
            ("name", item.name),
            ("categories", join_categories(item.categories)),
            ("cadence", item.cadence),
        ):
            if value != getattr(known, field) and (value or field != "name"):
                setattr(known, field, value)
                changed = True
        wanted = item.status or (SubscriberStatus.active.value if confirmed else None)
        if wanted and wanted != known.status and can_move(known.status, wanted):
            known.status = wanted
            known.status_changed_at = now
            if wanted == SubscriberStatus.active.value and known.confirmed_at is None:
                known.confirmed_at = now
            changed = True
        if changed:
            session.add(known)
            counts.updated += 1
        else:
            counts.unchanged += 1
    if new_rows:
        session.execute(insert(Subscriber), new_rows)
        counts.added = len(new_rows)
    return counts


def iter_subscribers(session: Session, page_size: int = 1000) -> Iterator[Subscriber]:
    """Every subscriber by id, fetched in keyset pages."""
    after = 0
    while True:
        page = list(
            session.execute(
                select(Subscriber)
                .where(Subscriber.id > after)
                .order_by(Subscriber.id)
                .limit(page_size)
            ).scalars()
        )
        if not page:
            return
        yield from page
        after = page[-1].id or after


@dataclass(frozen=True)
class SubscriberFilter:
    """What the operator's subscriber list narrows to; None: any."""

    status: str | None = None
    category: str | None = None
    """Subscribers who chose this category (compared case-insensitively)."""
    cadence: str | None = None
    q: str | None = None
    """A piece of the address or the name, case-insensitively."""

    def where(self) -> list[Any]:
        """The conditions, for a select on ``Subscriber``."""
        conditions: list[Any] = []
        if self.status:
            conditions.append(Subscriber.status == self.status)
        if self.cadence:
            conditions.append(Subscriber.cadence == self.cadence)
        if self.category:
            wrapped = literal(SEPARATOR) + func.lower(Subscriber.categories) + literal(SEPARATOR)
            needle = f"%{SEPARATOR}{_like_escaped(self.category.strip().casefold())}{SEPARATOR}%"
            conditions.append(wrapped.like(needle, escape="\\"))
        if self.q:
            needle = f"%{_like_escaped(self.q.strip().casefold())}%"
            conditions.append(
                or_(
                    Subscriber.email_key.like(needle, escape="\\"),
                    func.lower(Subscriber.name).like(needle, escape="\\"),
                )
            )
        return conditions


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_subscribers_page(
    session: Session,
    after_id: int,
    limit: int,
    status: str | None = None,
    wanted: SubscriberFilter | None = None,
) -> list[Subscriber]:
    """One keyset page of subscribers with ids above ``after_id``, optionally filtered."""
    wanted = wanted or SubscriberFilter(status=status)
    query = select(Subscriber).where(Subscriber.id > after_id, *wanted.where())
    return list(session.execute(query.order_by(Subscriber.id).limit(limit)).scalars())


def count_matching(session: Session, wanted: SubscriberFilter) -> int:
    """How many subscribers the filter keeps."""
    query = select(func.count()).select_from(Subscriber).where(*wanted.where())
    return int(session.execute(query).scalar_one())


def count_subscribers(session: Session) -> dict[str, int]:
    """Number of subscribers by status."""
    rows = session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status))
    return {status: n for status, n in rows}


def list_active_page(session: Session, after_id: int, limit: int) -> list[tuple[int, str, str]]:
    """(id, categories, cadence) of active subscribers with ids above ``after_id``, by id."""
    rows = session.execute(
        select(Subscriber.id, Subscriber.categories, Subscriber.cadence)
        .where(Subscriber.id > after_id, Subscriber.status == SubscriberStatus.active.value)
        .order_by(Subscriber.id)
        .limit(limit)
    ).all()
    return [(r.id, r.categories, r.cadence) for r in rows]


def mark_accepted(session: Session, subscriber_id: int, when: datetime) -> None:
    """Remember that mail to a subscriber was accepted (a delivery notice came back)."""
    session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            or_(Subscriber.accepted_at.is_(None), Subscriber.accepted_at < when),
        )
        .values(accepted_at=when)
    )


def mark_subscriber_status(session: Session, subscriber_id: int, status: SubscriberStatus) -> bool:
    """Move a subscriber to ``status`` if the transition table (``rules.MOVES``) allows it from
    where they are; True if changed."""
    result = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.status.in_(moves_into(status)))
        .values(status=status.value, status_changed_at=utcnow())
    )
    return bool(result.rowcount)


@dataclass(frozen=True)
class Consent:
    """Where and when someone asked to subscribe (GDPR art. 7: be able to show consent)."""

    ip: str | None
    user_agent: str | None
    source: str | None


def create_pending_subscriber(
    session: Session,
    email: str,
    name: str,
    categories: str,
    cadence: str,
    consent: Consent,
    now: datetime,
) -> int:
    """Insert a pending subscriber with its consent record; returns its id."""
    subscriber = Subscriber(
        email=email,
        email_key=email_key(email),
        token=new_token(),
        name=name,
        status=SubscriberStatus.pending.value,
        categories=categories,
        cadence=cadence,
        consent_at=now,
        consent_ip=consent.ip,
        consent_user_agent=consent.user_agent,
        consent_source=consent.source,
        created_at=now,
        status_changed_at=now,
    )
    session.add(subscriber)
    session.flush()
    assert subscriber.id is not None
    return subscriber.id


def mark_subscriber_pending(
    session: Session,
    subscriber_id: int,
    name: str,
    categories: str,
    cadence: str,
    consent: Consent,
    now: datetime,
) -> None:
    """A pending or unsubscribed subscriber asks again: new choices, new consent, pending."""
    session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.status.in_(
                (SubscriberStatus.pending.value, *moves_into(SubscriberStatus.pending))
            ),
        )
        .values(
            status=SubscriberStatus.pending.value,
            status_changed_at=now,
            name=name,
            categories=categories,
            cadence=cadence,
            consent_at=now,
            consent_ip=consent.ip,
            consent_user_agent=consent.user_agent,
            consent_source=consent.source,
        )
    )


def mark_confirmation_due(
    session: Session, subscriber_id: int, now: datetime, every_s: int
) -> bool:
    """Claim the right to mail this subscriber about subscribing; False if one went out
    less than ``every_s`` ago. One conditional UPDATE, so two racing posts send one mail."""
    result = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            or_(
                Subscriber.last_confirmation_sent_at.is_(None),
                Subscriber.last_confirmation_sent_at <= now - timedelta(seconds=every_s),
            ),
        )
        .values(last_confirmation_sent_at=now)
    )
    return bool(result.rowcount)


def mark_subscriber_confirmed(session: Session, subscriber_id: int, now: datetime) -> bool:
    """Pending → active; True if this call did it (a replayed link finds it done)."""
    result = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.status == SubscriberStatus.pending.value)
        .values(status=SubscriberStatus.active.value, confirmed_at=now, status_changed_at=now)
    )
    return bool(result.rowcount)


def mark_subscriber_preferences(
    session: Session, subscriber_id: int, name: str, categories: str, cadence: str
) -> None:
    """Save a subscriber's name, categories and cadence."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(name=name, categories=categories, cadence=cadence)
    )


def mark_unsubscribe_reason(session: Session, subscriber_id: int, reason: str) -> bool:
    """Store why an unsubscribed reader left; True if stored (only while unsubscribed)."""
    result = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.status == SubscriberStatus.unsubscribed.value,
        )
        .values(unsubscribe_reason=reason)
    )
    return bool(result.rowcount)


def list_deliveries_of(session: Session, subscriber_id: int) -> list[tuple[Delivery, str]]:
    """A subscriber's deliveries with the week of their edition, oldest first."""
    rows = session.execute(
        select(Delivery, Edition.week)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def delete_subscriber(session: Session, subscriber: Subscriber) -> None:
    """Delete a subscriber with its bounce events and deliveries (children first)."""
    delivery_ids = select(Delivery.id).where(Delivery.subscriber_id == subscriber.id)
    session.execute(
        delete(BounceEvent).where(
            or_(bounces_of(subscriber), BounceEvent.delivery_id.in_(delivery_ids))
        )
    )
    session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber.id))
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))


def create_suppression(session: Session, email_hash: str, reason: str) -> None:
    """Remember a keyed hash of an address that must never be mailed again."""
    known = session.execute(
        select(Suppression.id).where(Suppression.email_hash == email_hash)
    ).first()
    if known is None:
        session.add(Suppression(email_hash=email_hash, reason=reason))
        session.flush()
