"""dramatiq actors: thin wrappers that take ids and call the services in ``worker.sending``.

``Actors`` is also the pipeline's ``Dispatch``: how it hands work to the queue. Actors are
declared on the Runtime's broker when a process builds ``Actors(rt)``, rather than at import
time on a global broker, so that settings flow down from each entry point.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

import dramatiq

from worker.broker import enqueue_many, jobs_present
from worker.heartbeat import WORKER_PRESENCE
from worker.models import EditionStatus, utcnow
from worker.runtime import Runtime
from worker.sending import delivery, pipeline
from worker.sending import queries as sending

log = logging.getLogger(__name__)

QUEUE_EDITIONS = "editions"
QUEUE_DELIVERIES = "deliveries"
QUEUE_TRANSACTIONAL = "transactional"
REFILL_EVERY_MS = 1000
REFILL_CHAIN = "newsletter:refill:"
REFILL_CHAIN_TTL_MS = 60_000
"""A refill chain that has not renewed its key for this long is taken for lost; the sweep
starts another (and the old one, should its job still come, stops)."""
DELIVER_TIME_LIMIT_MS = 3_600_000
"""Above the longest a delivery may rightly take: a throttle slot, then up to ten minutes for
the final reply (NEWSLETTER_SMTP_DATA_TIMEOUT_S)."""
SWEEP_LOCK = "newsletter:sweep"


class Actors:
    """The actors of one process, bound to its runtime and broker; the pipeline's Dispatch."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        broker = rt.broker

        def declare(fn: Callable[..., Any], name: str, queue: str, **options: Any) -> Any:
            decorator = dramatiq.actor(broker=broker, actor_name=name, queue_name=queue, **options)
            return decorator(fn)

        self.fan_out = declare(
            self._fan_out,
            "fan_out",
            QUEUE_EDITIONS,
            max_retries=20,
            min_backoff=1000,
            max_backoff=60_000,
            time_limit=6 * 3600 * 1000,
            priority=5,
        )
        self.refill = declare(
            self._refill,
            "refill",
            QUEUE_EDITIONS,
            max_retries=3,
            min_backoff=1000,
            time_limit=600_000,
            priority=5,
        )
        # A deliver job that raises is retried by dramatiq, but nothing rests on it: the row
        # says what is owed, and the sweep hands a row whose job is gone to a new one.
        self.deliver = declare(
            self._deliver,
            "deliver",
            QUEUE_DELIVERIES,
            max_retries=3,
            min_backoff=1000,
            max_backoff=60_000,
            time_limit=DELIVER_TIME_LIMIT_MS,
            priority=10,
        )
        # Transactional mail (confirmations) has a queue of its own, so it never waits behind
        # an edition in progress, and the highest priority for worker threads.
        self.send_mail = declare(
            self._send_mail,
            "send_mail",
            QUEUE_TRANSACTIONAL,
            max_retries=10,
            min_backoff=2000,
            max_backoff=300_000,
            time_limit=120_000,
            priority=0,
        )

    # --- Dispatch: what the pipeline calls to hand work over --------------------------------

    def start_fan_out(self, edition_id: int) -> None:
        """Fan out an edition on a worker."""
        self.fan_out.send(edition_id)

    def start_refill(self, edition_id: int) -> None:
        """Start the edition's refill chain unless one is running."""
        token = secrets.token_hex(8)
        if self.rt.redis.set(f"{REFILL_CHAIN}{edition_id}", token, nx=True, px=REFILL_CHAIN_TTL_MS):
            self.refill.send_with_options(args=(edition_id, token), delay=REFILL_EVERY_MS)

    def enqueue(self, jobs: list[tuple[int, str]]) -> None:
        """One deliver job per (delivery id, job id), written to Redis in pipelined batches."""
        enqueue_many(
            self.rt.broker,
            [
                self.deliver.message_with_options(args=(delivery_id,), redis_message_id=job_id)
                for delivery_id, job_id in jobs
            ],
        )

    def jobs_alive(self, job_ids: Iterable[str]) -> set[str]:
        """Which deliver jobs the queue still holds."""
        return jobs_present(self.rt.broker, QUEUE_DELIVERIES, list(job_ids))

    def send_transactional(self, kind: str, subscriber_id: int) -> None:
        """A confirmation or similar, on the transactional queue."""
        self.send_mail.send(kind, subscriber_id)

    # --- actor bodies ----------------------------------------------------------------------

    def _fan_out(self, edition_id: int) -> None:
        pipeline.fan_out(self.rt, edition_id, self)

    def _refill(self, edition_id: int, token: str) -> None:
        """Every second while an edition is sending: top its queue up, and mark it sent when
        nothing is owed any more. Only the chain whose token the edition's key holds goes on."""
        key = f"{REFILL_CHAIN}{edition_id}"
        redis = self.rt.redis
        owner = _text(redis.get(key))
        if owner is None:
            if not redis.set(key, token, nx=True, px=REFILL_CHAIN_TTL_MS):
                return
        elif owner != token:
            return  # another chain took over
        if pipeline.guard(self.rt, edition_id) is None:
            pipeline.refill(self.rt, edition_id, utcnow(), self)
        done = pipeline.finish_if_done(self.rt, edition_id)
        with self.rt.session() as session:
            edition = sending.get_edition_by_id(session, edition_id)
        if done or edition is None or edition.status != EditionStatus.sending.value:
            if _text(redis.get(key)) == token:
                redis.delete(key)
            return
        redis.set(key, token, xx=True, px=REFILL_CHAIN_TTL_MS)
        self.refill.send_with_options(args=(edition_id, token), delay=REFILL_EVERY_MS)

    def _deliver(self, delivery_id: int) -> None:
        delivery.deliver(self.rt, delivery_id)

    def _send_mail(self, kind: str, subscriber_id: int) -> None:
        from worker.sending import transactional

        transactional.send(self.rt, kind, subscriber_id)

    # --- the sweep ------------------------------------------------------------------------

    def sweep_once(self) -> dict[str, int] | None:
        """Run one sweep if no other process on any host is running one; None if skipped."""
        lock_ms = int(self.rt.settings.sweep_interval_s * 900)
        if not self.rt.redis.set(SWEEP_LOCK, "1", nx=True, px=max(lock_ms, 1000)):
            return None
        return pipeline.sweep(self.rt, utcnow(), self)


