"""What a bounce does to a subscriber and a delivery (SPEC §6, issue policy defaults).

hard → subscriber ``bounced`` at once; complaint → ``complained`` at once; soft → ``bounced``
after ``soft_bounce_limit`` soft bounces on distinct days within ``soft_bounce_window_days``
(a successful delivery resets the count); sender problems and ignored notices change nothing
about the subscriber.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from worker import store
from worker.bounces.classify import classify
from worker.models import DeliveryStatus, SubscriberStatus, utcnow


@dataclass(frozen=True)
class BounceFacts:
    """A detected bounce, matched (as far as possible) to our rows."""

    kind: str
    reason: str
    source: str
    recipient: str
    status: str | None
    diagnostic: str
    subscriber_id: int | None = None
    delivery_id: int | None = None
    edition_id: int | None = None
    provider_event_id: str | None = None
    received_at: datetime | None = None
    delayed: bool = False  # a delay notice: recorded, never a strike


@dataclass(frozen=True)
class Policy:
    """The thresholds, from settings."""

    soft_bounce_limit: int = 3
    soft_bounce_window_days: int = 30


@dataclass(frozen=True)
class Outcome:
    """What recording a bounce did."""

    recorded: bool
    subscriber_status: str | None = None


def refusal_facts(
    code: int | None,
    text: str,
    recipient: str,
    subscriber_id: int | None = None,
    delivery_id: int | None = None,
    edition_id: int | None = None,
) -> BounceFacts:
    """A 5xx at RCPT, as a bounce: classified by its reply like any other bounce.

    The contract makes a refused recipient a hard bounce unless the reply says otherwise
    (a full mailbox, a block of our sender, a complaint).
    """
    found = classify(None, text, code)
    kind: str = found.kind
    reason = found.reason
    if reason in ("onhold", "undefined") and (code is None or code >= 500):
        kind, reason = "hard", "userunknown"  # refused at RCPT for no other reason
    return BounceFacts(
        kind=kind,
        reason=reason,
        source="smtp",
        recipient=recipient,
        status=str(code),
        diagnostic=text,
        subscriber_id=subscriber_id,
        delivery_id=delivery_id,
        edition_id=edition_id,
    )


_SUPPRESS = {"hard": SubscriberStatus.bounced, "complaint": SubscriberStatus.complained}


def record_bounce(session: Session, facts: BounceFacts, policy: Policy) -> Outcome:
    """Record the event once, then act on the subscriber and the delivery."""
    if facts.kind == "ignored":
        return Outcome(recorded=False)
    received_at = facts.received_at or utcnow()
    recorded = store.create_bounce_event(
        session,
        subscriber_id=facts.subscriber_id,
        delivery_id=facts.delivery_id,
        edition_id=facts.edition_id,
        recipient=facts.recipient,
        kind=facts.kind,
        reason=facts.reason,
        source=facts.source,
        status_code=facts.status,
        diagnostic=facts.diagnostic[:4000],
        received_at=received_at,
        provider_event_id=facts.provider_event_id,
    )
    if not recorded or facts.subscriber_id is None:
        return Outcome(recorded=recorded)
    if facts.delivery_id is not None and facts.kind in ("hard", "complaint"):
        store.mark_delivery(
            session,
            facts.delivery_id,
            DeliveryStatus.bounced,
            error=f"{facts.kind}: {facts.diagnostic}"[:1000],
            only_from=(
                DeliveryStatus.sent.value,
                DeliveryStatus.sending.value,
                DeliveryStatus.queued.value,
                DeliveryStatus.failed.value,
            ),
        )
    status = _SUPPRESS.get(facts.kind)
    if status is None and facts.kind == "soft" and not facts.delayed:
        since = received_at - timedelta(days=policy.soft_bounce_window_days)
        days = store.count_soft_bounce_days(session, facts.subscriber_id, since)
        if days >= policy.soft_bounce_limit:
            status = SubscriberStatus.bounced
    if status is None:
        return Outcome(recorded=True)
    # A complaint outranks a bounce; nothing brings back a complained address silently.
    allowed = [s.value for s in SubscriberStatus if s is not SubscriberStatus.complained]
    store.mark_subscriber_status(session, facts.subscriber_id, status, only_from=allowed)
    return Outcome(recorded=True, subscriber_status=status.value)
