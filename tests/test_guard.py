"""The guard rail's decision (pure): when an edition's recent attempts pause it."""

from __future__ import annotations

import pytest

from worker.sending.guard import MIN_ATTEMPTS, Attempts, autopause_reason

CASES = [
    # (attempts, hard bounces, failures, threshold, paused?, named in the reason)
    (500, 0, 0, 0.05, False, None),
    (500, 25, 0, 0.05, False, None),  # exactly 5%: not above it
    (500, 26, 0, 0.05, True, "26 hard bounces in the last 500 attempts (5.2%"),
    (500, 0, 26, 0.05, True, "26 failures in the last 500 attempts"),
    (500, 20, 20, 0.05, False, None),  # each rate on its own, not their sum
    (200, 20, 0, 0.05, True, "10.0%"),
    (MIN_ATTEMPTS - 1, 50, 0, 0.05, False, None),  # too few attempts to judge
    (MIN_ATTEMPTS, 6, 0, 0.05, True, "hard bounces"),
    (500, 100, 100, 0.0, False, None),  # 0 disables the guard rail
    (500, 60, 0, 0.2, False, None),
    (500, 101, 0, 0.2, True, "above the 20.0% of NEWSLETTER_AUTOPAUSE_BOUNCE_RATE"),
    (0, 0, 0, 0.05, False, None),
]


@pytest.mark.parametrize(("total", "hard", "failed", "threshold", "paused", "named"), CASES)
def test_the_guard_rail_pauses_only_above_its_threshold_over_enough_attempts(
    total: int, hard: int, failed: int, threshold: float, paused: bool, named: str | None
) -> None:
    reason = autopause_reason(Attempts(total, hard, failed), threshold)
    assert (reason is not None) is paused
    if named:
        assert reason is not None and named in reason and reason.startswith("auto-paused: ")
