"""Every query about editions and deliveries: claims, sent-marks, leases, the queue's jobs, and
the sweep's statements.

Functions take a ``Session`` (or, on the delivery hot path, a ``Connection``) and leave
committing to the caller, except where a docstring says the function is a transaction of its
own. Hot paths (fan-out, claiming, recording) use Core statements rather than ORM objects.

This module is longer than the others on purpose: every statement about editions and
deliveries is named here, in one place, so that the conditions the guarantees rest on (who
may claim, what the sweep takes back, when an edition is sent) can be read side by side.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    DateTime,
    String,
    bindparam,
    cast,
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
from sqlalchemy.orm import defer
from sqlmodel import Session

from worker.models import (
    OWED,
    Comparison,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionComparison,
    EditionKind,
    EditionStatus,
    utcnow,
)
from worker.sending.planning import Candidate
from worker.sending.states import from_statuses

COUNTED = tuple(s.value for s in DeliveryStatus)


def _insert_ignoring_conflicts(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Bulk insert, skipping rows that collide with a unique key (SQLite and PostgreSQL)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    session.execute(module.insert(table).on_conflict_do_nothing(), rows)


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


def list_editions_page(session: Session, before_id: int | None, limit: int) -> list[Edition]:
    """One keyset page of editions and alerts, newest first, with ids below ``before_id``
    (their HTML not loaded)."""
    query = select(Edition).options(defer(Edition.html)).order_by(Edition.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Edition.id < before_id)
    return list(session.execute(query).scalars())


def get_current_week(session: Session) -> str | None:
    """The week of the edition an operator watches: the newest sending or paused, else the
    newest of all."""
    live = (EditionStatus.sending.value, EditionStatus.paused.value)
    newest_first = select(Edition.week).order_by(Edition.id.desc()).limit(1)
    week = session.execute(newest_first.where(Edition.status.in_(live))).scalar_one_or_none()
    return week or session.execute(newest_first).scalar_one_or_none()


def count_editions(session: Session) -> int:
    """How many editions and alerts there are."""
    return int(session.execute(select(func.count()).select_from(Edition)).scalar_one())


def list_unalerted(session: Session, since: datetime, until: datetime) -> list[Candidate]:
    """Comparisons published in [since, until] that no instant alert has carried yet, oldest
    first."""
    alerted = (
        select(EditionComparison.comparison_id)
        .join(Edition, Edition.id == EditionComparison.edition_id)
        .where(Edition.kind == EditionKind.alert.value)
    )
    rows = session.execute(
        select(Comparison.id, Comparison.category, Comparison.published_at)
        .where(
            Comparison.published_at >= since,
            Comparison.published_at <= until,
            Comparison.id.not_in(alerted),
        )
        .order_by(Comparison.published_at, Comparison.id)
    ).all()
    return [Candidate(row[0], row[1], _aware(row[2])) for row in rows]


def _aware(value: datetime) -> datetime:
    # SQLite hands times back naive; every time we store is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
        values["pause_reason"] = None
    if status in (EditionStatus.sent, EditionStatus.cancelled):
        values["finished_at"] = utcnow()
    result = session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.status.in_(tuple(only_from)))
        .values(**values)
    )
    return bool(result.rowcount)


def mark_edition_paused(session: Session, edition_id: int, reason: str) -> bool:
    """Pause an edition the state machine lets pause, saying why; True if it moved."""
    result = session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.status.in_(from_statuses("pause")))
        .values(status=EditionStatus.paused.value, pause_reason=reason[:500])
    )
    return bool(result.rowcount)


def mark_edition_intro(
    session: Session, edition_id: int, intro: str, html: str, statuses: Sequence[str]
) -> bool:
    """Set an edition's intro (and its preview HTML) if its status is one of ``statuses``;
    True if it changed."""
    result = session.execute(
        update(Edition)
        .where(Edition.id == edition_id, Edition.status.in_(statuses))
        .values(intro=intro, html=html)
    )
    return bool(result.rowcount)


ATTEMPTED = (DeliveryStatus.sent.value, DeliveryStatus.bounced.value, DeliveryStatus.failed.value)
"""Statuses a delivery reaches only through an attempt at the server."""


def count_recent_attempts(
    session: Session, edition_id: int, after_id: int, window: int
) -> tuple[int, int, int]:
    """(attempts, bounced, failed) over the edition's last ``window`` attempted deliveries with
    ids above ``after_id`` (deliveries are handed out in id order, so the highest ids are the
    latest)."""
    latest = (
        select(Delivery.status)
        .where(
            Delivery.edition_id == edition_id,
            Delivery.id > after_id,
            Delivery.status.in_(ATTEMPTED),
        )
        .order_by(Delivery.id.desc())
        .limit(window)
        .subquery()
    )
    rows = session.execute(select(latest.c.status, func.count()).group_by(latest.c.status))
    counts = {status: int(n) for status, n in rows}
    return (
        sum(counts.values()),
        counts.get(DeliveryStatus.bounced.value, 0),
        counts.get(DeliveryStatus.failed.value, 0),
    )


def get_last_attempted_id(session: Session, edition_id: int) -> int:
    """The highest id among the edition's attempted deliveries (0 when none)."""
    found = session.execute(
        select(func.max(Delivery.id)).where(
            Delivery.edition_id == edition_id, Delivery.status.in_(ATTEMPTED)
        )
    ).scalar_one()
    return int(found or 0)


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


