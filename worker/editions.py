"""The edition pipeline: plan → create → fan out → deliver → finish, and the sweep that keeps
it honest after crashes. Reads as the sentence listmonk's campaign manager does: pick the
edition, page subscribers by id, render once per category set, hand one job per delivery to
the workers.

Every function takes the Runtime; the dramatiq actors in ``worker.actors`` are thin wrappers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from worker import store
from worker.bounces.policy import Policy, record_bounce, refusal_facts
from worker.dispatch import Dispatch
from worker.errors import (
    InputError,
    NotFound,
    PermanentFailure,
    RecipientRefused,
    TemporaryFailure,
    UncertainDelivery,
)
from worker.message import Recipient, build_message, message_id_for, test_message_id
from worker.models import (
    Cadence,
    DeliveryStatus,
    Edition,
    EditionKind,
    EditionStatus,
    SubscriberStatus,
    utcnow,
)
from worker.planning import (
    category_key,
    parse_week,
    pick_for,
    plan_edition,
    split_categories,
    week_bounds,
    week_of,
)
from worker.render import sample_values
from worker.retry import backoff_s
from worker.runtime import Runtime
from worker.store import Claim, EditionInfo
from worker.tokens import sign_link, verp_address, verp_token
from worker.writer import Outcome

log = logging.getLogger(__name__)

FANOUT_PAGE = 1000
LOST_AFTER_S = 30
"""A queued delivery's job is looked for in the queue only once it was handed out this long
ago: the moment between stamping a row and the job reaching Redis is never mistaken for loss."""
SKIP_NO_MATCH = "no comparison this week matches the subscriber's categories"
SKIP_INSTANT = "subscriber takes instant alerts, not the weekly digest"


@dataclass(frozen=True)
class EditionStatusView:
    """What ``status --json`` and ``GET /api/editions/{week}`` show."""

    week: str
    status: str
    total: int
    queued: int
    sending: int
    sent: int
    failed: int
    bounced: int
    skipped: int
    comparisons: int
    bounces: dict[str, int]
    uncertain: int = 0
    """Sends whose final reply never came (the server may have taken them; SPEC §6)."""

    def as_json(self) -> dict[str, Any]:
        """The fields of ``status --json`` (SPEC §4), in its order, then the extra counters."""
        return {
            "week": self.week,
            "status": self.status,
            "total": self.total,
            "queued": self.queued,
            "sending": self.sending,
            "sent": self.sent,
            "failed": self.failed,
            "bounced": self.bounced,
            "skipped": self.skipped,
            "uncertain": self.uncertain,
        }

    @property
    def done(self) -> int:
        """Deliveries that reached a final status."""
        return self.sent + self.failed + self.bounced + self.skipped


def resolve_week(rt: Runtime, week: str | None, now: datetime | None = None) -> str:
    """The week asked for, validated, or the current one in the configured time zone."""
    if week is None:
        return week_of(now or utcnow(), rt.settings.tz)
    parse_week(week)
    return week.strip()


# --- planning and creation ----------------------------------------------------------------


def plan(rt: Runtime, week: str, now: datetime) -> list[int]:
    """Ids of the comparisons the edition of ``week`` would carry (SPEC §3)."""
    start, end = week_bounds(week, rt.settings.tz)
    with rt.session() as session:
        existing = store.get_edition(session, week)
        candidates = store.list_candidates(session, end - timedelta(days=14), end)
        carried = store.list_carried_ids(session, existing.id if existing else None)
    chosen = plan_edition(week, rt.settings.tz, now, candidates, carried, rt.settings.digest_max)
    return [c.id for c in chosen]


def preview_html(rt: Runtime, week: str, comparison_ids: list[int]) -> tuple[str, str]:
    """Subject and HTML of the full digest (every comparison), with sample slot values."""
    with rt.session() as session:
        views = store.get_comparison_views(session, comparison_ids)
    mail = rt.renderer.render_digest(week, views)
    return mail.subject, mail.html.fill(sample_values(rt.settings.public_url), escape=True)


def ensure_edition(rt: Runtime, week: str, now: datetime) -> tuple[Edition | None, bool]:
    """The edition of ``week``, created (as a draft) when it does not exist and has content.

    Returns (None, False) for a week with nothing to carry.
    """
    with rt.session() as session:
        existing = store.get_edition(session, week)
    if existing is not None:
        return existing, False
    ids = plan(rt, week, now)
    if not ids:
        return None, False
    subject, html = preview_html(rt, week, ids)
    return store.create_edition(rt.engine, week, ids, subject, html)


def get_edition(rt: Runtime, week: str) -> Edition:
    """The edition of ``week``; NotFound when there is none."""
    with rt.session() as session:
        edition = store.get_edition(session, week)
    if edition is None:
        raise NotFound(f"no edition for {week}")
    return edition


# --- sending ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    """What ``send`` did for a week."""

    week: str
    edition: Edition | None
    created: bool
    started: bool
    requeued: int
    message: str


def start_send(rt: Runtime, week: str, now: datetime, dispatch: Dispatch) -> SendOutcome:
    """Create the week's edition if needed and start (or restart) sending it.

    Sending a week again re-queues what the database says is owed and sends nothing twice.
    """
    edition, created = ensure_edition(rt, week, now)
    if edition is None:
        return SendOutcome(
            week,
            None,
            False,
            False,
            0,
            f"nothing to send for {week}: no new comparisons in that week",
        )
    assert edition.id is not None
    if edition.status == EditionStatus.cancelled.value:
        return SendOutcome(week, edition, created, False, 0, f"the {week} edition was cancelled")
    with rt.session() as session, session.begin():
        started = store.mark_edition_status(
            session,
            edition.id,
            EditionStatus.sending,
            (EditionStatus.draft.value, EditionStatus.paused.value),
        )
    requeued = 0
    if started or edition.status == EditionStatus.sending.value:
        dispatch.start_fan_out(edition.id)
        if not created:
            requeued = recover(rt, edition.id, now, dispatch)
    with rt.session() as session:
        edition = store.get_edition(session, week) or edition
    verb = "sending" if started else f"already {edition.status}"
    return SendOutcome(
        week,
        edition,
        created,
        started,
        requeued,
        f"{week}: {verb}" + (f", {requeued} re-queued" if requeued else ""),
    )


def fan_out(rt: Runtime, edition_id: int, dispatch: Dispatch) -> bool:
    """Give every active subscriber a delivery row, page by page, resuming where it stopped.

    Deliveries are enqueued as each page lands, so sending starts before fan-out ends; once
    every row exists, the refill chain takes over. Returns True when fan-out is complete.
    """
    with rt.session() as session:
        edition = store.get_edition_by_id(session, edition_id)
    if edition is None or edition.status != EditionStatus.sending.value:
        return bool(edition and edition.fanout_done)
    if edition.fanout_done:
        dispatch.start_refill(edition_id)
        return True
    planned = rt.planned(edition_id)
    alert = edition.kind == EditionKind.alert.value
    cursor = edition.fanout_cursor
    picks_cache: dict[frozenset[str], bool] = {}
    while True:
        with rt.session() as session, session.begin():
            page = store.list_active_page(session, cursor, FANOUT_PAGE)
            if not page:
                break
            rows = []
            for subscriber_id, categories, cadence in page:
                key = category_key(split_categories(categories))
                if key not in picks_cache:
                    picks_cache[key] = bool(pick_for(key, planned))
                if alert:
                    # An alert goes to instant readers who follow its category, and only them.
                    if cadence != Cadence.instant.value or not picks_cache[key]:
                        continue
                    reason = None
                else:
                    reason = (
                        SKIP_INSTANT
                        if cadence != Cadence.weekly.value
                        else None
                        if picks_cache[key]
                        else SKIP_NO_MATCH
                    )
                rows.append(
                    {
                        "edition_id": edition_id,
                        "subscriber_id": subscriber_id,
                        "status": (
                            DeliveryStatus.skipped if reason else DeliveryStatus.queued
                        ).value,
                        "last_error": reason,
                        "attempts": 0,
                    }
                )
            store.insert_deliveries(session, rows)
            cursor = page[-1][0]
            store.mark_fanout_progress(session, edition_id, cursor)
        refill(rt, edition_id, utcnow(), dispatch)
    with rt.session() as session, session.begin():
        store.mark_fanout_done(session, edition_id)
    refill(rt, edition_id, utcnow(), dispatch)
    finish_if_done(rt, edition_id)
    dispatch.start_refill(edition_id)
    return True


def queue_window(rt: Runtime) -> int:
    """How many deliveries of an edition may wait in Redis at once.

    Bounded by NEWSLETTER_QUEUE_WINDOW, and under a send rate by about a minute's worth, so
    that Redis holds little more than the workers can take and a pause empties it fast.
    """
    window = rt.settings.queue_window
    if rt.settings.send_rate > 0:
        window = min(window, max(10, int(rt.settings.send_rate * 60)))
    return window


def refill(rt: Runtime, edition_id: int, now: datetime, dispatch: Dispatch) -> int:
    """Hand owed deliveries that no job carries, and whose backoff is over, to new jobs, up to
    the queue window; returns how many.

    Rows waiting out a backoff are not in the queue and take no room in the window; a row a
    job carries is never given a second one (``store.stamp_jobs`` decides in one statement).
    """
    with rt.session() as session:
        edition = store.get_edition_by_id(session, edition_id)
        if edition is None or edition.status != EditionStatus.sending.value:
            return 0
        in_flight = store.count_in_flight(session, edition_id)
    room = queue_window(rt) - in_flight
    if room <= 0:
        return 0
    with rt.session() as session, session.begin():
        jobs = store.stamp_jobs(session, edition_id, room, now)
    if jobs:
        dispatch.enqueue(jobs)
    return len(jobs)


def finish_if_done(rt: Runtime, edition_id: int) -> bool:
    """Mark the edition sent when fan-out is done and no delivery is owed."""
    with rt.session() as session, session.begin():
        done = store.finish_edition_if_done(session, edition_id)
    if done:
        log.info("edition %s: every delivery is done", edition_id)
    return done


def recover(rt: Runtime, edition_id: int, now: datetime, dispatch: Dispatch) -> int:
    """Take back deliveries whose worker is gone, give jobs the queue lost to new ones, and
    top the queue up; returns how many were enqueued.

    A job is lost only when the queue says so (Redis restarted or was flushed, or it was
    dead-lettered), never for having waited long: a slow queue is left alone.
    """
    with rt.session() as session, session.begin():
        released = store.release_stuck(
            session, edition_id, store.stuck_before(now, rt.settings.stuck_after_s)
        )
    if released:
        log.warning("edition %s: took back %d deliveries left sending", edition_id, released)
    with rt.session() as session:
        carried = store.list_carried(session, edition_id, now - timedelta(seconds=LOST_AFTER_S))
    if carried:
        alive = dispatch.jobs_alive(job_id for _delivery_id, job_id in carried)
        lost = [(d, job_id) for d, job_id in carried if job_id not in alive]
        if lost:
            with rt.session() as session, session.begin():
                cleared = store.clear_jobs(session, lost)
            log.warning("edition %s: the queue lost %d jobs; enqueueing again", edition_id, cleared)
    return refill(rt, edition_id, now, dispatch)


def sweep(rt: Runtime, now: datetime, dispatch: Dispatch) -> dict[str, int]:
    """One pass over every edition being sent: restart stalled fan-outs and lost refill chains,
    recover, finish."""
    # Sends the server took whose sent-mark only reached Redis: written before anything is
    # taken back, so none of them is sent again.
    totals = {"editions": 0, "requeued": 0, "finished": 0, "fanouts": 0}
    totals["accepted"] = mark_accepted(rt)
    stale = store.stuck_before(now, rt.settings.stuck_after_s)
    with rt.session() as session:
        editions = store.list_editions(session, (EditionStatus.sending.value,))
    for edition in editions:
        assert edition.id is not None
        totals["editions"] += 1
        if not edition.fanout_done and (edition.fanout_at is None or edition.fanout_at < stale):
            dispatch.start_fan_out(edition.id)
            totals["fanouts"] += 1
        totals["requeued"] += recover(rt, edition.id, now, dispatch)
        finished = finish_if_done(rt, edition.id)
        totals["finished"] += int(finished)
        if edition.fanout_done and not finished:
            dispatch.start_refill(edition.id)
    return totals


ALERT_WINDOW = timedelta(hours=48)


def send_alerts(rt: Runtime, now: datetime, dispatch: Dispatch) -> list[str]:
    """Start an instant alert for every comparison published lately that had none.

    Published in the last 48 hours and not in the future; each comparison is alerted once
    (its alert edition is unique), whoever calls this and however often.
    """
    with rt.session() as session:
        ids = store.list_unalerted(session, now - ALERT_WINDOW, now)
    started = []
    for comparison_id in ids:
        with rt.session() as session:
            [view] = store.get_comparison_views(session, [comparison_id])
        mail = rt.renderer.render_alert(view)
        html = mail.html.fill(sample_values(rt.settings.public_url), escape=True)
        key = store.alert_key(comparison_id)
        edition, created = store.create_edition(
            rt.engine, key, [comparison_id], mail.subject, html, kind=EditionKind.alert
        )
        if not created or edition.id is None:
            continue
        with rt.session() as session, session.begin():
            store.mark_edition_status(
                session, edition.id, EditionStatus.sending, (EditionStatus.draft.value,)
            )
        dispatch.start_fan_out(edition.id)
        started.append(key)
    return started


# --- one delivery ---------------------------------------------------------------------------


def links_for(rt: Runtime, subscriber_token: str) -> tuple[str, str]:
    """The unsubscribe and preferences URLs of a subscriber, with signed tokens."""
    base = rt.settings.public_url
    key = rt.secret_key
    return (
        f"{base}/unsubscribe/{sign_link(key, 'unsubscribe', subscriber_token)}",
        f"{base}/preferences/{sign_link(key, 'preferences', subscriber_token)}",
    )


def deliver(rt: Runtime, delivery_id: int) -> str:
    """Send one delivery: claim, load, render, build, send, record. Returns its new status.

    Safe to run twice or concurrently: only the run whose claim succeeds sends, and it keeps
    the claim (its lease renewed by the writer) until the outcome is recorded. Every write
    goes through ``Runtime.writes``. The edition is marked sent by the refill chain and the
    sweep, not here.
    """
    claim = rt.writes.claim(delivery_id)
    if claim is None:
        return "not owed"
    try:
        return _deliver_claimed(rt, claim)
    except Exception as exc:
        # Before the server took the message (after, nothing raises): counted as an attempt,
        # so a delivery whose job keeps failing ends `failed` after NEWSLETTER_MAX_ATTEMPTS.
        # Should even that write fail, the row stays `sending` and the sweep takes it back.
        log.exception("delivery %s: unexpected error", delivery_id)
        return _retry_or_fail(rt, claim, f"internal error: {exc}")
    finally:
        rt.writes.forget(delivery_id)


def _deliver_claimed(rt: Runtime, claim: Claim) -> str:
    writes, delivery_id = rt.writes, claim.delivery_id
    edition = rt.edition_info(claim.edition_id)
    if edition.status == EditionStatus.paused.value:
        # Back to the database's list of owed work; `resume` hands it to a job again.
        writes.release(delivery_id)
        return "paused"
    skip_reason = _skip_reason(rt, claim, edition)
    if skip_reason:
        writes.record(delivery_id, Outcome(DeliveryStatus.skipped, error=skip_reason))
        return DeliveryStatus.skipped.value
    try:
        envelope_from, message_id, data = _build(rt, claim, edition)
    except Exception as exc:
        # A damaged row or a template that fails: counted as an attempt, so it ends `failed`.
        log.exception("delivery %s: cannot build the message", delivery_id)
        return _retry_or_fail(rt, claim, f"cannot build the message: {exc}")
    if rt.settings.send_rate > 0 or rt.settings.domain_rates:
        rt.throttle.wait(claim.email)
    if not writes.still_held(claim):
        # Held past the lease by a stall of this process: the sweep took it back and it is
        # someone else's now. Sending would be the duplicate.
        log.warning("delivery %s: claim taken back while waiting; not sending", delivery_id)
        return "claim lost"
    try:
        rt.transport.send(envelope_from, claim.email, data)
    except RecipientRefused as exc:
        return _refused(rt, claim, exc)
    except PermanentFailure as exc:
        writes.record(delivery_id, Outcome(DeliveryStatus.failed, error=str(exc)))
        return DeliveryStatus.failed.value
    except UncertainDelivery as exc:
        return _retry_or_fail(rt, claim, str(exc), uncertain=True)
    except TemporaryFailure as exc:
        return _retry_or_fail(rt, claim, str(exc))
    # The server took it: from here on, nothing may send it again.
    _record_sent(rt, delivery_id, message_id)
    return DeliveryStatus.sent.value


def _skip_reason(rt: Runtime, claim: Claim, edition: EditionInfo) -> str | None:
    if edition.status == EditionStatus.cancelled.value:
        return "the edition was cancelled"
    if claim.subscriber_status != SubscriberStatus.active.value:
        return f"subscriber is {claim.subscriber_status}"
    if not rt.picks_for(claim.edition_id, claim.categories):
        return SKIP_NO_MATCH
    return None


def _build(rt: Runtime, claim: Claim, edition: EditionInfo) -> tuple[str, str, bytes]:
    """The envelope sender, Message-ID and bytes of a claimed delivery's message."""
    picks = rt.picks_for(claim.edition_id, claim.categories)
    mail = rt.mail_for(edition.week, picks, edition.kind)
    unsubscribe_url, preferences_url = links_for(rt, claim.token)
    token = verp_token(rt.secret_key, claim.delivery_id)
    message_id = message_id_for(
        claim.delivery_id, edition.week, rt.settings.mail_domain, rt.secret_key, claim.token
    )
    data = build_message(
        mail,
        Recipient(claim.email, claim.name, unsubscribe_url, preferences_url),
        rt.identity,
        message_id,
        utcnow(),
        extra_headers={
            "X-Newsletter-Delivery": token,
            "Feedback-ID": rt.identity.feedback_id(edition.week, edition.kind),
        },
    )
    envelope_from = verp_address(rt.settings.bounce_local_part, rt.settings.bounce_domain, token)
    return envelope_from, message_id, data


