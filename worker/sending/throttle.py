"""Rates shared by every process, kept in Redis: one GCRA schedule, two ways to use it.

The send rate waits rather than raises: each message reserves the next free slot with one
atomic script call and sleeps until its slot comes (dramatiq's own rate limiters raise instead,
which would burn the retry budget of a delivery that did nothing wrong). A limit on requests
(``over_limit``: the subscribe form per client IP, sign-in attempts) takes a slot only when one
is free within its burst, and otherwise says how long to wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

# Times in microseconds from Redis' own clock, so that every host shares one schedule.
# ARGV: the interval between slots, the burst tolerance, and "try" to take a slot only when
# one is free now (returns -1, or the wait when none is), else reserve the next (returns the
# wait until it); a fourth, when given, is the time to use instead of Redis' clock (tests).
_GCRA = """
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local early = tat - tolerance - now
if ARGV[3] == 'try' and early > 0 then return math.floor(early) end
local ttl_ms = math.ceil((tat + interval - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', ttl_ms)
if ARGV[3] == 'try' then return -1 end
return math.floor(tat - now)
"""


Clock = Callable[[], int]
"""Microseconds since some epoch, shared by every user of a key (default: Redis' clock)."""


def over_limit(
    client: redis.Redis, key: str, count: float, period_s: float, clock: Clock | None = None
) -> float | None:
    """Take one of ``count`` requests per ``period_s`` for ``key`` (a burst of ``count`` at
    once, then one every ``period_s / count``); None when it was free, else the seconds until
    one is."""
    interval_us = int(period_s * 1_000_000 / count)
    tolerance_us = max(0, int(period_s * 1_000_000) - interval_us)
    now = [clock()] if clock else []
    early_us = int(client.eval(_GCRA, 1, key, interval_us, tolerance_us, "try", *now))
    return None if early_us < 0 else early_us / 1_000_000


class Throttle:
    """Spaces messages out to at most ``rate_per_s`` overall and per recipient domain."""

    def __init__(
        self,
        client: redis.Redis,
        rate_per_s: float,
        domain_rates_per_s: dict[str, float] | None = None,
        namespace: str = "newsletter:throttle",
        sleep: Callable[[float], None] = time.sleep,
        clock: Clock | None = None,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.domain_rates = domain_rates_per_s or {}
        self.namespace = namespace
        self._sleep = sleep
        self._clock = clock
        self._reserve = client.register_script(_GCRA)

    def _wait_for(self, key: str, rate_per_s: float) -> float:
        now = [self._clock()] if self._clock else []
        wait_us = int(
            self._reserve(
                keys=[f"{self.namespace}:{key}"],
                args=[int(1_000_000 / rate_per_s), 0, "wait", *now],
            )
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