def count_ready(session: Session, edition_id: int, now: datetime) -> tuple[int, datetime | None]:
    """Owed deliveries a worker could take now (sending, or queued with no backoff left), and
    the end of the soonest backoff among the others."""
    waiting = Delivery.retry_at.is_not(None) & (Delivery.retry_at > now)
    ready = session.execute(
        select(func.count()).where(
            Delivery.edition_id == edition_id, Delivery.status.in_(OWED), ~waiting
        )
    ).scalar_one()
    soonest = session.execute(
        select(func.min(Delivery.retry_at)).where(
            Delivery.edition_id == edition_id,
            Delivery.status == DeliveryStatus.queued.value,
            waiting,
        )
    ).scalar_one_or_none()
    return int(ready), soonest


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
            Edition.status.in_(from_statuses("finish")),
            Edition.fanout_done.is_(True),
            ~owed,
        )
        .values(status=EditionStatus.sent.value, finished_at=utcnow())
    )
    return bool(result.rowcount)


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
    intro: str = ""
    """The editor's line for this edition ("": the NEWSLETTER_EDITION_INTRO default)."""


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


_EDITION_INFO = select(Edition.week, Edition.kind, Edition.status, Edition.intro).where(
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
    """Week, kind, status and intro of an edition."""
    row = conn.execute(_EDITION_INFO, {"edition_id": edition_id}).one()
    return EditionInfo(week=row.week, kind=row.kind, status=row.status, intro=row.intro or "")


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


def stuck_before(now: datetime, stuck_after_s: float) -> datetime:
    """The claim time before which a ``sending`` delivery is taken to be abandoned."""
    return now - timedelta(seconds=stuck_after_s)


# --- the public archive (web versions) ----------------------------------------------------------


def _public() -> Any:
    """Editions readers were mailed: started, whatever became of them since."""
    return (Edition.started_at.is_not(None), Edition.status != EditionStatus.draft.value)


def list_public_editions(session: Session, limit: int, offset: int = 0) -> list[Edition]:
    """Digests and alerts that went out, newest first (by when sending started)."""
    return list(
        session.execute(
            select(Edition)
            .where(*_public())
            .order_by(Edition.started_at.desc(), Edition.id.desc())
            .limit(limit)
            .offset(offset)
        ).scalars()
    )


def count_public_editions(session: Session) -> int:
    """How many editions the archive lists."""
    return int(
        session.execute(select(func.count()).select_from(Edition).where(*_public())).scalar_one()
    )


def get_public_edition(session: Session, key: str) -> Edition | None:
    """The edition keyed ``key`` (a week or an alert key) if it went out."""
    return session.execute(
        select(Edition).where(Edition.week == key, *_public())
    ).scalar_one_or_none()


def count_edition_comparisons(session: Session, edition_ids: Sequence[int]) -> dict[int, int]:
    """How many comparisons each edition carries."""
    if not edition_ids:
        return {}
    rows = session.execute(
        select(EditionComparison.edition_id, func.count())
        .where(EditionComparison.edition_id.in_(list(edition_ids)))
        .group_by(EditionComparison.edition_id)
    ).all()
    return {row[0]: int(row[1]) for row in rows}
