"""Every query. Nothing else in the project writes SQL.

Functions take a ``Session`` and leave committing to the caller, except where a docstring says
the function is a transaction of its own. Hot paths (fan-out, claiming, recording) use Core
statements rather than ORM objects.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    DateTime,
    String,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from worker.comparisons import ComparisonRecord
from worker.models import (
    OWED,
    BounceEvent,
    Comparison,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionComparison,
    EditionKind,
    EditionStatus,
    InboundMessage,
    Review,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Tool,
    utcnow,
)
from worker.planning import Candidate
from worker.subscribers import SubscriberInput, email_key

COUNTED = tuple(s.value for s in DeliveryStatus)


def _insert_ignoring_conflicts(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Bulk insert, skipping rows that collide with a unique key (SQLite and PostgreSQL)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    session.execute(module.insert(table).on_conflict_do_nothing(), rows)


# --- comparisons ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolView:
    name: str
    version: str
    category: str
    tagline: str
    summary: str
    pricing: str
    community_votes: int | None
    ship_percent: int | None
    reviews: tuple[ReviewView, ...]


@dataclass(frozen=True)
class ReviewView:
    reviewer: str
    verdict: str
    quote: str


@dataclass(frozen=True)
class ComparisonView:
    """A comparison with everything a mail shows about it."""

    id: int
    slug: str
    title: str
    category: str
    url: str
    published_at: datetime
    tool_a: ToolView
    tool_b: ToolView


def _upsert_tool(session: Session, record: Any) -> int:
    tool = session.exec(
        select(Tool).where(Tool.name == record.name, Tool.version == record.version)
    ).scalar_one_or_none()
    if tool is None:
        tool = Tool(name=record.name, version=record.version)
    for field in ("category", "tagline", "summary", "pricing", "community_votes"):
        setattr(tool, field, getattr(record, field))
    session.add(tool)
    session.flush()
    assert tool.id is not None
    return tool.id


def upsert_comparison(session: Session, record: ComparisonRecord) -> bool:
    """Create or update a comparison by slug, with its tools and reviews; True when created."""
    ids = {tool.name: _upsert_tool(session, tool) for tool in record.tools}
    comparison = session.exec(
        select(Comparison).where(Comparison.slug == record.slug)
    ).scalar_one_or_none()
    created = comparison is None
    if comparison is None:
        comparison = Comparison(
            slug=record.slug,
            title="",
            category="",
            url="",
            published_at=record.published_at,
            tool_a_id=0,
            tool_b_id=0,
        )
    comparison.title = record.title
    comparison.category = record.category
    comparison.url = str(record.url)
    comparison.published_at = record.published_at
    comparison.tool_a_id = ids[record.tools[0].name]
    comparison.tool_b_id = ids[record.tools[1].name]
    comparison.updated_at = utcnow()
    session.add(comparison)
    session.flush()
    session.execute(delete(Review).where(Review.comparison_id == comparison.id))
    session.execute(
        insert(Review),
        [
            {
                "comparison_id": comparison.id,
                "tool_id": ids[r.tool],
                "position": i,
                "reviewer": r.reviewer,
                "verdict": r.verdict,
                "quote": r.quote,
            }
            for i, r in enumerate(record.reviews)
        ],
    ) if record.reviews else None
    return created


def list_candidates(session: Session, since: datetime, until: datetime) -> list[Candidate]:
    """Comparisons published in [since, until), as planning candidates."""
    rows = session.execute(
        select(Comparison.id, Comparison.category, Comparison.published_at).where(
            Comparison.published_at >= since, Comparison.published_at < until
        )
    ).all()
    return [Candidate(id=r.id, category=r.category, published_at=r.published_at) for r in rows]


def list_carried_ids(session: Session, except_edition_id: int | None = None) -> set[int]:
    """Ids of comparisons some (other) digest already carries (instant alerts do not count)."""
    query = (
        select(EditionComparison.comparison_id)
        .join(Edition, Edition.id == EditionComparison.edition_id)
        .where(Edition.kind == EditionKind.digest.value)
    )
    if except_edition_id is not None:
        query = query.where(EditionComparison.edition_id != except_edition_id)
    return set(session.execute(query).scalars())


def list_categories(session: Session) -> list[str]:
    """Every category some comparison is in, sorted."""
    return sorted(set(session.execute(select(Comparison.category).distinct()).scalars()))


def get_comparison_views(session: Session, ids: Sequence[int]) -> list[ComparisonView]:
    """Full views of the comparisons ``ids``, in that order."""
    if not ids:
        return []
    comparisons = {
        c.id: c for c in session.execute(select(Comparison).where(Comparison.id.in_(ids))).scalars()
    }
    tool_ids = {c.tool_a_id for c in comparisons.values()} | {
        c.tool_b_id for c in comparisons.values()
    }
    tools = {t.id: t for t in session.execute(select(Tool).where(Tool.id.in_(tool_ids))).scalars()}
    reviews: dict[tuple[int, int], list[Review]] = {}
    for review in session.execute(
        select(Review).where(Review.comparison_id.in_(ids)).order_by(Review.position)
    ).scalars():
        reviews.setdefault((review.comparison_id, review.tool_id), []).append(review)

    def tool_view(comparison_id: int, tool_id: int) -> ToolView:
        tool = tools[tool_id]
        own = reviews.get((comparison_id, tool_id), [])
        ships = sum(1 for r in own if r.verdict == "ship")
        return ToolView(
            name=tool.name,
            version=tool.version,
            category=tool.category,
            tagline=tool.tagline,
            summary=tool.summary,
            pricing=tool.pricing,
            community_votes=tool.community_votes,
            ship_percent=round(100 * ships / len(own)) if own else None,
            reviews=tuple(ReviewView(r.reviewer, r.verdict, r.quote) for r in own),
        )

    return [
        ComparisonView(
            id=c.id,
            slug=c.slug,
            title=c.title,
            category=c.category,
            url=c.url,
            published_at=c.published_at,
            tool_a=tool_view(c.id, c.tool_a_id),
            tool_b=tool_view(c.id, c.tool_b_id),
        )
        for c in (comparisons[i] for i in ids if i in comparisons)
        if c.id is not None
    ]


# --- subscribers ---------------------------------------------------------------------------


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


def suppression_hash(secret_key: str, email: str) -> str:
    """Keyed hash of an address, kept after erasure so it is never mailed again."""
    return hmac.new(secret_key.encode(), email_key(email).encode(), hashlib.sha256).hexdigest()


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
                    "categories": ";".join(item.categories),
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
            ("categories", ";".join(item.categories)),
            ("cadence", item.cadence),
        ):
            if value != getattr(known, field) and (value or field != "name"):
                setattr(known, field, value)
                changed = True
        sticky = known.status in (SubscriberStatus.bounced.value, SubscriberStatus.complained.value)
        wanted = item.status or (SubscriberStatus.active.value if confirmed else None)
        if wanted and wanted != known.status and not sticky:
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


def list_subscribers_page(
    session: Session, after_id: int, limit: int, status: str | None = None
) -> list[Subscriber]:
    """One keyset page of subscribers with ids above ``after_id``."""
    query = select(Subscriber).where(Subscriber.id > after_id)
    if status:
        query = query.where(Subscriber.status == status)
    return list(session.execute(query.order_by(Subscriber.id).limit(limit)).scalars())


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


def mark_subscriber_status(
    session: Session, subscriber_id: int, status: SubscriberStatus, only_from: Iterable[str] = ()
) -> bool:
    """Set a subscriber's status (only from the given statuses, when given); True if changed."""
    query = update(Subscriber).where(
        Subscriber.id == subscriber_id, Subscriber.status != status.value
    )
    allowed = tuple(only_from)
    if allowed:
        query = query.where(Subscriber.status.in_(allowed))
    result = session.execute(query.values(status=status.value, status_changed_at=utcnow()))
    return bool(result.rowcount)


