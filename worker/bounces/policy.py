"""What a bounce does to a subscriber (SPEC §6): a decision, pure and table-tested; recording
it and acting on it is ``worker.bounces.record``.

hard → subscriber ``bounced`` at once; complaint → ``complained`` at once; soft → ``bounced``
after ``soft_bounce_limit`` soft bounces on distinct days within ``soft_bounce_window_days``,
days counted by when we received them: a delay notice is recorded but is never a strike, and a
message accepted after a soft bounce starts the count again; sender problems and ignored
notices change nothing about the subscriber.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.bounces.classify import classify
from worker.models import SubscriberStatus


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


@dataclass(frozen=True)
class SoftBounce:
    """A soft bounce as the strike rule sees it: when we received it, and whether it was only a
    delay notice (the message is still being tried)."""

    received_at: datetime
    delayed: bool = False


def soft_strikes(
    soft_bounces: Iterable[SoftBounce],
    accepted_at: datetime | None,
    now: datetime,
    window_days: int,
) -> int:
    """Strikes against an address: distinct days, by when we received them, with a soft bounce
    that is not a delay notice, within ``window_days`` before ``now`` and after the last
    message the address accepted (``accepted_at``; None if none did)."""
    start = now - timedelta(days=window_days)
    if accepted_at is not None and accepted_at > start:
        start = accepted_at
    return len(
        {b.received_at.date() for b in soft_bounces if not b.delayed and b.received_at > start}
    )


SUPPRESS = {"hard": SubscriberStatus.bounced, "complaint": SubscriberStatus.complained}


def verdict(kind: str, delayed: bool, strikes: int, policy: Policy) -> SubscriberStatus | None:
    """What a recorded bounce does to its subscriber: the status to move them to, or None.

    ``strikes`` counts this bounce too (see ``soft_strikes``).
    """
    if kind in SUPPRESS:
        return SUPPRESS[kind]
    if kind == "soft" and not delayed and strikes >= policy.soft_bounce_limit:
        return SubscriberStatus.bounced
    return None
