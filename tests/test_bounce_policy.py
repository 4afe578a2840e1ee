"""What a bounce does to a subscriber: the decision, by table (recording it is tested in
test_bounces_intake)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.bounces.policy import (
    SUPPRESS,
    BounceFacts,
    Policy,
    SoftBounce,
    refusal_facts,
    soft_strikes,
    verdict,
)
from worker.models import SubscriberStatus

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def day(days_ago: float, delayed: bool = False) -> SoftBounce:
    return SoftBounce(NOW - timedelta(days=days_ago), delayed)


def test_the_default_policy_is_three_strikes_in_thirty_days() -> None:
    assert Policy() == Policy(soft_bounce_limit=3, soft_bounce_window_days=30)


@pytest.mark.parametrize(
    ("bounces", "accepted_days_ago", "strikes"),
    [
        ([], None, 0),
        ([day(0)], None, 1),
        ([day(0), day(0.1)], None, 1),  # one day, however many bounces
        ([day(0), day(1), day(2)], None, 3),
        ([day(0), day(1, delayed=True), day(2)], None, 2),  # a delay notice is no strike
        ([day(0), day(29.9), day(30), day(31)], None, 2),  # the window: after now - 30 days
        ([day(0), day(1), day(2)], 1.5, 2),  # a message accepted since starts the count again
        ([day(0), day(1), day(2)], 1.0, 1),  # accepted at the very moment of a bounce: after it
        ([day(0), day(1), day(2)], 40, 3),  # accepted before the window: the window rules
        ([day(0), day(1)], 0, 0),  # accepted just now, after every bounce
    ],
)
def test_strikes_are_distinct_days_in_the_window_since_the_last_acceptance(
    bounces: list[SoftBounce], accepted_days_ago: float | None, strikes: int
) -> None:
    accepted = None if accepted_days_ago is None else NOW - timedelta(days=accepted_days_ago)
    assert soft_strikes(bounces, accepted, NOW, 30) == strikes


def test_days_are_calendar_days_of_receipt() -> None:
    late = SoftBounce(datetime(2026, 11, 19, 23, 59, tzinfo=UTC))
    early = SoftBounce(datetime(2026, 11, 20, 0, 1, tzinfo=UTC))
    assert soft_strikes([late, early], None, NOW, 30) == 2


@pytest.mark.parametrize(
    ("kind", "delayed", "strikes", "status"),
    [
        ("hard", False, 0, SubscriberStatus.bounced),
        ("complaint", False, 0, SubscriberStatus.complained),
        ("soft", False, 2, None),
        ("soft", False, 3, SubscriberStatus.bounced),
        ("soft", False, 4, SubscriberStatus.bounced),
        ("soft", True, 5, None),  # a delay notice never suspends
        ("sender", False, 9, None),
        ("ignored", False, 9, None),
    ],
)
def test_the_verdict_for_each_kind(
    kind: str, delayed: bool, strikes: int, status: SubscriberStatus | None
) -> None:
    assert verdict(kind, delayed, strikes, Policy(soft_bounce_limit=3)) == status


def test_the_soft_limit_comes_from_the_policy() -> None:
    assert verdict("soft", False, 1, Policy(soft_bounce_limit=1)) == SubscriberStatus.bounced
    assert verdict("soft", False, 4, Policy(soft_bounce_limit=5)) is None


def test_only_hard_bounces_and_complaints_suppress() -> None:
    assert SUPPRESS == {"hard": SubscriberStatus.bounced, "complaint": SubscriberStatus.complained}


@pytest.mark.parametrize(
    ("code", "text", "kind", "reason"),
    [
        (550, "5.1.1 <x@example.com>: Recipient address rejected", "hard", "userunknown"),
        (550, "Requested action not taken", "hard", "userunknown"),  # no reason: a hard refusal
        (None, "refused", "hard", "userunknown"),
        (550, "", "hard", "userunknown"),  # nothing said: an undefined 5xx refusal is hard
        (500, "", "hard", "userunknown"),
        (499, "", "soft", "undefined"),
        (452, "Requested action not taken", "soft", "mailboxfull"),  # the code says why
        (552, "5.2.2 Mailbox full", "soft", "mailboxfull"),
        (554, "5.7.1 Service unavailable; client host blocked using Spamhaus", "sender", None),
    ],
)
def test_a_refusal_at_rcpt_is_classified_by_its_reply(
    code: int | None, text: str, kind: str, reason: str | None
) -> None:
    facts = refusal_facts(code, text, "x@example.com", subscriber_id=7, delivery_id=8, edition_id=9)
    assert facts.kind == kind
    if reason is not None:
        assert facts.reason == reason
    assert facts == BounceFacts(
        kind=facts.kind,
        reason=facts.reason,
        source="smtp",
        recipient="x@example.com",
        status=str(code),
        diagnostic=text,
        subscriber_id=7,
        delivery_id=8,
        edition_id=9,
    )


def test_a_temporary_refusal_without_a_reason_is_not_made_hard() -> None:
    facts = refusal_facts(450, "try again later", "x@example.com")
    assert facts.kind != "hard"
