"""Who gets a delivery row of an edition, and why one is skipped: pure rules, table-tested,
asked at fan-out and again when the delivery is about to be sent.

SPEC §3: every subscriber active at fan-out gets a row of a digest, skipped ones included, so
that ``total`` counts them all; an instant alert goes only to the instant readers who follow
its category.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.models import Cadence, DeliveryStatus, EditionKind, EditionStatus, SubscriberStatus

SKIP_NO_MATCH = "no comparison this week matches the subscriber's categories"
SKIP_INSTANT = "subscriber takes instant alerts, not the weekly digest"
SKIP_CANCELLED = "the edition was cancelled"


@dataclass(frozen=True)
class Row:
    """The delivery row a subscriber gets: queued, or skipped with the reason shown to them."""

    status: DeliveryStatus
    reason: str | None = None


QUEUED = Row(DeliveryStatus.queued)


def row_for(kind: str, cadence: str, has_picks: bool) -> Row | None:
    """The row an active subscriber gets at fan-out; None when the edition is not for them.

    ``has_picks``: some comparison of the edition matches the subscriber's categories.
    """
    if kind == EditionKind.alert.value:
        return QUEUED if cadence == Cadence.instant.value and has_picks else None
    if cadence != Cadence.weekly.value:
        return Row(DeliveryStatus.skipped, SKIP_INSTANT)
    if not has_picks:
        return Row(DeliveryStatus.skipped, SKIP_NO_MATCH)
    return QUEUED


def skip_at_send(edition_status: str, subscriber_status: str, has_picks: bool) -> str | None:
    """Why a claimed delivery is skipped instead of sent (things changed since fan-out), or
    None to send it."""
    if edition_status == EditionStatus.cancelled.value:
        return SKIP_CANCELLED
    if subscriber_status != SubscriberStatus.active.value:
        return f"subscriber is {subscriber_status}"
    if not has_picks:
        return SKIP_NO_MATCH
    return None
