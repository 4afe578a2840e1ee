"""The edition pipeline: fan out → refill → finish, the sweep that keeps it honest after crashes,
and instant alerts. Reads as the sentence listmonk's campaign manager does: pick the edition,
page subscribers by id, hand one job per delivery to the workers, mark it sent when nothing
is owed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from worker.catalog import queries as catalog
from worker.dispatch import Dispatch
from worker.models import (
    EditionKind,
    EditionStatus,
    utcnow,
)
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.sending.caches import editions_of
from worker.sending.delivery import check_can_mail_readers, mark_accepted
from worker.sending.fanout import row_for
from worker.sending.guard import WINDOW, Attempts, autopause_reason
from worker.sending.planning import (
    alert_batches,
    alert_key,
    category_key,
    pick_for,
)
from worker.sending.render import sample_values
from worker.sending.states import from_statuses
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import split_categories

log = logging.getLogger(__name__)


FANOUT_PAGE = 1000


LOST_AFTER_S = 30
"""A queued delivery's job is looked for in the queue only once it was handed out this long
ago: the moment between stamping a row and the job reaching Redis is never mistaken for loss."""


def fan_out(rt: Runtime, edition_id: int, dispatch: Dispatch) -> bool:
    """Give every active subscriber a delivery row, page by page, resuming where it stopped.

    Deliveries are enqueued as each page lands, so sending starts before fan-out ends; once
    every row exists, the refill chain takes over. Returns True when fan-out is complete.
    """
    with rt.session() as session:
        edition = sending.get_edition_by_id(session, edition_id)
    if edition is None or edition.status != EditionStatus.sending.value:
        return bool(edition and edition.fanout_done)
    if edition.fanout_done:
        dispatch.start_refill(edition_id)
        return True
    planned = editions_of(rt).planned(edition_id)
    cursor = edition.fanout_cursor
    picks_cache: dict[frozenset[str], bool] = {}
    while True:
        with rt.session() as session, session.begin():
            page = subscribers.list_active_page(session, cursor, FANOUT_PAGE)
            if not page:
                break
            rows = []
            for subscriber_id, categories, cadence in page:
                key = category_key(split_categories(categories))
                if key not in picks_cache:
                    picks_cache[key] = bool(pick_for(key, planned))
                row = row_for(edition.kind, cadence, picks_cache[key])
                if row is not None:
                    rows.append(
                        {
                            "edition_id": edition_id,
                            "subscriber_id": subscriber_id,
                            "status": row.status.value,
                            "last_error": row.reason,
                            "attempts": 0,
                        }
                    )
            sending.insert_deliveries(session, rows)
            cursor = page[-1][0]
            sending.mark_fanout_progress(session, edition_id, cursor)
        refill(rt, edition_id, utcnow(), dispatch)
    with rt.session() as session, session.begin():
        sending.mark_fanout_done(session, edition_id)
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
    job carries is never given a second one (``sending.stamp_jobs`` decides in one statement).
    """
    with rt.session() as session:
        edition = sending.get_edition_by_id(session, edition_id)
        if edition is None or edition.status != EditionStatus.sending.value:
            return 0
        in_flight = sending.count_in_flight(session, edition_id)
    room = queue_window(rt) - in_flight
    if room <= 0:
        return 0
    with rt.session() as session, session.begin():
        jobs = sending.stamp_jobs(session, edition_id, room, now)
    if jobs:
        dispatch.enqueue(jobs)
    return len(jobs)


GUARD_SINCE = "newsletter:guard-since:"
"""Per edition: the last attempted delivery id when it was resumed; the guard rail counts only
attempts after it, so the attempts that tripped it do not trip it again at once."""


def pause_edition(rt: Runtime, edition_id: int, reason: str) -> bool:
    """Pause an edition, saying why; workers see it within a second. True if it moved."""
    editions_of(rt).forget_edition(edition_id)
    with rt.session() as session, session.begin():
        return sending.mark_edition_paused(session, edition_id, reason)


def reset_guard(rt: Runtime, edition_id: int) -> None:
    """Start the guard rail's window afresh (an operator resumed the edition)."""
    with rt.session() as session:
        last = sending.get_last_attempted_id(session, edition_id)
    rt.redis.set(f"{GUARD_SINCE}{edition_id}", last)


