"""What the scheduler and the workers tell the console through Redis."""

from __future__ import annotations

from datetime import datetime, timedelta

import redis

import scheduler
from worker.config import Settings
from worker.heartbeat import (
    list_workers,
    queue_depths,
    read_scheduler_heartbeat,
    write_scheduler_heartbeat,
)
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending import weekly


def test_a_weekly_run_leaves_its_result_and_next_fire_for_the_console(
    settings: Settings, rt: Runtime
) -> None:
    assert read_scheduler_heartbeat(rt.redis) is None
    decision = scheduler.send_due_week(settings)
    beat = read_scheduler_heartbeat(rt.redis)
    assert beat is not None and beat.alive(utcnow())
    assert beat.last_result.startswith(decision.describe())
    expected = weekly.fire_times(settings.weekly_cron, settings.tz, datetime.now(settings.tz))
    assert beat.next_fire_at == expected.next_at
    assert beat.last_run_at is not None


def test_the_minute_job_says_the_scheduler_is_alive_without_touching_the_last_result(
    settings: Settings, rt: Runtime
) -> None:
    long_ago = utcnow() - timedelta(hours=1)
    write_scheduler_heartbeat(rt.redis, long_ago, None, "2026-W48: sending")
    assert not read_scheduler_heartbeat(rt.redis).alive(utcnow())  # type: ignore[union-attr]
    scheduler.send_alerts(settings)
    beat = read_scheduler_heartbeat(rt.redis)
    assert beat is not None and beat.alive(utcnow())
    assert beat.last_result == "2026-W48: sending" and beat.last_run_at == long_ago


def test_workers_and_queue_depths_are_read_from_redis(redis_client: redis.Redis) -> None:
    redis_client.set("newsletter:worker:host-a:1", "1", ex=30)
    redis_client.set("newsletter:worker:host-b:2", "1", ex=20)
    assert [name for name, _ttl in list_workers(redis_client)] == ["host-a:1", "host-b:2"]
    assert all(0 < ttl <= 30 for _name, ttl in list_workers(redis_client))
    redis_client.hset("newsletter:deliveries.msgs", mapping={"a": "1", "b": "2"})
    redis_client.hset("newsletter:deliveries.DQ.msgs", mapping={"c": "3"})
    assert queue_depths(redis_client, "newsletter", ["deliveries", "editions"]) == {
        "deliveries": 3,
        "editions": 0,
    }
