"""SPEC §6 under fire: workers killed, Redis lost, SMTP refusing or gone, throttles, races,
pause and cancel. Each test breaks something on purpose and checks what an operator sees:
who got the edition, how many times, and what ``newsletter status`` says.

Every test here talks to its own aiosmtpd server (it can be stopped and started again, and it
notes when each recipient was tried), on the same stack as the rest of the suite.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select

from tests.conftest import ROOT, SmtpHandler, free_port, wait_until
from tests.factories import FanOutHere, comparison, load, send, subscribe
from worker.actors import actors_of
from worker.config import Settings
from worker.models import BounceEvent, Delivery, Edition, Subscriber, utcnow
from worker.runtime import Runtime, open_runtime
from worker.sending import control, pipeline
from worker.sending import queries as sending
from worker.sending.caches import EDITION_INFO_TTL_S
from worker.sending.planning import week_bounds, week_of
from worker.subscribers import queries as subscribers
from worker.supervisor import running_worker

# Fast retries and a quick sweep for every test of this module (the rt and worker fixtures).
RETRY = {"retry_min_s": 0.2, "retry_max_s": 1, "max_attempts": 3, "stuck_after_s": 5}
QUICK_SWEEP = {"NEWSLETTER_STUCK_AFTER_S": "5", "NEWSLETTER_SWEEP_INTERVAL_S": "1"}
TEMPORARY = "451 4.3.0 Temporary local problem, try again later"
UNKNOWN_USER = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
BLOCKLISTED = (
    "550 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using "
    "zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.7"
)


# --- an SMTP server of our own ------------------------------------------------------------


@dataclass
class TimedHandler(SmtpHandler):
    """The suite's collecting handler, noting when each recipient was tried and each mail came."""

    tries: list[tuple[str, float]] = field(default_factory=list)  # (address, monotonic time)
    arrivals: list[tuple[str, float]] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self.lock:
            self.tries.append((address.lower(), time.monotonic()))
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        with self.lock:
            self.arrivals.extend((a.lower(), time.monotonic()) for a in envelope.rcpt_tos)
        return reply

    def mailed(self) -> Counter[str]:
        """How many messages each address received."""
        with self.lock:
            return Counter(a.lower() for r in self.received for a in r.rcpt_tos)

    def tried(self, address: str) -> list[float]:
        """When ``address`` was offered at RCPT, accepted or not."""
        with self.lock:
            return [t for a, t in self.tries if a == address.lower()]

    def arrived(self, domain: str = "") -> list[float]:
        """When mail for addresses ending in ``domain`` came in, in order."""
        with self.lock:
            return sorted(t for a, t in self.arrivals if a.endswith(domain))


class SmtpServer:
    """An aiosmtpd server on a fixed port that a test can take down and bring back."""

    def __init__(self) -> None:
        self.handler = TimedHandler()
        self.port = free_port()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, decode_data=False, ready_timeout=10
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_service() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_url(smtp_service: SmtpServer) -> str:
    """Every runtime and subprocess of this module mails our own server."""
    return smtp_service.url


@pytest.fixture
def smtp(smtp_service: SmtpServer) -> TimedHandler:
    return smtp_service.handler


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(**RETRY)


# --- runtimes, workers and the CLI -----------------------------------------------------------


@pytest.fixture
def runtime(
    make_settings: Callable[..., Settings], redis_client: redis.Redis
) -> Iterator[Callable[..., Runtime]]:
    """Build a runtime with settings overrides, on the test's Redis; closed after the test."""
    opened: list[Runtime] = []

    def build(**overrides: Any) -> Runtime:
        rt = open_runtime(make_settings(**{**RETRY, **overrides}), redis_client=redis_client)
        opened.append(rt)
        return rt

    yield build
    for rt in opened:
        rt.close()


THREADS = 4


@contextmanager
def sweeping_worker(rt: Runtime, threads: int = THREADS) -> Iterator[None]:
    """A dramatiq worker in this process with the periodic sweep, as `newsletter worker` runs."""
    with running_worker(rt, threads=threads, sweep=True):
        yield


def newsletter(env: dict[str, str], *args: str, **overrides: str) -> str:
    """Run `newsletter ARGS` as an operator would; returns stdout (fails on a non-zero exit)."""
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=ROOT,
        env={**env, **overrides},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def operator_status(env: dict[str, str], week: str) -> dict[str, Any]:
    """`newsletter status --week W --json`."""
    return dict(json.loads(newsletter(env, "status", "--week", week, "--json")))