@dataclass(frozen=True)
class Consent:
    """Where and when someone asked to subscribe (GDPR art. 7: be able to show consent)."""

    ip: str | None
    user_agent: str | None
    source: str | None


# --- readers: subscribing, confirming, privacy ---------------------------------------------------


def get_subscriber_by_id(session: Session, subscriber_id: int) -> Subscriber | None:
    """The subscriber with this id."""
    return session.get(Subscriber, subscriber_id)


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
                (SubscriberStatus.pending.value, SubscriberStatus.unsubscribed.value)
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


def list_deliveries_of(session: Session, subscriber_id: int) -> list[tuple[Delivery, str]]:
    """A subscriber's deliveries with the week of their edition, oldest first."""
    rows = session.execute(
        select(Delivery, Edition.week)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def _bounces_of(subscriber: Subscriber) -> Any:
    # Events matched to the row, and those that only name the address (unmatched DSNs).
    return or_(
        BounceEvent.subscriber_id == subscriber.id,
        func.lower(BounceEvent.recipient) == subscriber.email_key,
    )


def list_bounce_events_of(session: Session, subscriber: Subscriber) -> list[BounceEvent]:
    """Every bounce event about a subscriber, oldest first."""
    return list(
        session.execute(
            select(BounceEvent).where(_bounces_of(subscriber)).order_by(BounceEvent.id)
        ).scalars()
    )


def delete_subscriber(session: Session, subscriber: Subscriber) -> None:
    """Delete a subscriber with its bounce events and deliveries (children first)."""
    delivery_ids = select(Delivery.id).where(Delivery.subscriber_id == subscriber.id)
    session.execute(
        delete(BounceEvent).where(
            or_(_bounces_of(subscriber), BounceEvent.delivery_id.in_(delivery_ids))
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


# --- editions --------------------------------------------------------------------------------


def get_edition(session: Session, week: str) -> Edition | None:
    """The edition of an ISO week, if any."""
    return session.exec(select(Edition).where(Edition.week == week)).scalar_one_or_none()


def get_edition_by_id(session: Session, edition_id: int) -> Edition | None:
    """The edition with this id."""
    return session.get(Edition, edition_id)


def list_editions(
    session: Session, statuses: Iterable[str] = (), kind: EditionKind | None = None
) -> list[Edition]:
    """Editions, newest first, optionally only some statuses or one kind."""
    query = select(Edition).order_by(Edition.created_at.desc(), Edition.id.desc())
    wanted = tuple(statuses)
    if wanted:
        query = query.where(Edition.status.in_(wanted))
    if kind is not None:
        query = query.where(Edition.kind == kind.value)
    return list(session.execute(query).scalars())


def list_unalerted(session: Session, since: datetime, until: datetime) -> list[int]:
    """Comparisons published in [since, until] that no instant alert has gone out for yet."""
    ids = list(
        session.execute(
            select(Comparison.id)
            .where(Comparison.published_at >= since, Comparison.published_at <= until)
            .order_by(Comparison.published_at)
        ).scalars()
    )
    if not ids:
        return []
    alerted = set(
        session.execute(
            select(Edition.week).where(Edition.week.in_([alert_key(i) for i in ids]))
        ).scalars()
    )
    return [i for i in ids if alert_key(i) not in alerted]


def alert_key(comparison_id: int) -> str:
    """The unique ``week`` of the instant alert about a comparison."""
    return f"A{comparison_id}"


def create_edition(
    engine: Engine,
    week: str,
    comparison_ids: Sequence[int],
    subject: str,
    html: str,
    kind: EditionKind = EditionKind.digest,
) -> tuple[Edition, bool]:
    """Create the edition of ``week`` in its own transaction, or return the existing one.

    Two schedulers racing both end up with the same row: the unique week decides.
    """
    try:
        with Session(engine) as session, session.begin():
            edition = Edition(
                week=week,
                kind=kind.value,
                subject=subject,
                html=html,
                status=EditionStatus.draft.value,
            )
            session.add(edition)
            session.flush()
            session.execute(
                insert(EditionComparison),
                [
                    {"edition_id": edition.id, "comparison_id": cid, "position": i}
                    for i, cid in enumerate(comparison_ids)
                ],
            )
            session.expunge(edition)
            return edition, True
    except IntegrityError:
        with Session(engine) as session:
            existing = get_edition(session, week)
            if existing is None:
                raise
            session.expunge(existing)
            return existing, False


def list_edition_comparison_ids(session: Session, edition_id: int) -> list[int]:
    """Ids of the comparisons an edition carries, in order."""
    return list(
        session.execute(
            select(EditionComparison.comparison_id)
            .where(EditionComparison.edition_id == edition_id)
            .order_by(EditionComparison.position)
        ).scalars()
    )


def mark_edition_status(
    session: Session, edition_id: int, status: EditionStatus, only_from: Iterable[str]
) -> bool:
    """Move an edition to ``status`` if it is in one of ``only_from``; True if it moved."""
    values: dict[str, Any] = {"status": status.value}
    if status is EditionStatus.sending:
        values["started_at"] = func.coalesce(Edition.started_at, utcnow())
    if status in (EditionStatus.sent, EditionStatus.cancelled):
        values["finished_at"] = utcnow()
    result = session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.status.in_(tuple(only_from)))
        .values(**values)
    )
    return bool(result.rowcount)


def mark_fanout_progress(session: Session, edition_id: int, cursor: int) -> None:
    """Remember how far fan-out got, so that a restarted fan-out resumes there."""
    session.execute(
        update(Edition)
        .where(Edition.id == edition_id)
        .values(fanout_cursor=cursor, fanout_at=utcnow())
    )


def mark_fanout_done(session: Session, edition_id: int) -> int:
    """Record that every active subscriber has a delivery row; returns the total."""
    total = session.execute(
        select(func.count()).select_from(Delivery).where(Delivery.edition_id == edition_id)
    ).scalar_one()
    session.execute(
        update(Edition)
        .where(Edition.id == edition_id)
        .values(fanout_done=True, total=total, fanout_at=utcnow())
    )
    return int(total)


def count_deliveries(session: Session, edition_id: int) -> dict[str, int]:
    """Deliveries of an edition by status, every status present (zero when none)."""
    counts = dict.fromkeys(COUNTED, 0)
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.status)
    )
    for status, n in rows:
        counts[status] = int(n)
    return counts


