"""The weekly edition end to end: store → edition → one job per subscriber → SMTP server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest
from sqlalchemy import select

from tests.conftest import SmtpHandler, wait_until
from tests.factories import FanOutHere, comparison, load, send, subscribe
from worker.actors import actors_of
from worker.models import Delivery, SubscriberStatus, utcnow
from worker.runtime import Runtime
from worker.sending import control, pipeline
from worker.sending import queries as sending
from worker.sending.planning import week_of
from worker.sending.tokens import read_verp_token, token_from_address
from worker.subscribers import queries as subscribers

CATEGORIES = ("Developer Tools", "Writing", "Image Generation")


def _week_and_now() -> tuple[str, datetime]:
    now = utcnow()
    return week_of(now, UTC), now


def _setup_edition(rt: Runtime, now: datetime) -> dict[str, tuple[str, ...]]:
    """3 comparisons in three categories, 30 subscribers with assorted preferences."""
    load(
        rt,
        comparison("dev-duel", "Developer Tools", now - timedelta(minutes=30)),
        comparison("pen-duel", "Writing", now - timedelta(minutes=20)),
        comparison("img-duel", "Image Generation", now - timedelta(minutes=10)),
    )
    people: dict[str, tuple[str, ...]] = {}
    for i in range(30):
        prefs: tuple[str, ...] = (
            ()
            if i % 5 == 0
            else (CATEGORIES[i % 3],)
            if i % 5 in (1, 2)
            else (CATEGORIES[i % 3], CATEGORIES[(i + 1) % 3])
            if i % 5 == 3
            else ("Audio & Voice",)  # matches nothing this week: skipped
        )
        people[f"reader{i}@example.com"] = prefs
    subscribe(
        rt, *[(email, f"Reader {i}", prefs) for i, (email, prefs) in enumerate(people.items())]
    )
    return people


def _expected_slugs(prefs: tuple[str, ...]) -> set[str]:
    slug_of = {"Developer Tools": "dev-duel", "Writing": "pen-duel", "Image Generation": "img-duel"}
    return set(slug_of.values()) if not prefs else {slug_of[p] for p in prefs if p in slug_of}


def test_an_edition_reaches_exactly_the_right_readers_with_the_right_comparisons(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
    env: dict[str, str],
) -> None:
    week, now = _week_and_now()
    people = _setup_edition(rt, now)

    outcome = send(rt, week, now)
    assert outcome.started and outcome.edition is not None
    worker()

    wanted = {email for email, prefs in people.items() if _expected_slugs(prefs)}
    assert {r.rcpt_tos[0] for r in smtp.received} == wanted
    assert len(smtp.received) == len(wanted)
    for received in smtp.received:
        email = received.rcpt_tos[0]
        html = received.message.get_body(("html",)).get_content()
        carried = {slug for slug in ("dev-duel", "pen-duel", "img-duel") if f"/{slug}" in html}
        assert carried == _expected_slugs(people[email]), email

    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "status", "--week", week, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    counts = json.loads(result.stdout)
    skipped = sum(1 for prefs in people.values() if not _expected_slugs(prefs))
    assert counts == {
        **counts,
        "week": week,
        "status": "sent",
        "total": 30,
        "sent": 30 - skipped,
        "skipped": skipped,
        "queued": 0,
        "sending": 0,
        "failed": 0,
        "bounced": 0,
    }


def test_every_mail_has_the_headers_of_spec_section_5(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    week, now = _week_and_now()
    load(
        rt,
        comparison(
            "dev-duel",
            "Developer Tools",
            now - timedelta(minutes=5),
            title="Café <b>bold</b> & “quotes”",
        ),
    )
    subscribe(rt, ("ada@example.com", "Ada <script>", ()))
    send(rt, week, now)
    worker()

    [received] = smtp.received
    msg = received.message
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Message-ID"].startswith("<d") and msg["Date"]
    unsubscribe = msg["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://news.example.com/unsubscribe/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "verdicts.news.example.com" in msg["List-Id"]
    assert msg["To"].addresses[0].addr_spec == "ada@example.com"
    # VERP: the envelope sender names this delivery with a valid signature.
    token = token_from_address(received.mail_from, "bounces")
    assert received.mail_from.endswith("@news.example.com") and token
    delivery_id = read_verp_token(rt.secret_key, token)
    with rt.session() as session:
        assert sending.get_delivery(session, delivery_id).status == "sent"  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert len(html.encode()) < 102 * 1024
    assert "<script" not in html
    assert "Ada &lt;script&gt;" in html and "Café &lt;b&gt;bold&lt;/b&gt; &amp; “quotes”" in html
    assert "Hi Ada <script>," in text
    assert "Panel ship" in html and "75%" in html and "50%" in html
    assert 'name="viewport"' in html and "max-width:600px" in html.replace(" ", "")


def test_sending_a_week_twice_sends_nothing_new(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    week, now = _week_and_now()
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    subscribe(rt, *[(f"r{i}@example.com", "", ()) for i in range(5)])
    send(rt, week, now)
    worker()
    assert len(smtp.received) == 5

    again = send(rt, week, utcnow())
    worker()
    assert again.created is False and again.started is False
    assert len(smtp.received) == 5
    assert control.status(rt, week).sent == 5


def test_a_deliver_job_run_twice_sends_once(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    week, now = _week_and_now()
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    subscribe(rt, ("once@example.com", "", ()))
    send(rt, week, now)
    worker()
    with rt.session() as session:
        [delivery_id] = session.execute(select(Delivery.id)).scalars().all()
    actors = actors_of(rt)
    actors.deliver.send(delivery_id)
    actors.deliver.send(delivery_id)
    worker()
    assert len(smtp.to("once@example.com")) == 1


def test_a_week_with_nothing_new_is_not_sent(rt: Runtime, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "send", "--week", "2026-W10"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "nothing to send for 2026-W10" in result.stderr
    with rt.session() as session:
        assert sending.get_edition(session, "2026-W10") is None


def test_send_refuses_to_mail_readers_without_the_senders_postal_address(
    rt: Runtime, env: dict[str, str], smtp: SmtpHandler
) -> None:
    week, now = _week_and_now()
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    subscribe(rt, ("ada@example.com", "", ()))
    without = {k: v for k, v in env.items() if k != "NEWSLETTER_POSTAL_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "send", "--week", week],
        env=without,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: NEWSLETTER_POSTAL_ADDRESS: required to mail readers")
    assert len(result.stderr.strip().splitlines()) == 1
    with rt.session() as session:
        assert sending.get_edition(session, week) is None  # nothing created, nothing queued
    assert smtp.received == []


def test_an_unsubscribed_reader_is_skipped_even_when_already_queued(
    rt: Runtime,
    smtp: SmtpHandler,
    request: pytest.FixtureRequest,
) -> None:
    week, now = _week_and_now()
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    subscribe(rt, ("stay@example.com", "", ()), ("leave@example.com", "", ()))
    with rt.session() as session:
        leaver = subscribers.get_subscriber_by_email(session, "leave@example.com")
        assert leaver is not None and leaver.id is not None
    # Fan out and queue everything with no worker running; then the reader leaves.
    control.start_send(rt, week, now, FanOutHere(rt))
    assert control.status(rt, week).queued == 2
    with rt.session() as session, session.begin():
        subscribers.mark_subscriber_status(session, leaver.id, SubscriberStatus.unsubscribed)
    request.getfixturevalue("worker")()
    assert [r.rcpt_tos[0] for r in smtp.received] == ["stay@example.com"]
    assert control.status(rt, week).skipped == 1


@pytest.mark.slow
def test_fan_out_keeps_at_most_the_queue_window_in_redis_and_tops_up_as_it_drains(
    make_settings: Callable[..., object],
    redis_client: object,
    smtp: SmtpHandler,
    request: pytest.FixtureRequest,
) -> None:
    from worker.runtime import open_runtime

    settings = make_settings(queue_window=40)
    rt = open_runtime(settings, redis_client=redis_client)  # type: ignore[arg-type]
    try:
        week, now = _week_and_now()
        load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
        subscribe(rt, *[(f"w{i}@example.com", "", ()) for i in range(300)])
        send(rt, week, now)
        # A worker on the editions queue only: fan-out and its refill loop run, nothing drains.
        editions_only = dramatiq.Worker(rt.broker, queues={"editions"}, worker_threads=1)
        editions_only.start()
        try:
            wait_until(lambda: control.status(rt, week).total == 300)
            wait_until(lambda: rt.redis.llen("newsletter:deliveries") == 40)
            # The window is full: a refill pass hands nothing more to the queue.
            edition = control.get_edition(rt, week)
            assert edition.id is not None
            assert pipeline.refill(rt, edition.id, utcnow(), actors_of(rt)) == 0
            assert rt.redis.llen("newsletter:deliveries") == 40
            assert control.status(rt, week).queued == 300  # the rest wait in the database
        finally:
            editions_only.stop()

        from worker.supervisor import running_worker

        with running_worker(rt, threads=4, sweep=False) as (_actors, dramatiq_worker):
            for _ in range(3):
                for queue in sorted(rt.broker.get_declared_queues()):
                    rt.broker.join(queue, timeout=60_000)
                dramatiq_worker.join()
        assert len({r.rcpt_tos[0] for r in smtp.received}) == 300
        assert len(smtp.received) == 300
        assert control.status(rt, week).status == "sent"
    finally:
        rt.close()