def _retry_or_fail(rt: Runtime, claim: Claim, error: str, uncertain: bool = False) -> str:
    """Back to the queue after a backoff, or `failed` once the attempts are used up."""
    settings = rt.settings
    if claim.attempts >= settings.max_attempts:
        rt.writes.record(
            claim.delivery_id,
            Outcome(
                DeliveryStatus.failed,
                error=f"gave up after {claim.attempts} attempts: {error}",
                uncertain=uncertain,
            ),
        )
        return DeliveryStatus.failed.value
    delay_s = backoff_s(claim.attempts, settings.retry_min_s, settings.retry_max_s)
    retry_at = utcnow() + timedelta(seconds=delay_s)
    rt.writes.record(
        claim.delivery_id,
        Outcome(DeliveryStatus.queued, error=error, retry_at=retry_at, uncertain=uncertain),
    )
    return "retrying"


ACCEPTED_KEY = "newsletter:accepted"
"""Redis hash of delivery id → Message-ID: sends the server took whose sent-mark could not be
written; the sweep writes them (the database was down, Redis was not)."""


def _record_sent(rt: Runtime, delivery_id: int, message_id: str) -> None:
    """Mark a delivery the server took as sent. The writer retries a failing sent-mark; should
    the database stay away past its patience, the acceptance goes to Redis for the sweep, and
    the claim is kept until then so that the sweep does not take the row back meanwhile."""
    try:
        rt.writes.mark_sent(delivery_id, message_id)
    except Exception as exc:
        log.error("delivery %s: accepted by the server but not recorded: %s", delivery_id, exc)
        rt.redis.hset(ACCEPTED_KEY, str(delivery_id), message_id)