class WorkerProcesses:
    """`newsletter worker` subprocesses that a test can start and SIGKILL."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, threads: int, **overrides: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"worker-{len(self.started)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker", "--threads", str(threads)],
            cwd=ROOT,
            env={**self.env, **overrides},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no cleanup, no goodbye to Redis, the database or the SMTP server."""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.log_dir.glob("worker-*.log"))
        )


@pytest.fixture
def worker_processes(env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcesses]:
    workers = WorkerProcesses(env, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


# --- data --------------------------------------------------------------------------------------


def this_week() -> tuple[str, datetime]:
    """The current ISO week and a moment in it."""
    now = datetime.now(UTC)
    return week_of(now, UTC), now


def publish_this_week(rt: Runtime, now: datetime, slug: str = "dev-duel") -> None:
    """One comparison published earlier this week (so the week has something to send)."""
    start, _end = week_bounds(week_of(now, UTC), UTC)
    load(rt, comparison(slug, "Developer Tools", max(start, now - timedelta(minutes=30))))


def readers(count: int, domain: str = "example.com", prefix: str = "reader") -> list[str]:
    return [f"{prefix}{i:05d}@{domain}" for i in range(count)]


def subscribe_all(rt: Runtime, emails: list[str]) -> None:
    """Active subscribers, added in batches of 1000 the way an import does."""
    for i in range(0, len(emails), 1000):
        subscribe(rt, *[(email, "", ()) for email in emails[i : i + 1000]])


def status(rt: Runtime, week: str) -> control.EditionStatusView:
    return control.status(rt, week)


def delivery_of(rt: Runtime, week: str, email: str) -> Delivery:
    with rt.session() as session:
        found = session.execute(
            select(Delivery)
            .join(Edition, Edition.id == Delivery.edition_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Edition.week == week, Subscriber.email == email)
        ).scalar_one()
    return found


def subscriber_status(rt: Runtime, email: str) -> str:
    with rt.session() as session:
        found = subscribers.get_subscriber_by_email(session, email)
    assert found is not None
    return found.status


def wait_for_edition(
    rt: Runtime, week: str, wanted: str = "sent", timeout_s: float = 60
) -> control.EditionStatusView:
    wait_until(lambda: status(rt, week).status == wanted, timeout_s)
    return status(rt, week)


def duplicates(mailed: Counter[str]) -> int:
    return sum(n - 1 for n in mailed.values())


# --- 1. claiming: workers killed mid-edition ---------------------------------------------------


@pytest.mark.slow
def test_workers_killed_mid_edition_lose_nothing_and_resend_at_most_what_was_in_flight(
    rt: Runtime,
    env: dict[str, str],
    smtp: TimedHandler,
    worker_processes: WorkerProcesses,
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(3000)
    subscribe_all(rt, everyone)
    threads = 4
    first = worker_processes.start(threads, **QUICK_SWEEP)
    second = worker_processes.start(threads, **QUICK_SWEEP)

    newsletter(env, "send", "--week", week)
    wait_until(lambda: len(smtp.received) >= 300, 60)
    worker_processes.kill(first)
    wait_until(lambda: len(smtp.received) >= 1200, 60)
    worker_processes.kill(second)
    killed_threads = 2 * threads
    worker_processes.start(threads, **QUICK_SWEEP)
    worker_processes.start(threads, **QUICK_SWEEP)
    try:
        wait_for_edition(rt, week, timeout_s=120)
    except AssertionError:
        raise AssertionError(f"{status(rt, week)}\n{worker_processes.logs()}") from None

    mailed = smtp.mailed()
    assert set(mailed) == set(everyone)
    assert duplicates(mailed) <= killed_threads, mailed.most_common(10)
    seen = operator_status(env, week)
    assert seen == {
        **seen,
        "status": "sent",
        "total": 3000,
        "sent": 3000,
        "queued": 0,
        "sending": 0,
        "failed": 0,
        "bounced": 0,
        "skipped": 0,
    }


@pytest.mark.slow
def test_a_delivery_left_sending_by_a_dead_worker_is_taken_back_after_stuck_after(
    rt: Runtime,
    smtp: TimedHandler,
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe_all(rt, readers(20))
    control.start_send(rt, week, now, FanOutHere(rt))
    # A worker claims reader 7's delivery and dies before sending: its job is gone.
    orphan = delivery_of(rt, week, "reader00007@example.com")
    with rt.session() as session, session.begin():
        assert sending.claim_deliveries(session, [orphan.id or 0], datetime.now(UTC))
    claimed_at = time.monotonic()

    with sweeping_worker(rt):
        wait_until(lambda: status(rt, week).sent == 19)
        assert delivery_of(rt, week, "reader00007@example.com").status == "sending"
        view = wait_for_edition(rt, week)

    assert view.sent == 20
    [(address, arrived_at)] = [a for a in smtp.arrivals if a[0] == "reader00007@example.com"]
    assert arrived_at - claimed_at >= RETRY["stuck_after_s"]  # not taken from a live worker
    assert delivery_of(rt, week, address).attempts == 2
    assert max(smtp.mailed().values()) == 1


def test_every_job_enqueued_three_times_still_mails_each_reader_once(
    rt: Runtime,
    smtp: TimedHandler,
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(300)
    subscribe_all(rt, everyone)

    def thrice(jobs: list[tuple[int, str]]) -> None:  # side by side: copies run together
        actors_of(rt).enqueue([(i, f"{job}.{copy}") for i, job in jobs for copy in range(3)])

    control.start_send(rt, week, now, FanOutHere(rt, enqueue=thrice))
    with sweeping_worker(rt, threads=8):
        view = wait_for_edition(rt, week)

    assert (view.total, view.sent) == (300, 300)
    mailed = smtp.mailed()
    assert set(mailed) == set(everyone) and max(mailed.values()) == 1


# --- 2. Redis lost mid-edition ---------------------------------------------------------------


@pytest.mark.slow
def test_redis_flushed_mid_edition_is_refilled_from_the_database_and_nobody_is_mailed_twice(
    runtime: Callable[..., Runtime],
    redis_client: redis.Redis,
    env: dict[str, str],
    smtp: TimedHandler,
) -> None:
    rt = runtime(send_rate=150)
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(600)
    subscribe_all(rt, everyone)

    with sweeping_worker(rt):
        send(rt, week, now)
        wait_until(lambda: len(smtp.received) >= 150)
        redis_client.flushdb()  # every queued job, the refill chain, the throttle, the lock
        assert status(rt, week).queued > 0
        view = wait_for_edition(rt, week)

    assert view.sent == 600
    mailed = smtp.mailed()
    assert set(mailed) == set(everyone)
    assert max(mailed.values()) == 1


# --- 3. SMTP faults ---------------------------------------------------------------------------


def test_temporary_refusals_are_retried_with_backoff_and_fail_with_the_last_reply(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: TimedHandler,
    env: dict[str, str],
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe(
        rt,
        ("flaky@example.com", "Flaky", ()),
        ("hopeless@example.com", "Hopeless", ()),
        ("fine@example.com", "Fine", ()),
    )
    smtp.fail_next["flaky@example.com"] = [TEMPORARY, TEMPORARY]
    smtp.fail_next["hopeless@example.com"] = [
        TEMPORARY,
        TEMPORARY,
        "452 4.2.2 Mailbox full, try later",
    ]

    send(rt, week, now)
    view = wait_for_edition(rt, week, timeout_s=30)

    assert smtp.mailed() == {"flaky@example.com": 1, "fine@example.com": 1}
    assert (view.sent, view.failed) == (2, 1)
    flaky = delivery_of(rt, week, "flaky@example.com")
    assert (flaky.status, flaky.attempts, flaky.last_error) == ("sent", 3, None)
    hopeless = delivery_of(rt, week, "hopeless@example.com")
    assert (hopeless.status, hopeless.attempts) == ("failed", 3)
    assert hopeless.last_error and "452 4.2.2 Mailbox full" in hopeless.last_error
    assert subscriber_status(rt, "hopeless@example.com") == "active"
    # Backoff (retry_min_s=0.2, doubling, jittered to between half and all of each step).
    tries = smtp.tried("hopeless@example.com")
    assert len(tries) == 3
    assert tries[1] - tries[0] >= 0.1 and tries[2] - tries[1] >= 0.2


def test_a_5xx_at_rcpt_is_a_hard_bounce_and_that_reader_is_never_mailed_again(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: TimedHandler,
    env: dict[str, str],
) -> None:
    week, now = this_week()
    last_week = week_of(now - timedelta(days=7), UTC)
    load(rt, comparison("old-duel", "Developer Tools", now - timedelta(days=7)))
    publish_this_week(rt, now)
    subscribe(rt, ("gone@example.com", "Gone", ()), ("here@example.com", "Here", ()))
    smtp.replies["gone@example.com"] = UNKNOWN_USER.format("gone@example.com")

    send(rt, last_week, now)
    view = wait_for_edition(rt, last_week)

    assert (view.sent, view.bounced, view.bounces) == (1, 1, {"hard": 1})
    gone = delivery_of(rt, last_week, "gone@example.com")
    assert (gone.status, gone.attempts) == ("bounced", 1)
    assert len(smtp.tried("gone@example.com")) == 1  # refused for good: no retry
    with rt.session() as session:
        [event] = session.execute(select(BounceEvent)).scalars()
    assert (event.kind, event.source, event.status_code, event.delivery_id) == (
        "hard",
        "smtp",
        "550",
        gone.id,
    )
    assert "User unknown" in event.diagnostic
    assert subscriber_status(rt, "gone@example.com") == "bounced"

    send(rt, week, now)
    view = wait_for_edition(rt, week)
    assert (view.total, view.sent) == (1, 1)
    assert smtp.mailed() == {"here@example.com": 2}
    assert len(smtp.tried("gone@example.com")) == 1


def test_a_blocklist_refusal_is_our_problem_and_does_not_suppress_the_reader(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: TimedHandler,
    env: dict[str, str],
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe(rt, ("reader@example.com", "Reader", ()))
    smtp.replies["reader@example.com"] = BLOCKLISTED

    send(rt, week, now)
    view = wait_for_edition(rt, week)

    assert view.bounces == {"sender": 1} and view.bounced == 0
    assert delivery_of(rt, week, "reader@example.com").status == "failed"
    with rt.session() as session:
        [event] = session.execute(select(BounceEvent)).scalars()
    assert (event.kind, event.source) == ("sender", "smtp")
    assert subscriber_status(rt, "reader@example.com") == "active"


def test_retry_requeues_failed_deliveries_and_they_go_out_once_the_server_accepts(
    rt: Runtime,
    smtp: TimedHandler,
    env: dict[str, str],
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe(
        rt,
        ("greylisted@example.com", "", ()),
        ("blocked@example.com", "", ()),
        ("fine@example.com", "", ()),
    )
    smtp.replies["greylisted@example.com"] = TEMPORARY
    smtp.replies["blocked@example.com"] = BLOCKLISTED
    with sweeping_worker(rt):
        send(rt, week, now)
        view = wait_for_edition(rt, week)
        assert (view.sent, view.failed) == (1, 2)

        smtp.replies.clear()  # the server accepts again (delisted, greylisting over)
        newsletter(env, "retry", "--week", week)
        view = wait_for_edition(rt, week)

    assert (view.sent, view.failed, view.queued) == (3, 0, 0)
    assert smtp.mailed() == {
        "greylisted@example.com": 1,
        "blocked@example.com": 1,
        "fine@example.com": 1,
    }
    assert operator_status(env, week)["status"] == "sent"


@pytest.mark.slow
def test_an_smtp_outage_mid_edition_delays_everyone_but_loses_and_doubles_nobody(
    runtime: Callable[..., Runtime],
    smtp_service: SmtpServer,
    smtp: TimedHandler,
) -> None:
    rt = runtime(send_rate=100, retry_min_s=0.2, retry_max_s=1, max_attempts=20)
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(300)
    subscribe_all(rt, everyone)

    with sweeping_worker(rt):
        send(rt, week, now)
        wait_until(lambda: len(smtp.received) >= 60)
        smtp_service.stop()
        down_at = time.monotonic()
        time.sleep(5)  # the outage itself
        smtp_service.start()
        view = wait_for_edition(rt, week)

    assert view.sent == 300 and view.failed == 0
    mailed = smtp.mailed()
    assert set(mailed) == set(everyone)
    assert max(mailed.values()) == 1
    assert any(t > down_at + 5 for t in smtp.arrived())  # some really waited for the server
    assert max(d.attempts for d in deliveries(rt, week)) > 1


def deliveries(rt: Runtime, week: str) -> list[Delivery]:
    with rt.session() as session:
        return list(
            session.execute(
                select(Delivery)
                .join(Edition, Edition.id == Delivery.edition_id)
                .where(Edition.week == week)
            ).scalars()
        )


@pytest.mark.slow
def test_a_retry_waits_out_its_backoff_even_when_that_is_longer_than_stuck_after(
    runtime: Callable[..., Runtime],
    smtp: TimedHandler,
) -> None:
    # Backoff of the first retry: between 15 and 30 s; a dead worker's rows are taken back
    # after 5 s. A delivery waiting for its retry is not a lost one.
    rt = runtime(
        retry_min_s=30, retry_max_s=3600, max_attempts=5, stuck_after_s=5, sweep_interval_s=1
    )
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe(rt, ("greylisted@example.com", "", ()))
    smtp.fail_next["greylisted@example.com"] = [TEMPORARY]

    with sweeping_worker(rt):
        send(rt, week, now)
        wait_until(lambda: len(smtp.tried("greylisted@example.com")) == 1)
        wait_until(lambda: delivery_of(rt, week, "greylisted@example.com").status == "queued")
        tried_at = utcnow()
        # Sweeps past stuck_after, well before the backoff ends: nothing is taken back.
        for later_s in (6, 9, 14):
            assert nothing_swept(rt, tried_at + timedelta(seconds=later_s))
        assert len(smtp.tried("greylisted@example.com")) == 1
        assert delivery_of(rt, week, "greylisted@example.com").status == "queued"
        # A sweep once the backoff (at most 30 s) is over hands the delivery to a new job.
        swept = pipeline.sweep(rt, tried_at + timedelta(seconds=31), actors_of(rt))
        assert swept["requeued"] == 1, swept


# --- 4. throttling --------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_send_rate_holds_across_two_worker_processes(
    rt: Runtime,
    env: dict[str, str],
    smtp: TimedHandler,
    worker_processes: WorkerProcesses,
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe_all(rt, readers(300))
    for _ in range(2):
        worker_processes.start(4, NEWSLETTER_SEND_RATE="50", **QUICK_SWEEP)

    newsletter(env, "send", "--week", week, NEWSLETTER_SEND_RATE="50")
    wait_for_edition(rt, week, timeout_s=60)

    arrived = smtp.arrived()
    assert len(arrived) == 300
    assert arrived[-1] - arrived[0] >= 5.4  # 299 gaps of 20 ms at best


def test_a_domain_rate_slows_that_domain_and_no_other(
    runtime: Callable[..., Runtime],
    smtp: TimedHandler,
) -> None:
    rt = runtime(domain_rates="example.org=20/s")
    week, now = this_week()
    publish_this_week(rt, now)
    org, com = readers(60, "example.org"), readers(60, "example.com")
    subscribe_all(rt, [email for pair in zip(org, com, strict=True) for email in pair])

    with sweeping_worker(rt, threads=8):
        started = time.monotonic()
        send(rt, week, now)
        wait_for_edition(rt, week)

    org_times, com_times = smtp.arrived("@example.org"), smtp.arrived("@example.com")
    assert len(org_times) == len(com_times) == 60
    assert org_times[-1] - org_times[0] >= 2.65  # 59 gaps of 50 ms at best
    assert com_times[-1] - started < org_times[-1] - started


# --- 5. two senders at once ----------------------------------------------------------------------


def test_two_send_commands_at_once_make_one_edition_and_mail_everyone_once(
    rt: Runtime,
    env: dict[str, str],
    smtp: TimedHandler,
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(200)
    subscribe_all(rt, everyone)

    with sweeping_worker(rt):
        commands = [
            subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "send", "--week", week],
                cwd=ROOT,
                env=env,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        for proc in commands:
            _out, errors = proc.communicate(timeout=60)
            assert proc.returncode == 0, errors
        view = wait_for_edition(rt, week)

    with rt.session() as session:
        assert session.execute(select(func.count()).select_from(Edition)).scalar_one() == 1
    assert (view.total, view.sent) == (200, 200)
    mailed = smtp.mailed()
    assert set(mailed) == set(everyone) and max(mailed.values()) == 1


def test_two_schedulers_firing_together_make_one_edition_and_mail_everyone_once(
    rt: Runtime,
    make_settings: Callable[..., Settings],
    smtp: TimedHandler,
) -> None:
    import scheduler

    # Mondays 00:00 with a week's grace: whenever this runs, this week's fire is due.
    settings = make_settings(**RETRY, weekly_cron="0 0 * * mon", misfire_grace_s=7 * 24 * 3600)
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(200)
    subscribe_all(rt, everyone)
    together = threading.Barrier(3)
    outcomes: list[str] = []

    def fire() -> None:
        together.wait()
        outcomes.append(scheduler.send_due_week(settings).action)

    with sweeping_worker(rt):
        fired = [threading.Thread(target=fire) for _ in range(3)]
        for thread in fired:
            thread.start()
        for thread in fired:
            thread.join(60)
        view = wait_for_edition(rt, week)

    assert sorted(outcomes) == ["already-done", "already-done", "send"], outcomes
    with rt.session() as session:
        assert session.execute(select(func.count()).select_from(Edition)).scalar_one() == 1
    assert (view.total, view.sent) == (200, 200)
    mailed = smtp.mailed()
    assert set(mailed) == set(everyone) and max(mailed.values()) == 1


# --- 6. pause, resume, cancel --------------------------------------------------------------------


def nothing_swept(rt: Runtime, now: datetime | None = None) -> bool:
    """One sweep (at ``now``, else now) restarted, took back and finished nothing."""
    swept = pipeline.sweep(rt, now or utcnow(), actors_of(rt))
    assert swept == {**swept, "requeued": 0, "finished": 0, "fanouts": 0, "accepted": 0}, swept
    return True


def drain_queues(rt: Runtime) -> None:
    """Wait until the worker has taken every job in Redis."""
    for queue in sorted(rt.broker.get_declared_queues()):
        rt.broker.join(queue, timeout=60_000)


def settled(rt: Runtime, week: str) -> control.EditionStatusView:
    """Wait until no delivery is held by a worker (in-flight mails have landed)."""
    wait_until(lambda: status(rt, week).sending == 0)
    time.sleep(0.3)
    return status(rt, week)


@pytest.mark.slow
def test_pause_stops_sending_and_resume_finishes_the_edition_without_duplicates(
    runtime: Callable[..., Runtime],
    env: dict[str, str],
    smtp: TimedHandler,
) -> None:
    rt = runtime(send_rate=100)
    operator = runtime(send_rate=100)  # another process: the workers learn of the pause late
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(600)
    subscribe_all(rt, everyone)

    with sweeping_worker(rt):
        send(rt, week, now)
        wait_until(lambda: len(smtp.received) >= 50)
        # What `newsletter pause` does, without a subprocess's start-up time under load.
        assert control.pause(operator, week)
        mails_at_pause = len(smtp.received)
        paused = settled(rt, week)
        mails_then = len(smtp.received)
        # Only deliveries in a worker's hands, or claimed before it re-reads the edition's
        # status (at most EDITION_INFO_TTL_S later), may still go out.
        assert mails_then - mails_at_pause <= THREADS + 100 * EDITION_INFO_TTL_S, paused
        # A sweep leaves a paused edition alone, and the jobs still queued hand their rows back.
        assert nothing_swept(rt)
        drain_queues(rt)
        assert len(smtp.received) == mails_then
        later = status(rt, week)
        # Jobs still in Redis hand their rows back (queued/sending flicker); nothing is done.
        assert (later.status, later.sent, later.done) == ("paused", paused.sent, paused.done)
        assert 0 < paused.sent < 600 and later.queued + later.sending == 600 - later.done

        newsletter(env, "resume", "--week", week, NEWSLETTER_SEND_RATE="100")  # the operator
        view = wait_for_edition(rt, week)

    assert view.sent == 600
    mailed = smtp.mailed()
    assert set(mailed) == set(everyone) and max(mailed.values()) == 1


def test_cancel_mid_edition_skips_everyone_not_yet_mailed(
    runtime: Callable[..., Runtime],
    env: dict[str, str],
    smtp: TimedHandler,
) -> None:
    rt = runtime(send_rate=100)
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe_all(rt, readers(500))

    with sweeping_worker(rt):
        send(rt, week, now)
        wait_until(lambda: len(smtp.received) >= 50)
        assert control.cancel(rt, week) > 0  # what `newsletter cancel` does
        mails_at_cancel = len(smtp.received)
        cancelled = settled(rt, week)
        mails_then = len(smtp.received)
        assert mails_then - mails_at_cancel <= THREADS
        # A sweep leaves a cancelled edition alone; the jobs still queued send nothing.
        assert nothing_swept(rt)
        drain_queues(rt)
        assert len(smtp.received) == mails_then

    seen = operator_status(env, week)
    assert seen["status"] == "cancelled"
    assert (seen["queued"], seen["sending"]) == (0, 0)
    assert seen["sent"] == mails_then == cancelled.sent and seen["skipped"] == 500 - mails_then
    assert 0 < mails_then < 500
    assert max(smtp.mailed().values()) == 1
