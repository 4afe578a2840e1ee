"""Instant alerts: readers with cadence `instant` get a mail when comparisons are published;
comparisons published within NEWSLETTER_ALERT_BATCH_S of each other come in one mail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

import scheduler
from tests.conftest import Received, SmtpHandler
from tests.factories import comparison, load, send, subscribe
from worker.actors import actors_of
from worker.config import Settings
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending import control, pipeline
from worker.sending.planning import Candidate, alert_batches, week_of


def test_an_instant_reader_gets_one_alert_per_new_comparison_they_follow(
    rt: Runtime,
    settings: Settings,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    now = utcnow()
    load(
        rt,
        # Further apart than NEWSLETTER_ALERT_BATCH_S (600 s): two alerts.
        comparison("pen-duel", "Writing", now - timedelta(minutes=30), title="Quill vs Ink"),
        comparison("dev-duel", "Developer Tools", now - timedelta(minutes=15)),
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
    load(rt, comparison("pen-duel", "Writing", now - timedelta(minutes=11)))
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


def _text(received: Received) -> str:
    """The plain-text part with its 72-column wrapping undone."""
    body = received.message.get_body(("plain",))
    assert body is not None
    return " ".join(str(body.get_content()).split())


def test_twelve_comparisons_published_together_make_one_alert_per_reader(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    now = utcnow()
    opened = now - timedelta(minutes=2)
    records = [
        comparison(
            f"duel-{i:02d}",
            "Writing" if i % 3 == 0 else "Developer Tools",
            opened + timedelta(seconds=5 * i),
            title=f"Duel number {i:02d}",
        )
        for i in range(12)
    ]
    load(rt, *records)
    subscribe(rt, ("all@example.com", "Ada", ()), cadence="instant")
    subscribe(rt, ("writer@example.com", "Wren", ("Writing",)), cadence="instant")
    subscribe(rt, ("weekly@example.com", "", ()))

    # Within the batch window nothing goes out: more may still be published.
    assert pipeline.send_alerts(rt, now, actors_of(rt)) == []
    later = opened + timedelta(seconds=rt.settings.alert_batch_s)
    started = pipeline.send_alerts(rt, later, actors_of(rt))
    assert pipeline.send_alerts(rt, later + timedelta(minutes=1), actors_of(rt)) == []
    worker()

    assert len(started) == 1
    [everything] = smtp.to("all@example.com")
    assert everything.message["Subject"] == "12 new verdicts: Duel number 11 (+11 more)"
    text = _text(everything)
    assert all(f"Duel number {i:02d}" in text for i in range(12))
    assert "Just published: 12 new side-by-side comparisons." in text
    assert "You follow every category" in text
    assert "a category you follow" not in text
    assert f"/editions/{started[0]}" in text

    [writing] = smtp.to("writer@example.com")
    text = _text(writing)
    assert writing.message["Subject"].startswith("4 new verdicts: ")
    assert "in Writing, a category you follow: 4 new side-by-side comparisons" in text
    assert [i for i in range(12) if f"Duel number {i:02d}" in text] == [0, 3, 6, 9]
    assert smtp.to("weekly@example.com") == []


def test_a_comparison_published_after_the_batch_closed_gets_an_alert_of_its_own(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    now = utcnow()
    load(
        rt,
        comparison("first", "Writing", now - timedelta(minutes=40), title="First duel"),
        comparison("second", "Writing", now - timedelta(minutes=35), title="Second duel"),
        comparison("third", "Writing", now - timedelta(minutes=25), title="Third duel"),
    )
    subscribe(rt, ("all@example.com", "", ()), cadence="instant")
    assert len(pipeline.send_alerts(rt, now, actors_of(rt))) == 2
    worker()
    subjects = sorted(r.message["Subject"] for r in smtp.to("all@example.com"))
    assert subjects == ["2 new verdicts: Second duel (+1 more)", "New verdict: Third duel"]


@pytest.mark.parametrize(
    ("published_s", "now_s", "batch_s", "expected"),
    [
        ([0, 5, 599], 600, 600, [[0, 5, 599]]),  # all within 600 s of the first: one alert
        ([0, 5, 600], 600, 600, [[0, 5]]),  # 600 s after the first opens the next batch
        ([0, 5, 600], 1200, 600, [[0, 5], [600]]),
        ([0, 5], 599, 600, []),  # the batch is still open
        ([0, 5], 5, 0, [[0], [5]]),  # no batching: one each, at once
        ([], 1000, 600, []),
    ],
)
def test_alert_batches(
    published_s: list[int], now_s: int, batch_s: int, expected: list[list[int]]
) -> None:
    base = datetime(2026, 11, 30, 9, tzinfo=UTC)
    candidates = [
        Candidate(i, "Writing", base + timedelta(seconds=s)) for i, s in enumerate(published_s)
    ]
    batches = alert_batches(candidates, base + timedelta(seconds=now_s), batch_s)
    assert [[published_s[c.id] for c in b] for b in batches] == expected
