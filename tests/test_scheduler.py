"""The weekly schedule, run as `newsletter scheduler` runs it, under a controlled clock.

The scheduler built by ``scheduler.build`` runs in a thread; its weekly job runs at start and
then on the crontab APScheduler holds. Each test watches the job's runs as APScheduler reports
them, and what the database and a real SMTP server saw.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.base import BaseScheduler

import scheduler
from tests.conftest import SmtpHandler, wait_until
from tests.factories import comparison, load, subscribe
from worker.config import Settings
from worker.runtime import Runtime
from worker.sending import queries as sending

PARIS = ZoneInfo("Europe/Paris")
WEEKLY = "weekly-edition"
RUN_TIMEOUT_S = 15.0
READERS = ("ada@example.com", "bob@example.com")


@dataclass
class Running:
    """A scheduler running in a thread, and the runs of its weekly job so far."""

    scheduler: BaseScheduler
    runs: queue.Queue[JobExecutionEvent]

    def next_run(self) -> JobExecutionEvent:
        """Wait for the weekly job's next run to end."""
        try:
            return self.runs.get(timeout=RUN_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"the weekly job did not run within {RUN_TIMEOUT_S} s") from None


@contextmanager
def running(settings: Settings) -> Iterator[Running]:
    """``scheduler.build(settings)`` started as the CLI starts it, stopped on the way out."""
    sched = scheduler.build(settings)
    runs: queue.Queue[JobExecutionEvent] = queue.Queue()

    def on_run(event: JobExecutionEvent) -> None:
        if event.job_id.startswith(WEEKLY):
            runs.put(event)

    sched.add_listener(on_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    thread = threading.Thread(target=sched.start, daemon=True)
    thread.start()
    wait_until(lambda: sched.running, 10)
    try:
        yield Running(sched, runs)
    finally:
        sched.shutdown(wait=True)
        thread.join(10)


def decided(run: JobExecutionEvent) -> str:
    """The action the weekly run decided on (it fails the test if the run raised)."""
    assert run.exception is None, run.traceback
    assert run.retval is not None, "the weekly run failed and was put off"
    return str(run.retval.action)


def weeks_with_an_edition(rt: Runtime) -> list[str]:
    with rt.session() as session:
        return sorted(e.week for e in sending.list_editions(session))


def mails_per_reader(smtp: SmtpHandler) -> dict[str, int]:
    return {reader: len(smtp.to(reader)) for reader in READERS}


def prepare_week(rt: Runtime, published_at: datetime) -> None:
    """One comparison published at ``published_at``, two readers."""
    load(rt, comparison("dev-duel", "Developer Tools", published_at))
    subscribe(rt, *((reader, "", ()) for reader in READERS))


# The default crontab (Fridays 15:00) in Paris: 2026-11-20 15:00 CET is a fire of 2026-W47.
FRIDAY_FIRE = datetime(2026, 11, 20, 15, 0, tzinfo=PARIS)
# Last Sunday of March, 02:30 does not exist in Paris: the fire is at 03:30 CEST (01:30 UTC).
SPRING_FIRE = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
# Last Sunday of October, 02:30 happens twice in Paris: 00:30 UTC (CEST), 01:30 UTC (CET).
FALL_FIRES = (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
SUNDAY_0230 = "30 2 * * sun"


@pytest.mark.parametrize(
    ("title", "crontab", "fire", "late", "week"),
    [
        ("missed by 2 h", "0 15 * * fri", FRIDAY_FIRE, timedelta(hours=2), "2026-W47"),
        (
            "a minute within the grace",
            "0 15 * * fri",
            FRIDAY_FIRE,
            timedelta(hours=5, minutes=59),
            "2026-W47",
        ),
        (
            "down over the spring change, back at 05:00 CEST",
            SUNDAY_0230,
            SPRING_FIRE,
            timedelta(hours=1, minutes=30),
            "2026-W13",
        ),
        (
            "down over the fall change, back at 02:10 CET, between the two 02:30s",
            SUNDAY_0230,
            FALL_FIRES[0],
            timedelta(minutes=40),
            "2026-W43",
        ),
        (
            "a Sunday fire caught up on Monday sends the Sunday's week",
            "0 23 * * sun",
            datetime(2026, 11, 29, 23, 0, tzinfo=PARIS),
            timedelta(hours=3),
            "2026-W48",
        ),
    ],
)
def test_a_fire_missed_within_the_grace_is_sent_once_at_start(
    title: str,
    crontab: str,
    fire: datetime,
    late: timedelta,
    week: str,
    make_settings: Callable[..., Settings],
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    settings = make_settings(weekly_cron=crontab, timezone="Europe/Paris")
    prepare_week(rt, fire - timedelta(days=1))
    with time_machine.travel(fire + late):
        with running(settings) as sched:
            assert decided(sched.next_run()) == "send", title
        worker()
    assert weeks_with_an_edition(rt) == [week]
    assert mails_per_reader(smtp) == {reader: 1 for reader in READERS}


@pytest.mark.parametrize(
    ("title", "crontab", "fire", "late", "week"),
    [
        ("missed by 8 h", "0 15 * * fri", FRIDAY_FIRE, timedelta(hours=8), "2026-W47"),
        (
            "one second past the grace",
            "0 15 * * fri",
            FRIDAY_FIRE,
            timedelta(hours=6, seconds=1),
            "2026-W47",
        ),
        (
            "down over the spring change, back at 09:31 CEST",
            SUNDAY_0230,
            SPRING_FIRE,
            timedelta(hours=6, minutes=1),
            "2026-W13",
        ),
    ],
)
def test_a_fire_missed_past_the_grace_is_logged_and_not_sent(
    title: str,
    crontab: str,
    fire: datetime,
    late: timedelta,
    week: str,
    make_settings: Callable[..., Settings],
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(weekly_cron=crontab, timezone="Europe/Paris")
    prepare_week(rt, fire - timedelta(days=1))
    with caplog.at_level(logging.INFO, logger="scheduler"):
        with time_machine.travel(fire + late):
            with running(settings) as sched:
                assert decided(sched.next_run()) == "missed", title
            worker()
    assert weeks_with_an_edition(rt) == []
    assert smtp.received == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(week in w and "missed" in w for w in warnings), warnings


def test_two_schedulers_starting_together_make_one_edition_and_mail_each_reader_once(
    make_settings: Callable[..., Settings],
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(timezone="Europe/Paris")
    prepare_week(rt, FRIDAY_FIRE - timedelta(days=1))
    with caplog.at_level(logging.INFO, logger="scheduler"):
        with time_machine.travel(FRIDAY_FIRE + timedelta(hours=2)):
            with running(settings) as first, running(settings) as second:
                runs = [first.next_run(), second.next_run()]
            worker()
    assert sorted(decided(run) for run in runs) == ["already-done", "send"]
    assert weeks_with_an_edition(rt) == ["2026-W47"]
    assert mails_per_reader(smtp) == {reader: 1 for reader in READERS}
    said = [r.getMessage() for r in caplog.records if r.name == "scheduler"]
    assert sum("2026-W47: sending" in line for line in said) == 1, said
    assert sum("2026-W47 is already sending" in line for line in said) == 1, said


def test_the_job_fires_on_the_configured_crontab_and_time_zone(
    make_settings: Callable[..., Settings],
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    # Not the default (Fridays 15:00): a scheduler that ignored the setting never fires here.
    settings = make_settings(weekly_cron="30 9 * * tue", timezone="Europe/Paris")
    fire = datetime(2026, 11, 24, 9, 30, tzinfo=PARIS)
    prepare_week(rt, fire - timedelta(days=1))
    with time_machine.travel(fire - timedelta(seconds=2)):
        with running(settings) as sched:
            assert decided(sched.next_run()) == "missed"  # at start: last Tuesday's fire
            assert weeks_with_an_edition(rt) == []
            at_fire = sched.next_run()
            assert at_fire.scheduled_run_time == fire
            assert decided(at_fire) == "send"
            job = sched.scheduler.get_job(WEEKLY)
            assert job.next_run_time == fire + timedelta(days=7)
        worker()
    assert weeks_with_an_edition(rt) == ["2026-W48"]
    assert mails_per_reader(smtp) == {reader: 1 for reader in READERS}


def test_over_the_spring_change_the_0230_fire_comes_at_0330_and_sends_its_week(
    make_settings: Callable[..., Settings],
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    settings = make_settings(weekly_cron=SUNDAY_0230, timezone="Europe/Paris")
    prepare_week(rt, SPRING_FIRE - timedelta(days=2))
    with time_machine.travel(SPRING_FIRE - timedelta(seconds=2)):  # 03:29:58 CEST
        with running(settings) as sched:
            assert decided(sched.next_run()) == "missed"  # at start: 22 March
            at_fire = sched.next_run()
            assert at_fire.scheduled_run_time.astimezone(UTC) == SPRING_FIRE
            assert decided(at_fire) == "send"
        worker()
    assert weeks_with_an_edition(rt) == ["2026-W13"]
    assert mails_per_reader(smtp) == {reader: 1 for reader in READERS}


def test_over_the_fall_change_the_0230_that_happens_twice_sends_once(
    make_settings: Callable[..., Settings],
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    settings = make_settings(weekly_cron=SUNDAY_0230, timezone="Europe/Paris")
    prepare_week(rt, FALL_FIRES[0] - timedelta(days=2))
    fired: list[Any] = []
    with time_machine.travel(FALL_FIRES[0] - timedelta(seconds=2)) as clock:
        with running(settings) as sched:
            assert decided(sched.next_run()) == "missed"  # at start: 18 October
            for fire in FALL_FIRES:
                clock.move_to(fire - timedelta(seconds=2))
                sched.scheduler.wakeup()  # it slept toward the fire on the clock before the move
                run = sched.next_run()
                fired.append((run.scheduled_run_time.astimezone(UTC), decided(run)))
        worker()
    assert fired == [(FALL_FIRES[0], "send"), (FALL_FIRES[1], "already-done")]
    assert weeks_with_an_edition(rt) == ["2026-W43"]
    assert mails_per_reader(smtp) == {reader: 1 for reader in READERS}


def test_a_fire_leaves_an_edition_an_operator_paused_alone(
    make_settings: Callable[..., Settings],
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    from worker.models import EditionStatus
    from worker.sending import control
    from worker.sending import queries as sending

    settings = make_settings(timezone="Europe/Paris")
    prepare_week(rt, FRIDAY_FIRE - timedelta(days=1))
    with time_machine.travel(FRIDAY_FIRE + timedelta(hours=1)):
        edition, created = control.ensure_edition(rt, "2026-W47", datetime.now(UTC))
        assert created and edition is not None and edition.id is not None
        with rt.session() as session, session.begin():
            assert sending.mark_edition_status(
                session, edition.id, EditionStatus.paused, (EditionStatus.draft.value,)
            )
        with running(settings) as sched:
            assert decided(sched.next_run()) == "already-done"
        worker()
    assert control.get_edition(rt, "2026-W47").status == EditionStatus.paused.value
    assert smtp.received == []


def test_a_run_that_cannot_reach_redis_is_tried_again_a_minute_later(
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    with caplog.at_level(logging.ERROR, logger="scheduler"), running(settings) as sched:
        run = sched.next_run()
        assert run.exception is None and run.retval is None
        retry = sched.scheduler.get_job("weekly-edition-retry")
        assert retry is not None
        delay_s = (retry.next_run_time - datetime.now(UTC)).total_seconds()
        assert 50 < delay_s <= 60
    assert any("deciding again in 60 s" in r.getMessage() for r in caplog.records)
