"""The broker: our pipelined enqueue and batched acks ride on dramatiq's Redis broker internals
(its dispatch script and the argument order of that script, its consumer class, where it keeps
messages). dramatiq is pinned to one minor version; these tests are the contract that fails
loudly, naming what moved, when an upgrade changes any of it."""

from __future__ import annotations

import inspect
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer

from worker.broker import ACK_BATCH, _BatchAckConsumer, enqueue_many, jobs_present, make_broker

DISPATCH = Path(inspect.getfile(RedisBroker)).parent / "redis" / "dispatch.lua"


def test_the_dispatch_script_takes_its_arguments_in_the_order_we_pass_them() -> None:
    script = DISPATCH.read_text()
    assert (
        "args=[command, timestamp, queue_name, worker_id, heartbeat_timeout, dead_message_ttl,"
        " do_maintenance, max_unpack_size, ...]" in script
    ), "dramatiq's dispatch script changed its arguments: update worker.broker"
    for position, name in enumerate(
        (
            "command",
            "timestamp",
            "queue_name",
            "worker_id",
            "heartbeat_timeout",
            "dead_message_ttl",
            "do_maintenance",
            "max_unpack_size",
        ),
        start=1,
    ):
        assert re.search(rf"local {name} = ARGV\[{position}\]", script), name
    enqueue = script[script.index('command == "enqueue"') :]
    assert "local message_id = ARGS[1]" in enqueue and "local message_data = ARGS[2]" in enqueue
    ack = script[script.index('command == "ack"') :]
    assert "local message_id = ARGS[1]" in ack
    # jobs_present reads the hash where a message waits until its ack deletes it.
    assert 'local queue_messages = queue_full_name .. ".msgs"' in script
    assert 'redis.call("hdel", queue_messages, message_id)' in ack


def test_the_broker_and_its_consumer_have_what_we_lean_on() -> None:
    broker = make_broker(redis.Redis())  # not connected: only looked at
    assert "dispatch" in broker.scripts
    assert isinstance(broker._max_unpack_size(), int)
    assert broker.consumer_class is _BatchAckConsumer
    assert issubclass(_BatchAckConsumer, _RedisConsumer)
    consumer_init = inspect.signature(_RedisConsumer.__init__).parameters
    assert list(consumer_init)[:4] == ["self", "broker", "queue_name", "prefetch"]
    assert "queued_message_ids" in inspect.getsource(_RedisConsumer.__init__)


@pytest.fixture
def broker(redis_client: redis.Redis) -> Any:
    made = make_broker(redis_client)
    yield made
    made.close()


def test_jobs_enqueued_in_batches_run_once_each_and_leave_nothing_behind(broker: Any) -> None:
    ran: Counter[int] = Counter()
    lock = threading.Lock()

    @dramatiq.actor(broker=broker, queue_name="contract", actor_name="contract_job")
    def job(number: int) -> None:
        with lock:
            ran[number] += 1

    count = 3 * ACK_BATCH + 5  # some acks go in full batches, the rest on the consumer's turn
    messages = [
        job.message_with_options(args=(n,), redis_message_id=f"job-{n}") for n in range(count)
    ]
    enqueue_many(broker, messages)
    ids = [f"job-{n}" for n in range(count)]
    assert jobs_present(broker, "contract", ids) == set(ids)

    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    try:
        broker.join("contract", timeout=30_000)
        worker.join()
    finally:
        worker.stop()

    assert ran == Counter(range(count))
    assert jobs_present(broker, "contract", ids) == set()  # every ack reached Redis
    assert not broker.client.keys("newsletter:__acks__.*")


def test_acks_refused_by_redis_are_kept_and_sent_later(
    broker: Any, redis_client: redis.Redis
) -> None:
    @dramatiq.actor(broker=broker, queue_name="acks", actor_name="acks_job")
    def job(number: int) -> None:
        pass

    enqueue_many(
        broker, [job.message_with_options(args=(n,), redis_message_id=f"a{n}") for n in range(3)]
    )
    consumer = broker.consume("acks", prefetch=3, timeout=100)
    fetched = [next(consumer) for _ in range(3)]
    redis_client.config_set("min-replicas-to-write", 1)  # Redis refuses writes (no replica)
    try:
        for message in fetched:
            consumer.ack(message)
        consumer._flush_acks()  # refused: NOREPLICAS
        assert jobs_present(broker, "acks", ["a0", "a1", "a2"]) == {"a0", "a1", "a2"}
    finally:
        redis_client.config_set("min-replicas-to-write", 0)
    consumer._flush_acks()
    assert jobs_present(broker, "acks", ["a0", "a1", "a2"]) == set()
    consumer.close()
