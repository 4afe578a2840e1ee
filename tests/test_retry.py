"""Backoff for retried deliveries: exponential from the minimum, capped, with equal jitter drawn
from an injected random source."""

from __future__ import annotations

import pytest

from worker.sending.retry import backoff_s


def fixed(value: float):  # type: ignore[no-untyped-def]
    return lambda: value


@pytest.mark.parametrize(
    ("attempt", "step_s"),
    [(0, 10), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (12, 300)],
)
def test_the_step_doubles_from_the_minimum_up_to_the_cap(attempt: int, step_s: float) -> None:
    # The jitter's bounds: half the step with rand() = 0, the whole step with rand() -> 1.
    assert backoff_s(attempt, 10, 300, rand=fixed(0.0)) == pytest.approx(step_s / 2)
    assert backoff_s(attempt, 10, 300, rand=fixed(1.0)) == pytest.approx(step_s)
    assert backoff_s(attempt, 10, 300, rand=fixed(0.5)) == pytest.approx(step_s * 0.75)


def test_jitter_stays_within_half_and_all_of_the_step() -> None:
    import random

    source = random.Random(7)
    waits = [backoff_s(3, 10, 300, rand=source.random) for _ in range(500)]
    assert min(waits) >= 20 and max(waits) <= 40
    assert max(waits) - min(waits) > 15  # spread out, not one value


def test_the_default_source_is_random_and_bounded() -> None:
    waits = {backoff_s(2, 10, 300) for _ in range(50)}
    assert all(10 <= w <= 20 for w in waits)
    assert len(waits) > 1


def test_a_minimum_above_the_cap_is_capped() -> None:
    assert backoff_s(1, 500, 300, rand=fixed(1.0)) == pytest.approx(300)
