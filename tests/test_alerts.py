"""Instant alerts: readers with cadence `instant` get one mail per newly published comparison."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta

import scheduler
from tests.conftest import SmtpHandler
from tests.factories import comparison, load, send, subscribe
from worker.config import Settings
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending import control
from worker.sending.planning import week_of


def test_an_instant_reader_gets_one_alert_per_new_comparison_they_follow(
    rt: Runtime,
    settings: Settings,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    now = utcnow()
    load(
        rt,
        comparison("pen-duel", "Writing", now - timedelta(minutes=3), title="Quill vs Ink"),
        comparison("dev-duel", "Developer Tools", now - timedelta(minutes=2)),
        comparison("old-duel", "Writing", now - timedelta(days=5)),
    )
    subscribe(rt, ("quick@example.com", "Quinn", ("Writing",)), cadence="instant")
    subscribe(rt, ("everything@example.com", "", ()), cadence="instant")
    subscribe(rt, ("weekly@example.com", "", ()))

    started = scheduler.send_alerts(settings)
    again = scheduler.send_alerts(settings)
    worker()

    assert len(started) == 2 and again == []
    subjects = sorted(r.message["Subject"] for r in smtp.to("quick@example.com"))
    assert subjects == ["New verdict: Quill vs Ink"]
    assert len(smtp.to("everything@example.com")) == 2
    assert smtp.to("weekly@example.com") == []
    [alert] = smtp.to("quick@example.com")
    assert alert.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Hi Quinn," in alert.message.get_body(("plain",)).get_content()


def test_alerts_do_not_take_comparisons_away_from_the_weekly_digest(
    rt: Runtime,
    settings: Settings,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    now = utcnow()
    load(rt, comparison("pen-duel", "Writing", now - timedelta(minutes=3)))
    subscribe(rt, ("quick@example.com", "", ()), cadence="instant")
    subscribe(rt, ("weekly@example.com", "", ()))
    scheduler.send_alerts(settings)
    worker()
    week = week_of(now, UTC)
    send(rt, week, now)
    worker()
    assert len(smtp.to("weekly@example.com")) == 1
    assert len(smtp.to("quick@example.com")) == 1  # the alert, not the digest too
    view = control.status(rt, week)
    assert (view.total, view.sent, view.skipped) == (2, 1, 1)
