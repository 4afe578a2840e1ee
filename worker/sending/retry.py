"""Backoff arithmetic for retried deliveries: pure, apart from the random jitter source."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_s(
    attempt: int, min_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential from ``min_s``, capped at ``max_s``, with "equal jitter": between half and all
    of the step, so that a crowd of deliveries failing together does not return together.
    """
    step = min(max_s, min_s * 2 ** max(0, attempt - 1))
    return step / 2 + rand() * step / 2
