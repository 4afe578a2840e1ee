"""SPEC §6, the paths that used to mail a reader twice or stall an edition: a claim held past
the stuck timeout, an error after the server accepted, a slow or lost final reply, greylisted
rows filling the queue window, jobs enqueued again for being slow, a job that always raises,
and an edition marked sent while something was still owed.

Each test drives the real pipeline (a dramatiq worker, the real broker, an aiosmtpd server of
its own) on the same stacks as the rest of the suite, and checks what a reader or an operator
would see: how many copies each reader got, and what ``status`` says.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import redis
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import event, select, text

from tests import test_resilience as kit
from tests.conftest import wait_until
from tests.factories import FanOutHere
from tests.test_resilience import (
    TEMPORARY,
    SmtpServer,
    TimedHandler,
    delivery_of,
    publish_this_week,
    readers,
    send,
    status,
    subscribe_all,
    sweeping_worker,
    this_week,
    wait_for_edition,
)
from worker.actors import actors_of
from worker.models import Delivery, utcnow
from worker.runtime import Runtime
from worker.sending import control, delivery, pipeline

# This module's tests talk to an SMTP server of their own, as test_resilience's do.
smtp_service = kit.smtp_service
smtp_url = kit.smtp_url
smtp = kit.smtp
settings = kit.settings
runtime = kit.runtime


def copies(smtp: TimedHandler) -> Counter[str]:
    return smtp.mailed()


def jobs_in_redis(client: redis.Redis, queue: str, actor: str | None = None) -> Counter[int]:
    """How many jobs of ``queue`` (ready or delayed; of one actor, if given) carry each first
    argument.

    Reads the broker's own storage: a hash of message id → encoded message per queue, as
    dramatiq's Redis broker documents it.
    """
    found: Counter[int] = Counter()
    names = [f"newsletter:{queue}.msgs"]
    if not queue.endswith(".DQ"):
        names.append(f"newsletter:{queue}.DQ.msgs")
    for name in names:
        for raw in client.hvals(name):
            job = json.loads(raw)
            if actor is None or job["actor_name"] == actor:
                found[job["args"][0]] += 1
    return found


# --- 1. a claim held longer than the stuck timeout -------------------------------------------


@pytest.mark.slow
def test_a_delivery_waiting_in_the_throttle_past_stuck_after_is_mailed_once(
    runtime: Callable[..., Runtime], smtp: TimedHandler
) -> None:
    # 8 threads each claim a delivery, then queue for one slot a second: the last ones wait
    # 6 to 8 s, longer than the 5 s after which a dead worker's claim is taken back.
    rt = runtime(send_rate=1, stuck_after_s=5, sweep_interval_s=1)
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(12)
    subscribe_all(rt, everyone)

    with sweeping_worker(rt, threads=8):
        send(rt, week, now)
        view = wait_for_edition(rt, week, timeout_s=90)

    assert view.sent == 12
    assert copies(smtp) == dict.fromkeys(everyone, 1)


# --- 2. an error after the server accepted ------------------------------------------------------


SQLITE_BLIP = (
    "CREATE TABLE test_blip (id INTEGER)",
    "INSERT INTO test_blip VALUES (1)",
    "CREATE TRIGGER test_blip_sent BEFORE UPDATE OF status ON delivery"
    " WHEN NEW.status = 'sent' AND EXISTS (SELECT 1 FROM test_blip)"
    " BEGIN SELECT RAISE(ABORT, 'database blip: cannot mark sent'); END",
)
POSTGRES_BLIP = (
    "CREATE TABLE test_blip (id INTEGER)",
    "INSERT INTO test_blip VALUES (1)",
    "CREATE FUNCTION test_blip_fn() RETURNS trigger AS $$ BEGIN"
    " IF NEW.status = 'sent' AND EXISTS (SELECT 1 FROM test_blip) THEN"
    " RAISE EXCEPTION 'database blip: cannot mark sent'; END IF; RETURN NEW; END $$"
    " LANGUAGE plpgsql",
    "CREATE TRIGGER test_blip_sent BEFORE UPDATE ON delivery"
    " FOR EACH ROW EXECUTE FUNCTION test_blip_fn()",
)
UNBLIP = {
    "sqlite": ("DROP TRIGGER IF EXISTS test_blip_sent", "DROP TABLE IF EXISTS test_blip"),
    "postgresql": (
        "DROP TRIGGER IF EXISTS test_blip_sent ON delivery",
        "DROP FUNCTION IF EXISTS test_blip_fn()",
        "DROP TABLE IF EXISTS test_blip",
    ),
}


@contextmanager
def sent_marks_failing(rt: Runtime) -> Iterator[Callable[[], None]]:
    """Until the yielded function is called, the database refuses to mark any delivery sent
    (a trigger that raises, as a database blip would). Everything else still works."""
    dialect = rt.engine.dialect.name
    with rt.engine.begin() as conn:
        for statement in UNBLIP[dialect] + (SQLITE_BLIP if dialect == "sqlite" else POSTGRES_BLIP):
            conn.execute(text(statement))

    def heal() -> None:
        with rt.engine.begin() as conn:
            conn.execute(text("DELETE FROM test_blip"))

    try:
        yield heal
    finally:
        with rt.engine.begin() as conn:
            for statement in UNBLIP[dialect]:
                conn.execute(text(statement))


@pytest.mark.slow
def test_a_sent_mark_that_fails_after_the_server_accepted_never_sends_again(
    runtime: Callable[..., Runtime], smtp: TimedHandler
) -> None:
    rt = runtime(stuck_after_s=5, sweep_interval_s=1)
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(kit.THREADS)
    subscribe_all(rt, everyone)

    with sent_marks_failing(rt) as heal, sweeping_worker(rt):
        send(rt, week, now)
        wait_until(lambda: len(smtp.received) >= len(everyone))
        # Past the stuck timeout: each claim is still held by its live thread, waiting for its
        # sent-mark to be written, so no sweep retries or takes back anything.
        past_stuck = time.monotonic() + 7
        while time.monotonic() < past_stuck:
            assert kit.nothing_swept(rt)
            time.sleep(1)
        during = status(rt, week)
        heal()
        view = wait_for_edition(rt, week)

    assert (during.sent, during.sending) == (0, len(everyone))
    assert view.sent == len(everyone)
    assert copies(smtp) == dict.fromkeys(everyone, 1)


# --- 3. the final reply: slow, or never coming ------------------------------------------------


@dataclass
class FinalReplyHandler(TimedHandler):
    """Takes every message, but answers the final dot late (``delay_s``) or, for the addresses
    in ``cut``, not at all: the connection drops right after the message was taken."""

    delay_s: float = 0.0
    cut: set[str] = field(default_factory=set)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        with self.lock:
            cut_now = [a for a in envelope.rcpt_tos if a.lower() in self.cut]
            self.cut.difference_update(a.lower() for a in cut_now)
        if cut_now:
            assert server.transport is not None
            server.transport.abort()
            return reply
        await asyncio.sleep(self.delay_s)
        return reply


@pytest.fixture
def final_reply_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.handler = FinalReplyHandler()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_final_reply_that_takes_45_s_is_waited_for_and_nothing_is_sent_twice(
    runtime: Callable[..., Runtime], final_reply_server: SmtpServer
) -> None:
    handler = final_reply_server.handler
    assert isinstance(handler, FinalReplyHandler)
    handler.delay_s = 45  # a content filter at work (RFC 5321 §4.5.3.2.6 allows 10 minutes)
    rt = runtime(smtp_url=final_reply_server.url)
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe_all(rt, ["filtered@example.com"])

    with sweeping_worker(rt, threads=1):
        send(rt, week, now)
        view = wait_for_edition(rt, week, timeout_s=120)

    assert view.sent == 1
    assert handler.mailed() == {"filtered@example.com": 1}
    assert delivery_of(rt, week, "filtered@example.com").attempts == 1


def test_a_connection_lost_after_the_final_dot_is_retried_only_after_backoff_and_counted(
    runtime: Callable[..., Runtime], final_reply_server: SmtpServer
) -> None:
    handler = final_reply_server.handler
    assert isinstance(handler, FinalReplyHandler)
    handler.cut = {"reader00001@example.com"}
    rt = runtime(smtp_url=final_reply_server.url, retry_min_s=2, retry_max_s=2)
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(3)
    subscribe_all(rt, everyone)

    # One thread: reader 1's message goes over the connection reader 0's opened.
    with sweeping_worker(rt, threads=1):
        send(rt, week, now)
        view = wait_for_edition(rt, week, timeout_s=60)

    assert view.sent == 3
    # The server took the message but its reply never came: SPEC §6's "in flight" case. It
    # may go twice, but only through the normal backoff, never at once on a new connection.
    mailed = handler.mailed()
    assert mailed == {everyone[0]: 1, everyone[1]: 2, everyone[2]: 1}
    first, second = [t for a, t in handler.arrivals if a == everyone[1]]
    assert second - first >= 1.0  # backoff of retry_min_s=2, jittered to at least half
    assert view.uncertain == 1
    assert view.as_json()["uncertain"] == 1


# --- 5. rows waiting out a backoff do not fill the queue window ------------------------------


def test_ten_greylisted_readers_with_a_window_of_ten_do_not_hold_back_everyone_else(
    runtime: Callable[..., Runtime], smtp: TimedHandler
) -> None:
    rt = runtime(queue_window=10, retry_min_s=60, retry_max_s=60, max_attempts=5)
    week, now = this_week()
    publish_this_week(rt, now)
    greylisted, others = readers(10, prefix="grey"), readers(30)
    subscribe_all(rt, greylisted)  # first: the lowest ids, the first window
    subscribe_all(rt, others)
    for address in greylisted:
        smtp.replies[address] = TEMPORARY

    with sweeping_worker(rt):
        send(rt, week, now)
        wait_until(lambda: sum(copies(smtp).values()) == 30, timeout_s=30)
        view = status(rt, week)

    assert set(copies(smtp)) == set(others)
    assert (view.sent, view.queued, view.status) == (30, 10, "sending")


# --- 6. no job is enqueued twice for being slow, and chains are not doubled -------------------


def test_a_slow_queue_is_not_enqueued_again(
    runtime: Callable[..., Runtime], redis_client: redis.Redis
) -> None:
    rt = runtime(stuck_after_s=5)
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe_all(rt, readers(30))
    control.start_send(rt, week, now, FanOutHere(rt))
    waiting = jobs_in_redis(redis_client, "deliveries")
    assert len(waiting) == 30 and set(waiting.values()) == {1}

    # Nobody consumes: the jobs wait far longer than the stuck timeout. Sweeps come and go.
    for minutes in (1, 5, 60):
        later = now + timedelta(minutes=minutes)
        result = pipeline.sweep(rt, later, FanOutHere(rt))
        assert result["requeued"] == 0

    assert jobs_in_redis(redis_client, "deliveries") == waiting


def test_resume_twice_enqueues_nothing_twice(
    runtime: Callable[..., Runtime], redis_client: redis.Redis
) -> None:
    rt = runtime()
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe_all(rt, readers(30))
    for _ in range(2):  # `newsletter send` twice
        control.start_send(rt, week, utcnow(), FanOutHere(rt))
    assert control.pause(rt, week)
    for _ in range(2):  # as `newsletter resume` twice: each at its own moment
        control.resume(rt, week, utcnow(), FanOutHere(rt))

    waiting = jobs_in_redis(redis_client, "deliveries")
    assert len(waiting) == 30 and set(waiting.values()) == {1}


@pytest.mark.slow
def test_one_refill_chain_per_edition_however_often_it_is_resumed(
    runtime: Callable[..., Runtime], redis_client: redis.Redis, smtp: TimedHandler
) -> None:
    rt = runtime(send_rate=20)
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(120)
    subscribe_all(rt, everyone)

    with sweeping_worker(rt):
        send(rt, week, now)
        wait_until(lambda: len(smtp.received) >= 10)
        assert control.pause(rt, week)
        for _ in range(3):
            control.resume(rt, week, utcnow(), actors_of(rt))
        chains = []
        for _ in range(20):
            # The next refill of each chain waits in the delay queue (one chain, one waiting;
            # for a moment two, while one is handed from the delay queue to the workers).
            waiting = jobs_in_redis(redis_client, "editions.DQ", "refill")
            chains.append(sum(waiting.values()))
            time.sleep(0.1)
        view = wait_for_edition(rt, week)

    assert sorted(chains)[len(chains) // 2] == 1 and max(chains) <= 2, chains
    assert view.sent == 120 and max(copies(smtp).values()) == 1


# --- 7. a job that always raises ---------------------------------------------------------------


def test_a_delivery_whose_job_always_raises_ends_failed_after_max_attempts(
    runtime: Callable[..., Runtime], smtp: TimedHandler
) -> None:
    rt = runtime(max_attempts=3, retry_min_s=0.2, retry_max_s=0.4)
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(3)
    subscribe_all(rt, everyone)
    # A row damaged behind the input checks' back: building its message raises every time.
    with rt.engine.begin() as conn:
        conn.execute(
            text("UPDATE subscriber SET name = :name WHERE email = :email"),
            {"name": "Line\r\nBcc: everyone@example.com", "email": everyone[1]},
        )

    with sweeping_worker(rt):
        send(rt, week, now)
        view = wait_for_edition(rt, week, timeout_s=60)

    assert (view.sent, view.failed) == (2, 1)
    poisoned = delivery_of(rt, week, everyone[1])
    assert (poisoned.status, poisoned.attempts) == ("failed", 3)
    assert poisoned.last_error and "line break" in poisoned.last_error
    assert set(copies(smtp)) == {everyone[0], everyone[2]}


# --- 10. an edition is never marked sent while something is owed ------------------------------


def test_an_edition_is_never_marked_sent_while_a_retry_queues_its_failed_deliveries(
    runtime: Callable[..., Runtime], smtp: TimedHandler
) -> None:
    rt = runtime()
    operator = runtime()  # `newsletter retry`, another process with its own connections
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe_all(rt, ["fine@example.com", "greylisted@example.com"])
    smtp.replies["greylisted@example.com"] = TEMPORARY
    control.start_send(rt, week, now, FanOutHere(rt, enqueue=lambda jobs: None))
    edition = control.get_edition(rt, week)
    assert edition.id is not None
    # Both deliveries done, the second one failed; the edition still `sending`: the moment
    # before the workers' next look finds nothing owed.
    with rt.session() as session:
        ids = list(
            session.execute(select(Delivery.id).where(Delivery.edition_id == edition.id)).scalars()
        )
    rt_once = runtime(max_attempts=1)
    for delivery_id in ids:
        delivery.deliver(rt_once, delivery_id)
    assert (status(rt, week).sent, status(rt, week).failed) == (1, 1)
    smtp.replies.clear()

    # The retry's transaction waits at its commit while the finishing check runs.
    at_commit, go = threading.Event(), threading.Event()

    def hold(_conn: object) -> None:
        if not at_commit.is_set():
            at_commit.set()
            go.wait(5)

    event.listen(operator.engine, "commit", hold)
    retried: list[int] = []
    retry = threading.Thread(
        target=lambda: retried.append(
            control.retry_failed(
                operator, week, now, FanOutHere(operator, enqueue=lambda jobs: None)
            )
        )
    )
    retry.start()
    assert at_commit.wait(10)
    finished: list[object] = []

    def finish() -> None:
        try:
            finished.append(pipeline.finish_if_done(rt, edition.id or 0))
        except Exception as exc:  # noqa: BLE001 - a failure is an answer the test reports
            finished.append(exc)

    finisher = threading.Thread(target=finish)
    finisher.start()
    finisher.join(1.0)  # answered already, or waiting on the retry's locks
    go.set()
    retry.join(10)
    finisher.join(10)
    event.remove(operator.engine, "commit", hold)

    assert retried == [1]
    assert finished == [False]
    view = status(rt, week)
    assert (view.status, view.queued, view.failed) == ("sending", 1, 0)
