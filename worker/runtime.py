"""What a running process holds: settings, database engine, Redis, broker, transport, caches.

Built once per entry point from the settings and handed to whatever needs it; nothing reads
settings from a global.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import cached_property
from typing import TYPE_CHECKING

import redis
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.engine import Engine
from sqlmodel import Session

from worker import store
from worker.broker import connect_redis, make_broker
from worker.config import Settings
from worker.db import WriterLock, is_migrated, make_engine, migrate
from worker.dkim import load_signer
from worker.errors import DatabaseUnavailable
from worker.message import Identity, PreparedMail, prepare
from worker.planning import Candidate, category_key, pick_for, split_categories
from worker.render import Renderer
from worker.throttle import Throttle
from worker.transport import Transport, make_transport
from worker.writer import DeliveryWriter

if TYPE_CHECKING:
    from worker.actors import Actors

MAIL_CACHE_SIZE = 256
EDITION_INFO_TTL_S = 1.0
"""How stale a worker's view of an edition's status may be: a pause takes effect this fast."""


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
    _mails: OrderedDict[tuple[str, tuple[int, ...]], PreparedMail] = field(
        default_factory=OrderedDict
    )
    _editions: dict[int, tuple[float, store.EditionInfo]] = field(default_factory=dict)
    _planned: dict[int, list[Candidate]] = field(default_factory=dict)
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
    def actors(self) -> Actors:
        """The dramatiq actors, declared once on this runtime's broker."""
        from worker.actors import Actors

        return Actors(self)

    @cached_property
    def throttle(self) -> Throttle:
        """The shared send-rate limiter."""
        return Throttle(self.redis, self.settings.send_rate, self.settings.domain_rate_per_s)

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

    def planned(self, edition_id: int) -> list[Candidate]:
        """The comparisons an edition carries, as candidates, newest first (cached)."""
        with self._lock:
            cached = self._planned.get(edition_id)
        if cached is not None:
            return cached
        with self.session() as session:
            ids = store.list_edition_comparison_ids(session, edition_id)
            views = store.get_comparison_views(session, ids)
        planned = [Candidate(v.id, v.category, v.published_at) for v in views]
        with self._lock:
            self._planned[edition_id] = planned
        return planned

    def picks_for(self, edition_id: int, categories: str) -> tuple[int, ...]:
        """Ids of the comparisons of an edition that a subscriber with ``categories`` gets."""
        return pick_for(category_key(split_categories(categories)), self.planned(edition_id))

    def edition_info(self, edition_id: int) -> store.EditionInfo:
        """Week, kind and status of an edition, re-read at most once a second per process."""
        now = time.monotonic()
        cached = self._editions.get(edition_id)
        if cached is not None and now - cached[0] < EDITION_INFO_TTL_S:
            return cached[1]
        with self.engine.connect() as conn:
            info = store.get_edition_info(conn, edition_id)
        self._editions[edition_id] = (now, info)
        return info

    def forget_edition(self, edition_id: int) -> None:
        """Drop the cached status of an edition (this process just changed it)."""
        self._editions.pop(edition_id, None)

    def mail_for(
        self, week: str, comparison_ids: tuple[int, ...], kind: str = "digest"
    ) -> PreparedMail:
        """The compiled mail for this set of comparisons, rendered once per process."""
        cache_key = (week, comparison_ids)
        with self._lock:
            mail = self._mails.get(cache_key)
            if mail is not None:
                self._mails.move_to_end(cache_key)
                return mail
        with self.session() as session:
            views = store.get_comparison_views(session, comparison_ids)
        if kind == "alert":
            mail = prepare(self.renderer.render_alert(views[0]))
        else:
            mail = prepare(self.renderer.render_digest(week, views))
        with self._lock:
            self._mails[cache_key] = mail
            while len(self._mails) > MAIL_CACHE_SIZE:
                self._mails.popitem(last=False)
        return mail

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