def mark_accepted(rt: Runtime) -> int:
    """Write the sent-marks that reached only Redis (see ``_record_sent``); returns how many."""
    pending = rt.redis.hgetall(ACCEPTED_KEY)
    if not pending:
        return 0
    marked = 0
    for raw_id, raw_message_id in pending.items():
        delivery_id = int(raw_id)
        message_id = (
            raw_message_id.decode() if isinstance(raw_message_id, bytes) else raw_message_id
        )
        with rt.session() as session, session.begin():
            store.mark_delivery(
                session,
                delivery_id,
                DeliveryStatus.sent,
                message_id=message_id,
                only_from=(DeliveryStatus.sending.value, DeliveryStatus.queued.value),
            )
        rt.redis.hdel(ACCEPTED_KEY, raw_id)
        marked += 1
    return marked


def _refused(rt: Runtime, claim: Claim, exc: RecipientRefused) -> str:
    """A 5xx at RCPT: a bounce at send time, recorded and acted on like any other."""
    facts = refusal_facts(
        exc.code,
        exc.text,
        claim.email,
        subscriber_id=claim.subscriber_id,
        delivery_id=claim.delivery_id,
        edition_id=claim.edition_id,
    )
    status = (
        DeliveryStatus.bounced if facts.kind in ("hard", "complaint") else DeliveryStatus.failed
    )
    rt.writes.record(claim.delivery_id, Outcome(status, error=str(exc)))
    with rt.session() as session, session.begin():
        record_bounce(session, facts, policy_of(rt))
    return status.value


