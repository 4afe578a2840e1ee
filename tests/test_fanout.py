"""Who gets a delivery row of an edition and why one is skipped: the fan-out rules, by table."""

from __future__ import annotations

import pytest

from worker.models import DeliveryStatus
from worker.sending.fanout import (
    QUEUED,
    SKIP_CANCELLED,
    SKIP_INSTANT,
    SKIP_NO_MATCH,
    Row,
    row_for,
    skip_at_send,
)

SKIPPED = DeliveryStatus.skipped


@pytest.mark.parametrize(
    ("kind", "cadence", "has_picks", "row"),
    [
        # A digest: every weekly reader with a match is queued; the others are counted, skipped.
        ("digest", "weekly", True, Row(DeliveryStatus.queued)),
        ("digest", "weekly", False, Row(SKIPPED, SKIP_NO_MATCH)),
        ("digest", "instant", True, Row(SKIPPED, SKIP_INSTANT)),
        ("digest", "instant", False, Row(SKIPPED, SKIP_INSTANT)),
        # An alert: only the instant readers who follow its category get a row at all.
        ("alert", "instant", True, Row(DeliveryStatus.queued)),
        ("alert", "instant", False, None),
        ("alert", "weekly", True, None),
        ("alert", "weekly", False, None),
    ],
)
def test_the_row_a_subscriber_gets_at_fan_out(
    kind: str, cadence: str, has_picks: bool, row: Row | None
) -> None:
    assert row_for(kind, cadence, has_picks) == row


def test_a_queued_row_has_no_reason() -> None:
    assert QUEUED == Row(DeliveryStatus.queued, None)


@pytest.mark.parametrize(
    ("edition", "subscriber", "has_picks", "reason"),
    [
        ("sending", "active", True, None),
        ("paused", "active", True, None),
        ("sending", "active", False, SKIP_NO_MATCH),
        ("cancelled", "active", True, SKIP_CANCELLED),
        ("cancelled", "bounced", False, SKIP_CANCELLED),  # the edition's reason comes first
        ("sending", "unsubscribed", True, "subscriber is unsubscribed"),
        ("sending", "bounced", False, "subscriber is bounced"),  # before the categories
        ("sending", "complained", True, "subscriber is complained"),
        ("sending", "pending", True, "subscriber is pending"),
    ],
)
def test_why_a_claimed_delivery_is_skipped_at_send(
    edition: str, subscriber: str, has_picks: bool, reason: str | None
) -> None:
    assert skip_at_send(edition, subscriber, has_picks) == reason


def test_the_reasons_read_as_a_reader_sees_them() -> None:
    assert SKIP_NO_MATCH == "no comparison this week matches the subscriber's categories"
    assert SKIP_INSTANT == "subscriber takes instant alerts, not the weekly digest"
    assert SKIP_CANCELLED == "the edition was cancelled"
