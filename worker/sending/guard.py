"""The guard rail of a send (pure): when an edition's recent attempts bounce or fail too often,
it is paused before it damages the sender's reputation any further.

Over the edition's last ``WINDOW`` attempts (deliveries that reached ``sent``, ``bounced`` or
``failed``), a hard-bounce rate or a failure rate above the threshold
(``NEWSLETTER_AUTOPAUSE_BOUNCE_RATE``) trips it. Fewer than ``MIN_ATTEMPTS`` attempts say too
little to judge: a small edition with two dead addresses is not paused for them.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW = 500
MIN_ATTEMPTS = 100


@dataclass(frozen=True)
class Attempts:
    """The outcomes of an edition's recent attempts."""

    total: int
    hard_bounces: int
    failures: int


def autopause_reason(
    attempts: Attempts, threshold: float, min_attempts: int = MIN_ATTEMPTS
) -> str | None:
    """Why the edition must be paused now, or None to carry on. A threshold of 0 disables it."""
    if threshold <= 0 or attempts.total < min_attempts or attempts.total <= 0:
        return None
    for count, what in ((attempts.hard_bounces, "hard bounces"), (attempts.failures, "failures")):
        rate = count / attempts.total
        if rate > threshold:
            return (
                f"auto-paused: {count} {what} in the last {attempts.total} attempts "
                f"({rate:.1%}, above the {threshold:.1%} of NEWSLETTER_AUTOPAUSE_BOUNCE_RATE)"
            )
    return None
