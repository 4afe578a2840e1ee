"""Delivery counters shared by every worker process: kept in one Redis hash, so that a scrape
of any web process sees the sum over all workers on all hosts.

Each process adds up its events in memory and a daemon thread writes them with one pipelined
``HINCRBY`` batch a second (and at exit), so counting costs the delivery path no round trip.
A process killed with SIGKILL loses at most its last second of counts; the database, which
is the truth about deliveries, loses nothing.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
from collections import Counter
from collections.abc import Mapping

import redis

log = logging.getLogger(__name__)

KEY = "newsletter:metrics"
OUTCOMES = ("sent", "failed", "bounced", "retried", "skipped")
REPLY_CLASSES = ("2xx", "4xx", "5xx", "none")
"""SMTP replies by class; ``none`` is no reply at all (connection lost, timeout)."""
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, math.inf)
"""Upper bounds of the claim-to-sent latency histogram (waiting on the rate limit included)."""


def reply_class(code: int | None) -> str:
    """``2xx``, ``4xx``, ``5xx`` for an SMTP reply code, ``none`` without one."""
    if code is None or not 200 <= code < 600:
        return "none"
    return f"{code // 100}xx" if code // 100 in (2, 4, 5) else "none"


def bucket_of(latency_s: float) -> str:
    """The histogram bucket (its upper bound, as stored) a latency falls in."""
    for bound in LATENCY_BUCKETS_S:
        if latency_s <= bound:
            return "+Inf" if math.isinf(bound) else repr(bound)
    return "+Inf"


class Counters:
    """This process's counts, on their way to the shared hash."""

    def __init__(self, client: redis.Redis, flush_every_s: float = 1.0) -> None:
        self.client = client
        self.flush_every_s = flush_every_s
        self._pending: Counter[str] = Counter()
        self._latency_sum_s = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)

    def delivery(self, outcome: str, reply: str | None, latency_s: float | None = None) -> None:
        """Count one delivery attempt's outcome, the class of the reply it got, and (sent
        ones) the time from claim to the server's acceptance."""
        with self._lock:
            self._pending[f"deliveries:{outcome}"] += 1
            if reply is not None:
                self._pending[f"replies:{reply}"] += 1
            if latency_s is not None:
                self._pending[f"latency:{bucket_of(latency_s)}"] += 1
                self._pending["latency:count"] += 1
                self._latency_sum_s += latency_s
        self._start()

    def flush(self) -> None:
        """Write what piled up to Redis (what fails to go is kept for the next try)."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
            latency_sum_s, self._latency_sum_s = self._latency_sum_s, 0.0
        if not pending and not latency_sum_s:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for name, amount in pending.items():
                pipe.hincrby(KEY, name, amount)
            if latency_sum_s:
                pipe.hincrbyfloat(KEY, "latency:sum", latency_sum_s)
            pipe.execute()
        except Exception as exc:  # Redis away: keep the counts for the next flush
            log.warning("metrics: counts not written yet: %s", exc)
            with self._lock:
                self._pending.update(pending)
                self._latency_sum_s += latency_sum_s

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="metrics-flush", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while not self._wake.wait(self.flush_every_s):
            self.flush()


def read_counters(client: redis.Redis) -> Mapping[str, float]:
    """Every count in the shared hash, by name (``deliveries:sent``, ``latency:0.5``...)."""
    raw = client.hgetall(KEY)
    return {(k.decode() if isinstance(k, bytes) else str(k)): float(v) for k, v in raw.items()}
