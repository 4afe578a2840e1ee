"""The weekly schedule: the job fires on the crontab and sends the current week once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import scheduler
from tests.conftest import SmtpHandler
from tests.factories import comparison, load, subscribe
from worker.config import Settings
from worker.models import utcnow
from worker.runtime import Runtime


def test_the_job_fires_on_the_configured_crontab_and_time_zone(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(weekly_cron="0 15 * * fri", timezone="Europe/Paris")
    jobs = {job.id: job for job in scheduler.build(settings).get_jobs()}
    fire = scheduler.next_run(settings)
    assert fire is not None
    assert (fire.weekday(), fire.hour, fire.minute) == (4, 15, 0)
    assert fire.utcoffset() == timedelta(hours=1)  # CET in late November
    assert set(jobs) == {"weekly-edition", "instant-alerts"}


def test_two_schedulers_firing_together_send_the_week_once(
    rt: Runtime,
    settings: Settings,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    load(rt, comparison("dev-duel", "Developer Tools", utcnow() - timedelta(minutes=5)))
    subscribe(rt, ("ada@example.com", "", ()), ("bob@example.com", "", ()))
    first = scheduler.send_current_week(settings)
    second = scheduler.send_current_week(settings)
    worker()
    assert first.endswith(": sending")
    assert "already" in second
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == ["ada@example.com", "bob@example.com"]
