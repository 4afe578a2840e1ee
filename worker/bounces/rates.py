"""Bounce and complaint rates of an edition, and when they call for a warning: one pure rule
that ``status``, the operator API and the console all ask.

Mailbox providers judge a sender by these two numbers: past 2% hard bounces the list needs
cleaning, past 0.1% complaints (Gmail's and Yahoo's bulk-sender line is 0.3%, with 0.1% the
level to stay under) mail starts going to spam or is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

HARD_BOUNCE_LIMIT = 0.02
COMPLAINT_LIMIT = 0.001

WARNINGS = {
    "hard_bounces": "hard bounces above 2%: clean the list before the next send",
    "complaints": "complaints above 0.1%: mailbox providers will block you",
}
"""What each warning code tells an operator."""


@dataclass(frozen=True)
class BounceRates:
    """Bounce events of an edition against the deliveries that reached a server."""

    attempted: int
    hard: int
    soft: int
    complaints: int
    sender: int

    @property
    def hard_rate(self) -> float:
        """Hard bounces per delivery attempted (0 before any)."""
        return self.hard / self.attempted if self.attempted else 0.0

    @property
    def complaint_rate(self) -> float:
        """Complaints per delivery attempted (0 before any)."""
        return self.complaints / self.attempted if self.attempted else 0.0

    @property
    def warnings(self) -> list[str]:
        """The warning codes these rates call for (keys of ``WARNINGS``), in a stable order."""
        return rate_warnings(self.hard_rate, self.complaint_rate)


def bounce_rates(sent: int, bounced: int, failed: int, by_kind: Mapping[str, int]) -> BounceRates:
    """The rates of an edition from its delivery counts and its bounce events by kind."""
    return BounceRates(
        attempted=sent + bounced + failed,
        hard=by_kind.get("hard", 0),
        soft=by_kind.get("soft", 0),
        complaints=by_kind.get("complaint", 0),
        sender=by_kind.get("sender", 0),
    )


def rate_warnings(hard_rate: float, complaint_rate: float) -> list[str]:
    """``hard_bounces`` past 2% hard bounces, ``complaints`` past 0.1% complaints."""
    codes = []
    if hard_rate > HARD_BOUNCE_LIMIT:
        codes.append("hard_bounces")
    if complaint_rate > COMPLAINT_LIMIT:
        codes.append("complaints")
    return codes