def guard(rt: Runtime, edition_id: int) -> str | None:
    """Pause a sending edition whose recent attempts bounce or fail too often (the decision is
    ``guard.autopause_reason``); returns the reason when it did. The refill chain asks it once
    a second (the look at the last attempts costs tens of ms at 100,000 deliveries)."""
    threshold = rt.settings.autopause_bounce_rate
    if threshold <= 0:
        return None
    since = rt.redis.get(f"{GUARD_SINCE}{edition_id}")
    with rt.session() as session:
        total, bounced, failed = sending.count_recent_attempts(
            session, edition_id, int(since or 0), WINDOW
        )
    reason = autopause_reason(Attempts(total, bounced, failed), threshold)
    if reason is None or not pause_edition(rt, edition_id, reason):
        return None
    log.warning("edition %s: %s", edition_id, reason)
    return reason


def finish_if_done(rt: Runtime, edition_id: int) -> bool:
    """Mark the edition sent when fan-out is done and no delivery is owed."""
    with rt.session() as session, session.begin():
        done = sending.finish_edition_if_done(session, edition_id)
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
        released = sending.release_stuck(
            session, edition_id, sending.stuck_before(now, rt.settings.stuck_after_s)
        )
    if released:
        log.warning("edition %s: took back %d deliveries left sending", edition_id, released)
    with rt.session() as session:
        carried = sending.list_carried(session, edition_id, now - timedelta(seconds=LOST_AFTER_S))
    if carried:
        alive = dispatch.jobs_alive(job_id for _delivery_id, job_id in carried)
        lost = [(d, job_id) for d, job_id in carried if job_id not in alive]
        if lost:
            with rt.session() as session, session.begin():
                cleared = sending.clear_jobs(session, lost)
            log.warning("edition %s: the queue lost %d jobs; enqueueing again", edition_id, cleared)
    return refill(rt, edition_id, now, dispatch)


def sweep(rt: Runtime, now: datetime, dispatch: Dispatch) -> dict[str, int]:
    """One pass over every edition being sent: restart stalled fan-outs and lost refill chains,
    recover, finish."""
    # Sends the server took whose sent-mark only reached Redis: written before anything is
    # taken back, so none of them is sent again.
    totals = {"editions": 0, "requeued": 0, "finished": 0, "fanouts": 0}
    totals["accepted"] = mark_accepted(rt)
    stale = sending.stuck_before(now, rt.settings.stuck_after_s)
    with rt.session() as session:
        editions = sending.list_editions(session, (EditionStatus.sending.value,))
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
    """Start the instant alerts that are due: one per batch of comparisons published within
    NEWSLETTER_ALERT_BATCH_S of each other (``planning.alert_batches``).

    Published in the last 48 hours and not in the future; each comparison is alerted once:
    an alert is keyed by its first comparison (its edition is unique), whoever calls this and
    however often.
    """
    check_can_mail_readers(rt.settings)
    with rt.session() as session:
        unalerted = sending.list_unalerted(session, now - ALERT_WINDOW, now)
    started = []
    for batch in alert_batches(unalerted, now, rt.settings.alert_batch_s):
        # Newest first in the mail, as in a digest; keyed by the one that opened the batch.
        ids = [c.id for c in sorted(batch, key=lambda c: (c.published_at, c.id), reverse=True)]
        key = alert_key(batch[0].id)
        with rt.session() as session:
            views = catalog.get_comparison_views(session, ids)
        mail = rt.renderer.render_alert(views, key=key, follows_all=True)
        html = mail.html.fill(sample_values(rt.settings.public_url), escape=True)
        edition, created = sending.create_edition(
            rt.engine, key, ids, mail.subject, html, kind=EditionKind.alert
        )
        if not created or edition.id is None:
            continue
        with rt.session() as session, session.begin():
            sending.mark_edition_status(
                session, edition.id, EditionStatus.sending, from_statuses("send")
            )
        dispatch.start_fan_out(edition.id)
        started.append(key)
    return started
