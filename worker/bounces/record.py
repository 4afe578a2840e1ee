"""Recording a bounce and acting on it: the event once (by provider event id), the delivery,
and the subscriber as ``policy.verdict`` decides."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from worker.bounces import queries as bounces
from worker.bounces.policy import SUPPRESS, BounceFacts, Outcome, Policy, soft_strikes, verdict
from worker.config import Settings
from worker.models import DeliveryStatus, utcnow
from worker.sending import queries as sending
from worker.subscribers import queries as subscribers


def policy_of(settings: Settings) -> Policy:
    """The bounce policy the settings describe."""
    return Policy(settings.soft_bounce_limit, settings.soft_bounce_window_days)


def record_bounce(session: Session, facts: BounceFacts, policy: Policy) -> Outcome:
    """Record the event once, then act on the delivery and the subscriber.

    A delivery notice records nothing but that the address accepted mail (which starts the
    soft-bounce count again); other ignored notices (auto-replies) record nothing at all.
    """
    received_at = facts.received_at or utcnow()
    if facts.reason == "delivered":
        if facts.subscriber_id is not None:
            subscribers.mark_accepted(session, facts.subscriber_id, received_at)
        return Outcome(recorded=False)
    if facts.kind == "ignored":
        return Outcome(recorded=False)
    recorded = bounces.create_bounce_event(
        session,
        subscriber_id=facts.subscriber_id,
        delivery_id=facts.delivery_id,
        edition_id=facts.edition_id,
        recipient=facts.recipient,
        kind=facts.kind,
        reason=facts.reason,
        delayed=facts.delayed,
        source=facts.source,
        status_code=facts.status,
        diagnostic=facts.diagnostic[:4000],
        received_at=received_at,
        provider_event_id=facts.provider_event_id,
    )
    if not recorded or facts.subscriber_id is None:
        return Outcome(recorded=recorded)
    if facts.delivery_id is not None and facts.kind in SUPPRESS:
        sending.mark_delivery(
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
    strikes = 0
    if facts.kind == "soft" and not facts.delayed:
        window_start = received_at - timedelta(days=policy.soft_bounce_window_days)
        strikes = soft_strikes(
            bounces.list_soft_bounces(session, facts.subscriber_id, window_start),
            bounces.get_last_accepted(session, facts.subscriber_id),
            received_at,
            policy.soft_bounce_window_days,
        )
    status = verdict(facts.kind, facts.delayed, strikes, policy)
    if status is None:
        return Outcome(recorded=True)
    subscribers.mark_subscriber_status(session, facts.subscriber_id, status)
    return Outcome(recorded=True, subscriber_status=status.value)
