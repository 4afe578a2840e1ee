"""Tables and enums (SPEC §2). Times are aware UTC datetimes everywhere."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


class SubscriberStatus(enum.StrEnum):
    pending = "pending"
    active = "active"
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complained = "complained"


class Cadence(enum.StrEnum):
    weekly = "weekly"
    instant = "instant"


class EditionStatus(enum.StrEnum):
    draft = "draft"
    sending = "sending"
    sent = "sent"
    paused = "paused"
    cancelled = "cancelled"


class EditionKind(enum.StrEnum):
    digest = "digest"
    alert = "alert"


class DeliveryStatus(enum.StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    bounced = "bounced"
    skipped = "skipped"


OWED = (DeliveryStatus.queued.value, DeliveryStatus.sending.value)
"""Delivery statuses that still owe a message."""


class Tool(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("name", "version", name="uq_tool_name_version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    version: str = Field(default="", max_length=100)
    category: str = Field(default="", max_length=100)
    tagline: str = Field(default="", max_length=500)
    summary: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    pricing: str = Field(default="", max_length=20)
    community_votes: int | None = None


class Comparison(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=200, unique=True)
    title: str = Field(max_length=300)
    category: str = Field(max_length=100, index=True)
    url: str = Field(max_length=1000)
    published_at: datetime = Field(index=True)
    tool_a_id: int = Field(foreign_key="tool.id")
    tool_b_id: int = Field(foreign_key="tool.id")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Review(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", index=True)
    tool_id: int = Field(foreign_key="tool.id")
    position: int = 0
    reviewer: str = Field(max_length=200)
    verdict: str = Field(max_length=10)
    quote: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Subscriber(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)
    email_key: str = Field(max_length=320, unique=True)
    token: str = Field(max_length=64, unique=True)
    name: str = Field(default="", max_length=200)
    status: str = Field(default=SubscriberStatus.pending.value, max_length=20, index=True)
    categories: str = Field(default="", max_length=2000)
    cadence: str = Field(default=Cadence.weekly.value, max_length=20)
    consent_at: datetime | None = None
    consent_ip: str | None = Field(default=None, max_length=64)
    consent_source: str | None = Field(default=None, max_length=1000)
    consent_user_agent: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None
    status_changed_at: datetime | None = None
    last_confirmation_sent_at: datetime | None = None
    accepted_at: datetime | None = None
    """When a delivery notice last said mail to this address was accepted."""
    unsubscribe_reason: str | None = Field(default=None, max_length=500)
    """Why the reader left, if they said (the unsubscribed page asks; operators see it)."""


class Edition(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    week: str = Field(max_length=10, unique=True)
    """The ISO week of a digest (``2026-W48``), or ``A<comparison id>`` for an instant alert."""
    kind: str = Field(default=EditionKind.digest.value, max_length=10)
    status: str = Field(default=EditionStatus.draft.value, max_length=20, index=True)
    subject: str = Field(default="", max_length=500)
    html: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    total: int = 0
    fanout_cursor: int = 0
    fanout_done: bool = False
    fanout_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    intro: str = Field(default="", max_length=500)
    """The editor's one line under the header (empty: NEWSLETTER_EDITION_INTRO, or none)."""
    pause_reason: str | None = Field(default=None, max_length=500)
    """Why the edition is paused: an operator, or the guard rail and the rate that tripped it."""


class EditionComparison(SQLModel, table=True):
    __tablename__ = "edition_comparison"

    edition_id: int = Field(foreign_key="edition.id", primary_key=True)
    comparison_id: int = Field(foreign_key="comparison.id", primary_key=True, index=True)
    position: int = 0


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id", name="uq_delivery_edition_subscriber"),
        # Serves the counters (edition, status) and the refill's "queued, carried by no job"
        # look-ups without scanning an edition's whole queue.
        Index("ix_delivery_edition_status_job", "edition_id", "status", "job_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    edition_id: int = Field(foreign_key="edition.id")
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    status: str = Field(default=DeliveryStatus.queued.value, max_length=20)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=1000)
    message_id: str | None = Field(default=None, max_length=300)
    job_id: str | None = Field(default=None, max_length=40)
    """The broker's id of the job carrying this queued delivery; None while no job does."""
    enqueued_at: datetime | None = None
    retry_at: datetime | None = None
    """A retried delivery is not handed to a job before this moment (its backoff)."""
    claimed_at: datetime | None = None
    """When the worker holding this `sending` delivery claimed it or last renewed its lease."""
    sent_at: datetime | None = None
    uncertain: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    """Attempts whose final reply never came (the message may have been delivered)."""


class BounceEvent(SQLModel, table=True):
    __tablename__ = "bounce_event"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", index=True)
    delivery_id: int | None = Field(default=None, foreign_key="delivery.id", index=True)
    edition_id: int | None = Field(default=None, foreign_key="edition.id", index=True)
    recipient: str = Field(default="", max_length=320)
    kind: str = Field(max_length=20)
    reason: str = Field(default="unknown", max_length=40)
    delayed: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    """A delay notice (the message is still being tried): recorded, never a strike."""
    source: str = Field(max_length=20)
    status_code: str | None = Field(default=None, max_length=20)
    diagnostic: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    received_at: datetime = Field(default_factory=utcnow, index=True)
    provider_event_id: str | None = Field(default=None, max_length=300, unique=True)


class Suppression(SQLModel, table=True):
    """A keyed hash of an erased address that must never be mailed again."""

    id: int | None = Field(default=None, primary_key=True)
    email_hash: str = Field(max_length=64, unique=True)
    reason: str = Field(max_length=20)
    created_at: datetime = Field(default_factory=utcnow)


class InboundMessage(SQLModel, table=True):
    """A bounce message already processed (or kept aside), keyed by Message-ID + content hash."""

    __tablename__ = "inbound_message"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=128, unique=True)
    outcome: str = Field(max_length=20)
    reason: str = Field(default="", max_length=1000)
    received_at: datetime = Field(default_factory=utcnow)
    raw: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class AuditEvent(SQLModel, table=True):
    """A state change made by an operator (console, API or CLI): who, from where, what, when."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=100)
    """The console session's id, ``api`` (bearer token) or ``cli``."""
    ip: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=50)
    target: str = Field(default="", max_length=320)
    detail: str = Field(default="", max_length=1000)
