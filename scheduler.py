"""The schedule: the weekly edition on NEWSLETTER_WEEKLY_CRON, and every minute the instant
alerts that are due (one per batch of comparisons published within NEWSLETTER_ALERT_BATCH_S).

This module only schedules. The weekly job runs once at start and then at each fire; each run
asks the database about the week of the crontab's last fire and lets the weekly fire decision
(``worker.sending.weekly``) say whether to send it, so a scheduler that was down at fire time
catches up within NEWSLETTER_MISFIRE_GRACE_S. The sending is ``worker.sending.control.start_send``.
Two schedulers may run at once (two hosts, a restart overlapping): they decide one at a time,
and the edition's unique week makes the database the judge even if they did not.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from redis.exceptions import LockError

from worker.actors import actors_of
from worker.config import Settings
from worker.errors import NewsletterError, NotFound
from worker.heartbeat import write_scheduler_heartbeat
from worker.models import EditionStatus, utcnow
from worker.runtime import Runtime, open_runtime
from worker.sending import control, pipeline, weekly

log = logging.getLogger("scheduler")

ALERT_EVERY_S = 60
WEEKLY_JOB = "weekly-edition"
WEEKLY_CATCH_UP_JOB = "weekly-edition-catch-up"
WEEKLY_RETRY_JOB = "weekly-edition-retry"
WEEKLY_LOCK = "newsletter:weekly"
WEEKLY_LOCK_S = 120
"""Longest a decision and its start_send may hold the lock before another scheduler goes on."""
RETRY_AFTER_S = 60


def send_due_week(settings: Settings) -> weekly.Decision:
    """Decide from the database whether the crontab's last fire is owed an edition; send it."""
    rt = open_runtime(settings)
    try:
        # The lock only keeps two schedulers from both asking start_send (which would queue the
        # week's deliveries twice); the unique week and the claims keep mail single without it.
        lock = rt.redis.lock(
            WEEKLY_LOCK, timeout=WEEKLY_LOCK_S, blocking_timeout=WEEKLY_LOCK_S + 30
        )
        if not lock.acquire():
            raise LockError(f"{WEEKLY_LOCK} held longer than {WEEKLY_LOCK_S + 30} s")
        try:
            return _decide_and_send(rt, settings)
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("the weekly decision outlived its %d s lock", WEEKLY_LOCK_S)
    finally:
        rt.close()


def _decide_and_send(rt: Runtime, settings: Settings) -> weekly.Decision:
    now = datetime.now(settings.tz)
    fire = weekly.fire_times(settings.weekly_cron, settings.tz, now)
    decision = weekly.decide(fire, now, settings.misfire_grace_s, _status_of(rt, fire.week))
    result = decision.describe()
    if decision.action is weekly.Action.missed:
        log.warning("%s", decision.describe())
    elif decision.action is not weekly.Action.send:
        log.info("%s", decision.describe())
    else:
        assert decision.week is not None
        outcome = control.start_send(rt, decision.week, now, actors_of(rt))
        log.info("%s: %s", decision.describe(), outcome.message)
        result = f"{decision.describe()}: {outcome.message}"
    _beat(rt, settings, result)
    return decision


def _beat(rt: Runtime, settings: Settings, result: str | None = None) -> None:
    """Tell the console the scheduler is alive, when it fires next and what it last decided."""
    now = datetime.now(settings.tz)
    try:
        next_at = weekly.fire_times(settings.weekly_cron, settings.tz, now).next_at
        write_scheduler_heartbeat(rt.redis, now, next_at, result)
    except Exception as exc:  # the heartbeat is for people; it never stops a send
        log.warning("could not write the scheduler's heartbeat: %s", exc)


def _status_of(rt: Runtime, week: str | None) -> EditionStatus | None:
    if week is None:
        return None
    try:
        return EditionStatus(control.get_edition(rt, week).status)
    except NotFound:
        return None


def run_weekly(settings: Settings, scheduler: BaseScheduler) -> weekly.Decision | None:
    """The weekly job: decide and send; on failure, decide again in a minute.

    A failure at start is usually the database or Redis not up yet; waiting a week for the
    next fire would lose the catch-up, so a one-off retry asks again (the grace still applies).
    """
    try:
        return send_due_week(settings)
    except Exception as exc:
        log.exception("weekly run failed; deciding again in %d s", RETRY_AFTER_S)
        try:
            rt = open_runtime(settings)
            try:
                _beat(rt, settings, f"failed: {exc}; deciding again in {RETRY_AFTER_S} s")
            finally:
                rt.close()
        except Exception:  # the database or Redis is what failed: nothing to tell
            pass
        scheduler.add_job(
            run_weekly,
            DateTrigger(datetime.now(settings.tz) + timedelta(seconds=RETRY_AFTER_S)),
            args=[settings, scheduler],
            id=WEEKLY_RETRY_JOB,
            misfire_grace_time=None,
            replace_existing=True,
        )
        return None


def send_alerts(settings: Settings) -> list[str]:
    """The frequent job: the instant alerts due now, one per batch of comparisons published
    together (``worker.sending.planning.alert_batches``)."""
    rt = open_runtime(settings)
    try:
        _beat(rt, settings)
        started = pipeline.send_alerts(rt, utcnow(), actors_of(rt))
        for key in started:
            log.info("instant alert %s: sending", key)
        return started
    except NewsletterError as exc:
        log.error("instant alerts failed: %s", exc)
        return []
    finally:
        rt.close()


def build(settings: Settings) -> BlockingScheduler:
    """A scheduler whose weekly job runs once at start, then on the configured crontab and zone."""
    scheduler = BlockingScheduler(timezone=settings.tz)
    now = datetime.now(settings.tz)
    scheduler.add_job(
        run_weekly,
        DateTrigger(now),
        args=[settings, scheduler],
        id=WEEKLY_CATCH_UP_JOB,
        misfire_grace_time=None,
    )
    scheduler.add_job(
        run_weekly,
        CronTrigger.from_crontab(settings.weekly_cron, timezone=settings.tz),
        args=[settings, scheduler],
        id=WEEKLY_JOB,
        # APScheduler would count the first fire from now, and from inside the hour a spring
        # change skips it misses that day's fire; the decision counts it from an earlier fire.
        next_run_time=weekly.fire_times(settings.weekly_cron, settings.tz, now).next_at,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,  # lateness is the decision's business, against its own grace
        replace_existing=True,
    )
    scheduler.add_job(
        send_alerts,
        IntervalTrigger(seconds=ALERT_EVERY_S),
        args=[settings],
        id="instant-alerts",
        coalesce=True,
        max_instances=1,
        replace_existing=True,
    )
    return scheduler


def run(settings: Settings) -> None:
    """Run the schedule until SIGINT/SIGTERM."""
    scheduler = build(settings)
    log.info(
        "weekly edition scheduled: %r (%s), missed fires sent within %d s",
        settings.weekly_cron,
        settings.timezone,
        settings.misfire_grace_s,
    )
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