def policy_of(rt: Runtime) -> Policy:
    """The bounce policy from settings."""
    return Policy(rt.settings.soft_bounce_limit, rt.settings.soft_bounce_window_days)


# --- operator actions ---------------------------------------------------------------------


def pause(rt: Runtime, week: str) -> bool:
    """Stop handing out deliveries; jobs already queued put their delivery back."""
    edition = get_edition(rt, week)
    rt.forget_edition(edition.id or 0)
    with rt.session() as session, session.begin():
        return store.mark_edition_status(
            session,
            edition.id or 0,
            EditionStatus.paused,
            (EditionStatus.sending.value, EditionStatus.draft.value),
        )


def resume(rt: Runtime, week: str, now: datetime, dispatch: Dispatch) -> int:
    """Sending again, handing whatever the database says is owed (and no job carries) to new
    jobs; returns how many. Resuming twice enqueues nothing twice."""
    edition = get_edition(rt, week)
    assert edition.id is not None
    if edition.status == EditionStatus.cancelled.value:
        raise InputError(f"the {week} edition was cancelled; it cannot be resumed")
    with rt.session() as session, session.begin():
        store.mark_edition_status(
            session,
            edition.id,
            EditionStatus.sending,
            (EditionStatus.paused.value, EditionStatus.draft.value, EditionStatus.sent.value),
        )
    rt.forget_edition(edition.id)
    # Fan-out is idempotent: it resumes an unfinished one, and either way it (re)starts the
    # refill chain that marks the edition sent once nothing is owed.
    dispatch.start_fan_out(edition.id)
    requeued = recover(rt, edition.id, now, dispatch)
    finish_if_done(rt, edition.id)
    return requeued