def actors_of(rt: Runtime) -> Actors:
    """The process's actors, declared once on its runtime's broker."""
    return rt.kept("actors", lambda: Actors(rt))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Sweeper(threading.Thread):
    """Runs the sweep every ``sweep_interval_s`` in a worker process until stopped."""

    def __init__(self, actors: Actors) -> None:
        super().__init__(name="sweeper", daemon=True)
        self.actors = actors
        self.stopped = threading.Event()

    def run(self) -> None:
        interval_s = self.actors.rt.settings.sweep_interval_s
        presence = f"{WORKER_PRESENCE}{socket.gethostname()}:{os.getpid()}"
        ttl_s = max(5, int(3 * interval_s))
        self.actors.rt.redis.set(presence, "1", ex=ttl_s)
        while not self.stopped.wait(interval_s):
            try:
                self.actors.rt.redis.set(presence, "1", ex=ttl_s)
                result = self.actors.sweep_once()
                if result and (result["requeued"] or result["fanouts"] or result["finished"]):
                    log.info("sweep: %s", result)
            except Exception:
                log.exception("sweep failed; trying again in %ss", interval_s)

    def stop(self) -> None:
        """Stop after the current pass."""
        self.stopped.set()


def count_workers(rt: Runtime) -> int:
    """Worker processes alive on any host (each renews a short-lived key as it sweeps)."""
    return sum(1 for _ in rt.redis.scan_iter(match=WORKER_PRESENCE + "*", count=100))