def count_uncertain(session: Session, edition_id: int) -> int:
    """Sends of an edition whose final reply never came (SPEC §6: in flight)."""
    total = session.execute(
        select(func.coalesce(func.sum(Delivery.uncertain), 0)).where(
            Delivery.edition_id == edition_id
        )
    ).scalar_one()
    return int(total)


def has_owed(session: Session, edition_id: int) -> bool:
    """True while some delivery of the edition is still queued or sending."""
    return (
        session.execute(
            select(Delivery.id)
            .where(Delivery.edition_id == edition_id, Delivery.status.in_(OWED))
            .limit(1)
        ).first()
        is not None
    )


def lock_edition(session: Session, edition_id: int) -> None:
    """Take the edition's row lock for the rest of the transaction (PostgreSQL; SQLite has one
    writer at a time anyway), so that whatever makes its deliveries owed again and the check
    that finds nothing owed run one after the other, never side by side."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Edition.id).where(Edition.id == edition_id).with_for_update())


def finish_edition_if_done(session: Session, edition_id: int) -> bool:
    """Mark a sending edition sent once fan-out is done and nothing is owed; True if marked.

    One conditional statement decides. On PostgreSQL the edition's row lock is taken first, so
    a retry that is putting deliveries back in the queue (it holds that lock) is waited for and
    its rows are seen.
    """
    lock_edition(session, edition_id)
    owed = (
        select(Delivery.id)
        .where(Delivery.edition_id == edition_id, Delivery.status.in_(OWED))
        .exists()
    )
    result = session.execute(
        update(Edition)
        .where(
            Edition.id == edition_id,
            Edition.status == EditionStatus.sending.value,
            Edition.fanout_done.is_(True),
            ~owed,
        )
        .values(status=EditionStatus.sent.value, finished_at=utcnow())
    )
    return bool(result.rowcount)


# --- deliveries --------------------------------------------------------------------------------


def insert_deliveries(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert delivery rows; one that exists for the (edition, subscriber) is left alone."""
    _insert_ignoring_conflicts(session, Delivery, rows)


