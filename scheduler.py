"""The schedule: on NEWSLETTER_WEEKLY_CRON, build and send the current week's edition; every
minute, an instant alert for each newly published comparison.

This module only schedules; the work is ``worker.editions.start_send``. Two schedulers may run
at once (two hosts, a restart overlapping): the edition's unique week and the idempotent fan-out
make the second one a no-op.
"""

from __future__ import annotations

import logging
from datetime import datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from worker import editions
from worker.config import Settings
from worker.errors import NewsletterError
from worker.models import utcnow
from worker.runtime import open_runtime

log = logging.getLogger("scheduler")

ALERT_EVERY_S = 60


def send_current_week(settings: Settings) -> str:
    """The scheduled job: create this week's edition and queue it for the workers."""
    rt = open_runtime(settings)
    try:
        now = utcnow()
        week = editions.resolve_week(rt, None, now)
        outcome = editions.start_send(rt, week, now, rt.actors)
        log.info("%s", outcome.message)
        return outcome.message
    except NewsletterError as exc:
        log.error("weekly send failed: %s", exc)
        return str(exc)
    finally:
        rt.close()


def send_alerts(settings: Settings) -> list[str]:
    """The frequent job: an instant alert for each comparison published since the last run."""
    rt = open_runtime(settings)
    try:
        started = editions.send_alerts(rt, utcnow(), rt.actors)
        for key in started:
            log.info("instant alert %s: sending", key)
        return started
    except NewsletterError as exc:
        log.error("instant alerts failed: %s", exc)
        return []
    finally:
        rt.close()


def build(settings: Settings) -> BlockingScheduler:
    """A scheduler with the weekly job on the configured crontab and time zone."""
    scheduler = BlockingScheduler(timezone=settings.tz)
    scheduler.add_job(
        send_current_week,
        CronTrigger.from_crontab(settings.weekly_cron, timezone=settings.tz),
        args=[settings],
        id="weekly-edition",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=6 * 3600,
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


def next_run(settings: Settings) -> datetime | None:
    """When the weekly job fires next."""
    trigger = CronTrigger.from_crontab(settings.weekly_cron, timezone=settings.tz)
    return trigger.get_next_fire_time(None, datetime.now(settings.tz))


def run(settings: Settings) -> None:
    """Run the schedule until SIGINT/SIGTERM."""
    scheduler = build(settings)
    log.info(
        "weekly edition scheduled: %r (%s), next run %s",
        settings.weekly_cron,
        settings.timezone,
        next_run(settings),
    )
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