def cancel(rt: Runtime, week: str) -> int:
    """Cancel an edition: nothing more is sent; returns how many deliveries were skipped."""
    edition = get_edition(rt, week)
    rt.forget_edition(edition.id or 0)
    with rt.session() as session, session.begin():
        store.mark_edition_status(
            session,
            edition.id or 0,
            EditionStatus.cancelled,
            (EditionStatus.draft.value, EditionStatus.sending.value, EditionStatus.paused.value),
        )
        return store.skip_owed(session, edition.id or 0, "the edition was cancelled")


def retry_failed(rt: Runtime, week: str, now: datetime, dispatch: Dispatch) -> int:
    """Give failed deliveries another round of attempts; returns how many.

    The edition goes back to `sending` first, in the same transaction: that takes its row
    lock, so the check that marks an edition sent waits for this one and sees its rows.
    """
    edition = get_edition(rt, week)
    assert edition.id is not None
    with rt.session() as session, session.begin():
        store.lock_edition(session, edition.id)
        store.mark_edition_status(
            session,
            edition.id,
            EditionStatus.sending,
            (EditionStatus.sent.value, EditionStatus.sending.value),
        )
        count = store.requeue_failed(session, edition.id)
    rt.forget_edition(edition.id)
    refill(rt, edition.id, now, dispatch)
    dispatch.start_refill(edition.id)  # marks the edition sent again once nothing is owed
    if not count:
        finish_if_done(rt, edition.id)
    return count


