"""What the long-running processes tell the console about themselves through Redis: the
scheduler's last run, its result and its next fire; the workers' presence keys (written by
their sweeper threads, see ``worker.actors``); the depth of the job queues."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

SCHEDULER_KEY = "newsletter:scheduler"
SCHEDULER_TTL_S = 7 * 24 * 3600
SCHEDULER_STALE_S = 180
"""The scheduler runs a job every minute: no word from it for this long means it is not running."""
WORKER_PRESENCE = "newsletter:worker:"


def write_scheduler_heartbeat(
    client: redis.Redis, now: datetime, next_fire_at: datetime | None, result: str | None = None
) -> None:
    """Note that the scheduler is alive now, when it fires next and (after a weekly run) what
    that run decided."""
    fields: dict[Any, Any] = {
        "seen_at": now.isoformat(),
        "host": f"{socket.gethostname()}:{os.getpid()}",
    }
    if next_fire_at is not None:
        fields["next_fire_at"] = next_fire_at.isoformat()
    if result is not None:
        fields["last_result"] = result
        fields["last_run_at"] = now.isoformat()
    pipe = client.pipeline()
    pipe.hset(SCHEDULER_KEY, mapping=fields)
    pipe.expire(SCHEDULER_KEY, SCHEDULER_TTL_S)
    pipe.execute()


@dataclass(frozen=True)
class SchedulerBeat:
    """The scheduler's last word."""

    seen_at: datetime | None
    host: str
    next_fire_at: datetime | None
    last_run_at: datetime | None
    last_result: str

    def alive(self, now: datetime) -> bool:
        """True when the scheduler spoke recently."""
        return self.seen_at is not None and (now - self.seen_at).total_seconds() < SCHEDULER_STALE_S


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _moment(value: Any) -> datetime | None:
    text = _text(value)
    return datetime.fromisoformat(text) if text else None


def read_scheduler_heartbeat(client: redis.Redis) -> SchedulerBeat | None:
    """The scheduler's last heartbeat, or None when no scheduler ever ran here."""
    raw = {_text(k): v for k, v in client.hgetall(SCHEDULER_KEY).items()}
    if not raw:
        return None
    return SchedulerBeat(
        seen_at=_moment(raw.get("seen_at")),
        host=_text(raw.get("host")),
        next_fire_at=_moment(raw.get("next_fire_at")),
        last_run_at=_moment(raw.get("last_run_at")),
        last_result=_text(raw.get("last_result")),
    )


def list_workers(client: redis.Redis) -> list[tuple[str, int]]:
    """Worker processes alive on any host, as (host:pid, seconds left on their presence key)."""
    names = sorted(_text(k) for k in client.scan_iter(match=WORKER_PRESENCE + "*", count=100))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.ttl(name)
    return [
        (name.removeprefix(WORKER_PRESENCE), int(ttl))
        for name, ttl in zip(names, pipe.execute(), strict=True)
    ]


def queue_depths(client: redis.Redis, namespace: str, queues: list[str]) -> dict[str, int]:
    """Jobs each queue holds (waiting, delayed, or taken by a worker and not yet done)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.hlen(f"{namespace}:{queue}.msgs")
        pipe.hlen(f"{namespace}:{queue}.DQ.msgs")
    counts = pipe.execute()
    return {q: int(counts[2 * i]) + int(counts[2 * i + 1]) for i, q in enumerate(queues)}