@dataclass(frozen=True)
class Claim:
    """A delivery this worker now owns, with what sending it needs."""

    delivery_id: int
    edition_id: int
    attempts: int
    subscriber_id: int
    email: str
    name: str
    token: str
    categories: str
    subscriber_status: str


@dataclass(frozen=True)
class EditionInfo:
    """What a worker needs to know about an edition to send one of its deliveries."""

    week: str
    kind: str
    status: str


# The two statements of the delivery hot path are run on the driver's cursor: SQLAlchemy's
# per-statement work (parameter processing, result wrapping) cost more than the statements
# themselves. Each placeholder is the driver's own ("?" for sqlite3, "%s" for psycopg).
_CLAIM_SQL = (
    "UPDATE delivery SET status = 'sending', claimed_at = {p}, attempts = attempts + 1,"
    " job_id = NULL"
    # Only a queued delivery whose backoff is over: one left `sending` is taken back by the
    # sweep, and only once its holder stopped renewing the claim.
    " WHERE id IN ({ids}) AND status = 'queued' AND (retry_at IS NULL OR retry_at <= {p})"
    # The recipient comes back with the claim: one round trip instead of two.
    " RETURNING id, edition_id, subscriber_id, attempts"
    + "".join(
        f", (SELECT {column} FROM subscriber WHERE subscriber.id = delivery.subscriber_id)"
        for column in ("email", "name", "token", "categories", "status")
    )
)
_MARK_SENT_SQL = (
    "UPDATE delivery SET status = 'sent', sent_at = {p}, last_error = NULL, retry_at = NULL,"
    " message_id = CASE id {cases} END WHERE id IN ({ids}) AND status = 'sending'"
)
_RENEW_SQL = "UPDATE delivery SET claimed_at = {p} WHERE id IN ({ids}) AND status = 'sending'"
_CONFIRM_SQL = (
    "UPDATE delivery SET claimed_at = {p} WHERE id = {p} AND attempts = {p} AND status = 'sending'"
)


