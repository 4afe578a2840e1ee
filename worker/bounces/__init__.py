"""Bounces: what came back, normalised into one shape whatever its source.

Detecting (this package's parsers: DSN mail, provider webhooks), recording (``worker.store``) and
acting (``worker.bounces.policy``) are three separate steps. The types below are what the
detectors produce; they are plain data with no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["hard", "soft", "complaint", "sender", "ignored"]
"""hard: the address is dead; soft: try again later; complaint: marked as spam;
sender: our side is blocked (policy, reputation, authentication) and the subscriber is not to
blame; ignored: auto-replies, delivery and relay notices."""

KINDS: tuple[Kind, ...] = ("hard", "soft", "complaint", "sender", "ignored")


@dataclass(frozen=True)
class Classification:
    """The class of a bounce and the reason behind it (sisimai's names: ``userunknown``...)."""

    kind: Kind
    reason: str


@dataclass(frozen=True)
class BounceFinding:
    """One recipient found in a bounce message, classified.

    ``action`` says what the message reports: ``failed``, ``delayed`` (a delay notice: recorded,
    never a strike), ``delivered``, ``relayed``, ``complaint`` or ``autoreply``.
    """

    recipient: str | None
    kind: Kind
    reason: str
    status: str | None
    diagnostic: str
    action: str = "failed"

    @property
    def delayed(self) -> bool:
        """True for a delay notice: the message is still being retried."""
        return self.action == "delayed"


@dataclass(frozen=True)
class ParsedBounce:
    """Everything a bounce message tells us, before it is matched to a delivery."""

    findings: tuple[BounceFinding, ...]
    verp_addresses: tuple[str, ...] = ()
    original_message_id: str | None = None
    original_delivery_token: str | None = None
    message_id: str | None = None


@dataclass(frozen=True)
class ProviderEvent:
    """One normalised event from a provider webhook (SES, SendGrid, Postmark, Mailgun)."""

    provider: str
    event_id: str
    recipient: str
    kind: Kind
    reason: str
    status: str | None
    diagnostic: str
    occurred_at: datetime | None
    message_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        from worker.bounces.reasons import kind_of  # reasons imports this module

        # One table decides the kind, for provider events as for bounce mail.
        expected = kind_of(self.reason, self.status)
        if self.kind != expected:
            raise ValueError(f"{self.provider}: {self.reason} is {expected}, not {self.kind}")


def epoch_time(value: Any) -> datetime | None:
    """A provider's Unix timestamp as an aware time; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def iso_time(value: Any) -> datetime | None:
    """A provider's ISO 8601 time; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def text_or_none(value: Any) -> str | None:
    """A non-empty string from a payload, else None."""
    return value if isinstance(value, str) and value else None
