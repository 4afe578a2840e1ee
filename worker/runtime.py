"""The container of a running process: settings, database engine, Redis, broker, transport,
renderer, identity and the delivery writer.

Built once per entry point from the settings and handed to whatever needs it; nothing reads
settings from a global. It holds infrastructure only: no service, actor or entry point is
imported here (an import-linter contract keeps it so). What the services keep per process
(caches, the actors) lives in ``memo``, under a key of their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import cached_property
from typing import Any, TypeVar

import redis
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.engine import Engine
from sqlmodel import Session

from worker.broker import connect_redis, make_broker
from worker.config import Settings
from worker.db import WriterLock, is_migrated, make_engine, migrate
from worker.errors import DatabaseUnavailable
from worker.sending.dkim import load_signer
from worker.sending.message import Identity
from worker.sending.render import Renderer
from worker.sending.transport import Transport, make_transport
from worker.sending.writer import DeliveryWriter

T = TypeVar("T")


@dataclass
class Runtime:
    """The live parts of one process. Redis, and what lives on it, is connected on first use,
    so commands that only touch the database never start the embedded server."""

    settings: Settings
    engine: Engine
    transport: Transport
    renderer: Renderer
    identity: Identity
    redis_client: redis.Redis | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def redis(self) -> redis.Redis:
        """The Redis client (embedded server started if needed)."""
        if self.redis_client is None:
            self.redis_client = connect_redis(self.settings.redis_url, self.settings.data_dir)
        return self.redis_client

    @cached_property
    def broker(self) -> RedisBroker:
        """The dramatiq broker on our Redis."""
        return make_broker(self.redis)

    @cached_property
    def writer_lock(self) -> WriterLock:
        """One writer at a time: on SQLite across this host's processes, on PostgreSQL only
        among this process's threads that take it (the group writer)."""
        return WriterLock(self.engine)

    @cached_property
    def writes(self) -> DeliveryWriter:
        """The delivery writes of this process's threads (claims, leases, outcomes), made by
        one writer thread in shared transactions."""
        return DeliveryWriter(self.engine, self.writer_lock.held, self.settings.stuck_after_s)

    @property
    def secret_key(self) -> str:
        """The key that signs links and VERP tokens."""
        assert self.settings.secret_key
        return self.settings.secret_key

    def session(self) -> Session:
        """A new database session."""
        return Session(self.engine, expire_on_commit=False)

    def kept(self, key: str, build: Callable[[], T]) -> T:
        """What a service keeps for the life of this process under ``key``, built on first use."""
        with self._lock:
            if key not in self.memo:
                self.memo[key] = build()
            value: T = self.memo[key]
            return value

    def close(self) -> None:
        """Release connections (SMTP, database)."""
        self.transport.close()
        if "writes" in self.__dict__:
            self.writes.close()
        self.engine.dispose()
        if "writer_lock" in self.__dict__:
            self.writer_lock.close()


def open_runtime(
    settings: Settings,
    transport: Transport | None = None,
    require_schema: bool = True,
    redis_client: redis.Redis | None = None,
) -> Runtime:
    """Connect everything the settings describe."""
    engine = make_engine(
        settings.resolved_database_url, pool_size=max(5, settings.worker_threads + 2)
    )
    if require_schema and not is_migrated(engine):
        # A brand-new database gets its schema on first use, so that any command works on a
        # fresh data dir; `newsletter init` does the same explicitly (and upgrades later).
        try:
            migrate(engine)
        except DatabaseUnavailable:
            if not is_migrated(engine):  # another process may have just created it
                raise
    name, _address = parseaddr(settings.mail_from)
    return Runtime(
        settings=settings,
        engine=engine,
        redis_client=redis_client,
        transport=transport
        or make_transport(settings.smtp_url, settings.outbox_dir, settings.smtp_data_timeout_s),
        renderer=Renderer(
            public_url=settings.public_url,
            postal_address=settings.postal_address or "",
            intro=settings.edition_intro,
        ),
        identity=Identity(
            mail_from=settings.mail_from,
            list_id=f"{name or 'Weekly AI Tool Verdicts'} <verdicts.{settings.mail_domain}>",
            sender_id=settings.feedback_sender_id,
            signer=load_signer(
                settings.dkim_domain, settings.dkim_selector, settings.dkim_key_file
            ),
        ),
    )
