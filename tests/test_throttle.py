"""The shared send rate: a GCRA schedule on Redis that waits instead of raising; fractional
rates are rates, not "no limit"."""

from __future__ import annotations

import pytest
import redis

from worker.config import load_settings, parse_domain_rates, per_second
from worker.errors import ConfigError
from worker.sending.throttle import Throttle, over_limit


class Sleeps:
    """The throttle's sleep, recorded instead of slept: what a worker thread would wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.mark.parametrize(
    ("text", "per_s"),
    [("0.5/s", 0.5), ("30/minute", 0.5), ("1/hour", 1 / 3600), ("20/s", 20.0), ("2.5/m", 2.5 / 60)],
)
def test_rates_parse_as_messages_per_second(text: str, per_s: float) -> None:
    assert per_second(text) == pytest.approx(per_s)


@pytest.mark.parametrize("text", ["0/s", "0.0/minute", "-1/s", "fast", "5 per second"])
def test_a_rate_of_nothing_or_nonsense_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="COUNT > 0"):
        per_second(text)


def test_half_a_message_a_second_means_one_every_two_seconds(redis_client: redis.Redis) -> None:
    sleeps = Sleeps()
    limits = parse_domain_rates("example.com=0.5/s")
    throttle = Throttle(redis_client, 0, limits, namespace="test:throttle", sleep=sleeps)
    for _ in range(4):
        throttle.wait("reader@example.com")
    throttle.wait("reader@example.org")  # another domain: no limit
    assert sleeps.waits[0:3] == [pytest.approx(w, abs=0.05) for w in (2.0, 4.0, 6.0)]
    assert len(sleeps.waits) == 3


def test_a_global_rate_holds_across_throttles_sharing_redis(redis_client: redis.Redis) -> None:
    sleeps = Sleeps()
    one = Throttle(redis_client, 4, namespace="test:throttle", sleep=sleeps)
    two = Throttle(redis_client, 4, namespace="test:throttle", sleep=sleeps)
    for _ in range(3):
        one.wait("a@example.com")
        two.wait("b@example.com")
    # Six messages at 4/s: slots 0, 0.25, … 1.25 s from the first.
    assert sleeps.waits == [pytest.approx(w, abs=0.05) for w in (0.25, 0.5, 0.75, 1.0, 1.25)]


def test_settings_take_fractional_rates(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSLETTER_SEND_RATE", "0.5/s")
    monkeypatch.setenv("NEWSLETTER_DOMAIN_RATES", "gmail.com=0.5/s, yahoo.com=30/minute")
    settings = load_settings()
    assert settings.send_rate == 0.5
    assert settings.domain_rate_per_s == {"gmail.com": 0.5, "yahoo.com": 0.5}
    monkeypatch.setenv("NEWSLETTER_DOMAIN_RATES", "gmail.com=0/s")
    with pytest.raises(ConfigError, match="NEWSLETTER_DOMAIN_RATES: .*COUNT > 0"):
        load_settings()


def test_a_request_limit_allows_its_burst_then_says_how_long_to_wait(
    redis_client: redis.Redis,
) -> None:
    waits = [over_limit(redis_client, "test:limit:192.0.2.7", 3, 60) for _ in range(4)]
    assert waits[:3] == [None, None, None]
    assert waits[3] == pytest.approx(20, abs=0.5)  # one slot every 20 s once the burst is used
    assert over_limit(redis_client, "test:limit:192.0.2.8", 3, 60) is None  # another client


class Clock:
    """An injected clock in microseconds: the throttle's schedule, free of the machine's load."""

    def __init__(self, start_s: float = 1_000_000.0) -> None:
        self.now_us = int(start_s * 1_000_000)

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)


def test_on_an_injected_clock_each_message_waits_for_its_slot_exactly(
    redis_client: redis.Redis,
) -> None:
    clock, sleeps = Clock(), Sleeps()
    throttle = Throttle(redis_client, 4, namespace="test:clock", sleep=sleeps, clock=clock)
    assert [throttle.wait("a@example.com") for _ in range(3)] == [0.0, 0.25, 0.5]
    assert sleeps.waits == [0.25, 0.5]  # no sleep at all for a free slot
    clock.advance(10)  # long idle: the schedule does not bank slots
    assert throttle.wait("a@example.com") == 0.0
    assert throttle.wait("a@example.com") == 0.25
    clock.advance(0.1)
    assert throttle.wait("a@example.com") == 0.4  # the next slot is 0.25 s after the last one


def test_a_domain_rate_and_the_global_rate_both_apply(redis_client: redis.Redis) -> None:
    clock, sleeps = Clock(), Sleeps()
    throttle = Throttle(
        redis_client, 10, {"slow.example": 1}, namespace="test:both", sleep=sleeps, clock=clock
    )
    assert throttle.wait("a@slow.example") == 0.0
    # The domain's next slot is 1 s away, then the global one 0.1 s after the first message.
    assert throttle.wait("b@SLOW.example") == pytest.approx(1.0 + 0.1)
    assert throttle.wait("c@fast.example") == pytest.approx(0.2)
    assert throttle.wait("d@fast.example") == pytest.approx(0.3)


def test_no_rate_means_no_wait_and_no_redis_key(redis_client: redis.Redis) -> None:
    throttle = Throttle(redis_client, 0, {}, namespace="test:none", clock=Clock())
    assert throttle.wait("a@example.com") == 0.0
    assert redis_client.keys("test:none:*") == []


def test_the_schedule_key_expires_about_a_second_after_its_last_slot(
    redis_client: redis.Redis,
) -> None:
    throttle = Throttle(redis_client, 0.5, namespace="test:ttl", sleep=Sleeps(), clock=Clock())
    throttle.wait("a@example.com")
    assert 2_900 <= redis_client.pttl("test:ttl:global") <= 3_000  # 2 s interval + 1 s


def test_a_request_limit_on_an_injected_clock(redis_client: redis.Redis) -> None:
    clock = Clock()

    def take() -> float | None:
        return over_limit(redis_client, "test:limit:clock", 3, 60, clock=clock)

    assert [take(), take(), take()] == [None, None, None]  # the burst
    assert take() == 20.0  # then one every 20 s
    clock.advance(19.5)
    assert take() == 0.5
    clock.advance(0.5)
    assert take() is None
    assert take() == 20.0
    clock.advance(60)  # idle for a whole period: the burst is back, no more
    assert [take(), take(), take(), take()] == [None, None, None, 20.0]


def test_each_domain_has_a_schedule_of_its_own_under_the_default_namespace(
    redis_client: redis.Redis,
) -> None:
    clock, sleeps = Clock(), Sleeps()
    rates = {"one.example": 0.5, "two.example": 0.5}
    throttle = Throttle(redis_client, 0, rates, sleep=sleeps, clock=clock)
    assert throttle.wait("a@one.example") == 0.0
    assert throttle.wait("b@two.example") == 0.0  # not behind one.example's slot
    assert throttle.wait("c@one.example") == 2.0  # exactly: one message every two seconds
    # The domain is after the last @, even when a quoted local part holds one.
    assert throttle.wait('"d@two.example"@one.example') == 4.0
    assert sorted(k.decode() for k in redis_client.keys("newsletter:throttle:*")) == [
        "newsletter:throttle:domain:one.example",
        "newsletter:throttle:domain:two.example",
    ]