@functools.cache
def _driver_time(dialect: Dialect) -> Any:
    """How the dialect hands a datetime to its driver (SQLite: as text), or None."""
    return DateTime().dialect_impl(dialect).bind_processor(dialect)


def _placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


_EDITION_INFO = select(Edition.week, Edition.kind, Edition.status).where(
    Edition.id == bindparam("edition_id")
)


def _run(conn: Connection, sql: str, params: list[Any]) -> Any:
    """Run one statement on the driver's cursor; returns the cursor's rows and row count."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.rowcount
    finally:
        cursor.close()


def _bind_time(conn: Connection, when: datetime) -> Any:
    to_driver = _driver_time(conn.dialect)
    return when if to_driver is None else to_driver(when)


def claim_deliveries(
    conn: Connection | Session, delivery_ids: list[int], now: datetime
) -> dict[int, Claim]:
    """Atomically take the deliveries that are queued and due.

    One conditional UPDATE decides: of two workers, or a job and its duplicate, only one gets a
    row back. The result holds only the ids that were owed and are now this caller's.
    """
    if isinstance(conn, Session):
        conn = conn.connection()
    p = _placeholder(conn)
    ids = sorted(delivery_ids)
    sql = _CLAIM_SQL.format(p=p, ids=", ".join([p] * len(ids)))
    moment = _bind_time(conn, now)
    rows, _count = _run(conn, sql, [moment, *ids, moment])
    return {
        row[0]: Claim(
            delivery_id=row[0],
            edition_id=row[1],
            subscriber_id=row[2],
            attempts=row[3],
            email=row[4],
            name=row[5],
            token=row[6],
            categories=row[7],
            subscriber_status=row[8],
        )
        for row in rows
    }


def renew_claims(conn: Connection, delivery_ids: list[int], now: datetime) -> None:
    """Renew the lease of deliveries this worker holds (still `sending`)."""
    p = _placeholder(conn)
    sql = _RENEW_SQL.format(p=p, ids=", ".join([p] * len(delivery_ids)))
    _run(conn, sql, [_bind_time(conn, now), *delivery_ids])


def confirm_claim(conn: Connection, delivery_id: int, attempts: int, now: datetime) -> bool:
    """Renew one claim's lease if it is still this claim (same attempt, still `sending`);
    False when the sweep took it back, whoever holds it now."""
    sql = _CONFIRM_SQL.format(p=_placeholder(conn))
    _rows, count = _run(conn, sql, [_bind_time(conn, now), delivery_id, attempts])
    return bool(count)


def mark_sent(conn: Connection, sent: list[tuple[int, str]], when: datetime) -> None:
    """Record deliveries this worker holds as accepted by the server, as (id, Message-ID), in
    one statement."""
    p = _placeholder(conn)
    ids = sorted(delivery_id for delivery_id, _ in sent)
    params: list[Any] = [_bind_time(conn, when)]
    for delivery_id, message_id in sent:
        params += (delivery_id, message_id)
    sql = _MARK_SENT_SQL.format(
        p=p, cases=" ".join([f"WHEN {p} THEN {p}"] * len(sent)), ids=", ".join([p] * len(ids))
    )
    _run(conn, sql, params + ids)


def get_edition_info(conn: Connection | Session, edition_id: int) -> EditionInfo:
    """Week, kind and status of an edition."""
    row = conn.execute(_EDITION_INFO, {"edition_id": edition_id}).one()
    return EditionInfo(week=row.week, kind=row.kind, status=row.status)


def mark_delivery(
    session: Session | Connection,
    delivery_id: int,
    status: DeliveryStatus,
    *,
    error: str | None = None,
    message_id: str | None = None,
    only_from: Iterable[str] = (DeliveryStatus.sending.value,),
    retry_at: datetime | None = None,
    uncertain: bool = False,
) -> bool:
    """Record the outcome of a delivery this worker holds; True if the row was changed.

    Back to ``queued`` means a retry: no job carries the row until the refill hands it to one,
    not before ``retry_at``.
    """
    values: dict[str, Any] = {"status": status.value}
    if error is not None:
        values["last_error"] = error[:1000]
    if message_id is not None:
        values["message_id"] = message_id
    if status is DeliveryStatus.sent:
        values["sent_at"] = utcnow()
        values["last_error"] = None
    if status is DeliveryStatus.queued:
        values.update(job_id=None, claimed_at=None, retry_at=retry_at)
    if uncertain:
        values["uncertain"] = Delivery.uncertain + 1
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(tuple(only_from)))
        .values(**values)
    )
    return bool(result.rowcount)


def release_delivery(session: Session | Connection, delivery_id: int) -> None:
    """Hand a claimed delivery back untouched (its edition was paused): no job carries it now."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.sending.value)
        .values(
            status=DeliveryStatus.queued.value,
            claimed_at=None,
            job_id=None,
            attempts=Delivery.attempts - 1,
        )
    )


