"""A reader's data: everything stored about them, exported (GDPR art. 15 and 20) or erased
(art. 17), from the preferences page, the operator API, the console and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from worker.bounces import queries as bounces
from worker.errors import NotFound
from worker.models import Subscriber, utcnow
from worker.runtime import Runtime
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import NEVER_AGAIN, split_categories


def _moment(value: datetime | None) -> str | None:
    if value is None:
        return None
    # SQLite hands times back naive; every time we store is UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in obj.model_dump().items():
        if name in skip:
            continue
        out[name] = _moment(value) if isinstance(value, datetime) else value
    return out


def export_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about one subscriber, as JSON-ready data (GDPR art. 15 and 20)."""
    assert subscriber.id is not None
    row = _row(subscriber)
    consent = {
        key: row.pop(key)
        for key in ("consent_at", "consent_ip", "consent_user_agent", "consent_source")
    }
    row["categories"] = split_categories(subscriber.categories)
    return {
        "exported_at": _moment(utcnow()),
        "subscriber": row,
        "consent": consent,
        "deliveries": [
            {**_row(d, skip=("subscriber_id",)), "edition": week}
            for d, week in subscribers.list_deliveries_of(session, subscriber.id)
        ],
        "bounce_events": [
            _row(b, skip=("subscriber_id",))
            for b in bounces.list_bounce_events_of(session, subscriber)
        ],
    }


def export_subscriber(rt: Runtime, email: str) -> dict[str, Any]:
    """Everything stored about ``email``; NotFound when no subscriber has it."""
    with rt.session() as session:
        subscriber = subscribers.get_subscriber_by_email(session, email)
        if subscriber is None:
            raise NotFound(f"no subscriber {email}")
        return export_data(session, subscriber)


def erase(session: Session, secret_key: str, subscriber: Subscriber) -> str | None:
    """Delete a subscriber and what points at them (GDPR art. 17).

    An address that bounced hard or complained leaves a keyed hash behind, so that a later
    import or form post can never mail it again. Returns that suppression reason, if any.
    """
    reason: str | None = subscriber.status if subscriber.status in NEVER_AGAIN else None
    if reason is None:
        kinds = {b.kind for b in bounces.list_bounce_events_of(session, subscriber)}
        reason = "complained" if "complaint" in kinds else "bounced" if "hard" in kinds else None
    if reason is not None:
        subscribers.create_suppression(
            session, subscribers.suppression_hash(secret_key, subscriber.email), reason
        )
    subscribers.delete_subscriber(session, subscriber)
    return reason


def erase_subscriber(rt: Runtime, email: str) -> bool:
    """Erase everything stored about ``email``; False when no subscriber has it."""
    with rt.session() as session, session.begin():
        subscriber = subscribers.get_subscriber_by_email(session, email)
        if subscriber is None:
            return False
        erase(session, rt.secret_key, subscriber)
    return True