def status(rt: Runtime, week: str) -> EditionStatusView:
    """Counters of an edition, from the delivery rows (the truth)."""
    edition = get_edition(rt, week)
    assert edition.id is not None
    with rt.session() as session:
        counts = store.count_deliveries(session, edition.id)
        bounces = store.count_bounce_kinds(session, edition.id)
        carried = len(store.list_edition_comparison_ids(session, edition.id))
        uncertain = store.count_uncertain(session, edition.id)
    return EditionStatusView(
        week=edition.week,
        status=edition.status,
        total=sum(counts.values()),
        comparisons=carried,
        bounces=bounces,
        uncertain=uncertain,
        **counts,
    )


def test_send(rt: Runtime, email: str, week: str, now: datetime) -> str:
    """Send the week's digest to one address now: no delivery row, ``[TEST]`` subject."""
    edition, _ = ensure_edition(rt, week, now)
    if edition is None or edition.id is None:
        raise NotFound(f"nothing to send for {week}: no comparisons in that week")
    ids = [c.id for c in rt.planned(edition.id)]
    mail = rt.mail_for(week, tuple(ids))
    values = sample_values(rt.settings.public_url)
    message_id = test_message_id(rt.settings.mail_domain)
    data = build_message(
        mail,
        Recipient(email, "", values["unsubscribe_url"], values["preferences_url"]),
        rt.identity,
        message_id,
        now,
        subject_prefix="[TEST] ",
        extra_headers={
            "X-Newsletter-Test": "yes",
            "Feedback-ID": rt.identity.feedback_id(week, "test"),
        },
    )
    rt.transport.send(rt.settings.bounce_address, email, data)
    return message_id