def stamp_jobs(
    session: Session, edition_id: int, limit: int, now: datetime
) -> list[tuple[int, str]]:
    """Give up to ``limit`` queued deliveries that no job carries, and whose backoff is over, a
    job id each; returns (delivery id, job id) of exactly the rows this call stamped.

    One conditional UPDATE decides, so two refills at once never hand a row to two jobs.
    """
    if limit <= 0:
        return []
    due = (
        select(Delivery.id)
        .where(
            Delivery.edition_id == edition_id,
            Delivery.status == DeliveryStatus.queued.value,
            Delivery.job_id.is_(None),
            or_(Delivery.retry_at.is_(None), Delivery.retry_at <= now),
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    batch = secrets.token_urlsafe(12) + "."
    rows = session.execute(
        update(Delivery)
        .where(
            Delivery.id.in_(due.scalar_subquery()),
            Delivery.status == DeliveryStatus.queued.value,
            Delivery.job_id.is_(None),
        )
        .values(job_id=literal(batch) + cast(Delivery.id, String), enqueued_at=now)
        .returning(Delivery.id, Delivery.job_id)
    ).all()
    return sorted((row[0], row[1]) for row in rows)


def count_in_flight(session: Session, edition_id: int) -> int:
    """Queued deliveries of an edition that a job in the queue carries."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.edition_id == edition_id,
                Delivery.status == DeliveryStatus.queued.value,
                Delivery.job_id.is_not(None),
            )
        ).scalar_one()
    )


def list_carried(
    session: Session, edition_id: int, enqueued_before: datetime
) -> list[tuple[int, str]]:
    """(delivery id, job id) of queued deliveries handed to a job before ``enqueued_before``."""
    rows = session.execute(
        select(Delivery.id, Delivery.job_id).where(
            Delivery.edition_id == edition_id,
            Delivery.status == DeliveryStatus.queued.value,
            Delivery.job_id.is_not(None),
            Delivery.enqueued_at < enqueued_before,
        )
    ).all()
    return [(row.id, row.job_id) for row in rows]


def clear_jobs(session: Session, lost: list[tuple[int, str]]) -> int:
    """Forget the jobs of deliveries whose job the queue no longer has (only if the row still
    names that job), so the refill hands them to new ones; returns how many."""
    cleared = 0
    for delivery_id, job_id in lost:
        result = session.execute(
            update(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.job_id == job_id,
                Delivery.status == DeliveryStatus.queued.value,
            )
            .values(job_id=None)
        )
        cleared += int(result.rowcount or 0)
    return cleared


def release_stuck(session: Session, edition_id: int, stuck_before: datetime) -> int:
    """Put deliveries whose claim nobody renewed since ``stuck_before`` (their worker is gone)
    back to queued; returns how many."""
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.edition_id == edition_id,
            Delivery.status == DeliveryStatus.sending.value,
            Delivery.claimed_at < stuck_before,
        )
        .values(status=DeliveryStatus.queued.value, claimed_at=None, job_id=None)
    )
    return int(result.rowcount or 0)


def requeue_failed(session: Session, edition_id: int) -> int:
    """Give failed deliveries a fresh set of attempts; returns how many."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.failed.value)
        .values(status=DeliveryStatus.queued.value, attempts=0, job_id=None, retry_at=None)
    )
    return int(result.rowcount or 0)


def skip_owed(session: Session, edition_id: int, reason: str) -> int:
    """Mark every queued delivery of an edition skipped (a cancelled edition)."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.edition_id == edition_id, Delivery.status == DeliveryStatus.queued.value)
        .values(status=DeliveryStatus.skipped.value, last_error=reason, job_id=None)
    )
    return int(result.rowcount or 0)


def get_delivery(session: Session, delivery_id: int) -> Delivery | None:
    """The delivery with this id."""
    return session.get(Delivery, delivery_id)


def get_delivery_by_message_id(session: Session, message_id: str) -> Delivery | None:
    """The delivery whose mail carried this Message-ID."""
    return session.execute(
        select(Delivery).where(Delivery.message_id == message_id).limit(1)
    ).scalar_one_or_none()


# --- bounces -------------------------------------------------------------------------------


def create_bounce_event(session: Session, **fields: Any) -> bool:
    """Record a bounce event; False when its provider event id was seen before."""
    event_id = fields.get("provider_event_id")
    if event_id is not None:
        seen = session.execute(
            select(BounceEvent.id).where(BounceEvent.provider_event_id == event_id)
        ).first()
        if seen is not None:
            return False
    try:
        # A savepoint: the same provider event posted twice at once must lose quietly.
        with session.begin_nested():
            session.add(BounceEvent(**fields))
    except IntegrityError:
        return False
    return True


def count_soft_bounce_days(session: Session, subscriber_id: int, since: datetime) -> int:
    """Distinct days with a soft bounce for a subscriber since ``since`` and since their
    last successful delivery: one sent that no bounce came back for (a success resets it)."""
    bounced = select(BounceEvent.id).where(BounceEvent.delivery_id == Delivery.id).exists()
    last_sent = session.execute(
        select(func.max(Delivery.sent_at)).where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.status == DeliveryStatus.sent.value,
            ~bounced,
        )
    ).scalar_one_or_none()
    start = max(since, last_sent) if last_sent else since
    received = session.execute(
        select(BounceEvent.received_at).where(
            BounceEvent.subscriber_id == subscriber_id,
            BounceEvent.kind == "soft",
            BounceEvent.received_at >= start,
        )
    ).scalars()
    return len({moment.date() for moment in received})


def list_bounce_events(
    session: Session, edition_id: int | None = None, kind: str | None = None, limit: int = 1000
) -> list[BounceEvent]:
    """Bounce events, newest first, optionally of one edition or kind."""
    query = select(BounceEvent).order_by(BounceEvent.received_at.desc(), BounceEvent.id.desc())
    if edition_id is not None:
        query = query.where(BounceEvent.edition_id == edition_id)
    if kind:
        query = query.where(BounceEvent.kind == kind)
    return list(session.execute(query.limit(limit)).scalars())


def count_bounce_kinds(session: Session, edition_id: int) -> dict[str, int]:
    """Bounce events of an edition by kind."""
    rows = session.execute(
        select(BounceEvent.kind, func.count())
        .where(BounceEvent.edition_id == edition_id)
        .group_by(BounceEvent.kind)
    )
    return {kind: int(n) for kind, n in rows}


def remember_inbound(
    session: Session, key: str, outcome: str, reason: str, raw: bytes | None
) -> bool:
    """Remember that an inbound (bounce) message was handled; False if it was already."""
    if session.execute(select(InboundMessage.id).where(InboundMessage.key == key)).first():
        return False
    session.add(InboundMessage(key=key, outcome=outcome, reason=reason[:1000], raw=raw))
    session.flush()
    return True


def update_inbound(session: Session, key: str, outcome: str, reason: str) -> None:
    """Record how an inbound message ended up (unmatched, forged...)."""
    session.execute(
        update(InboundMessage)
        .where(InboundMessage.key == key)
        .values(outcome=outcome, reason=reason[:1000])
    )


def stuck_before(now: datetime, stuck_after_s: float) -> datetime:
    """The claim time before which a ``sending`` delivery is taken to be abandoned."""
    return now - timedelta(seconds=stuck_after_s)
