"""A global send rate shared by every worker, kept in Redis, that waits rather than raises.

Each message reserves the next free slot of a GCRA schedule with one atomic script call and
sleeps until its slot comes. dramatiq's own rate limiters raise instead, which would burn the
retry budget of a delivery that did nothing wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

# Times in microseconds from Redis' own clock, so that every host shares one schedule.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ttl_ms = math.ceil((tat + interval - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', ttl_ms)
return math.floor(tat - now)
"""


class Throttle:
    """Spaces messages out to at most ``rate_per_s`` overall and per recipient domain."""

    def __init__(
        self,
        client: redis.Redis,
        rate_per_s: float,
        domain_rates_per_s: dict[str, float] | None = None,
        namespace: str = "newsletter:throttle",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.domain_rates = domain_rates_per_s or {}
        self.namespace = namespace
        self._sleep = sleep
        self._reserve = client.register_script(_RESERVE)

    @property
    def enabled(self) -> bool:
        """True when some limit is set."""
        return self.rate_per_s > 0 or bool(self.domain_rates)

    def _wait_for(self, key: str, rate_per_s: float) -> float:
        wait_us = int(
            self._reserve(keys=[f"{self.namespace}:{key}"], args=[int(1_000_000 / rate_per_s)])
        )
        wait_s = wait_us / 1_000_000
        if wait_s > 0:
            self._sleep(wait_s)
        return wait_s

    def wait(self, recipient: str) -> float:
        """Block until ``recipient`` may be mailed; return the seconds waited."""
        waited = 0.0
        domain = recipient.rpartition("@")[2].lower()
        domain_rate = self.domain_rates.get(domain)
        if domain_rate:
            waited += self._wait_for(f"domain:{domain}", domain_rate)
        if self.rate_per_s > 0:
            waited += self._wait_for("global", self.rate_per_s)
        return waited
