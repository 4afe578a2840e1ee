"""Which comparisons an edition carries (SPEC §3): pure functions over plain data."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from worker.errors import InputError

WINDOW = timedelta(days=14)
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True)
class Candidate:
    """A published comparison as planning sees it."""

    id: int
    category: str
    published_at: datetime


def parse_week(text: str) -> tuple[int, int]:
    """Parse ``2026-W48`` into (year, week), refusing weeks the year does not have."""
    match = _WEEK.match(text.strip())
    if not match:
        raise InputError(f"bad week {text!r}: expected YYYY-Www, e.g. 2026-W48")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        raise InputError(f"bad week {text!r}: {year} has no week {week}") from None
    return year, week


def week_of(moment: datetime, tz: ZoneInfo) -> str:
    """The ISO week (``2026-W48``) that ``moment`` falls in, in time zone ``tz``."""
    year, week, _ = moment.astimezone(tz).isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(week: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Start (Monday 00:00) and end (next Monday 00:00) of ``week`` in ``tz``, as aware times."""
    year, number = parse_week(week)
    monday = date.fromisocalendar(year, number, 1)
    start = datetime.combine(monday, time(), tzinfo=tz)
    end = datetime.combine(monday + timedelta(days=7), time(), tzinfo=tz)
    return start, end


def plan_edition(
    week: str,
    tz: ZoneInfo,
    now: datetime,
    candidates: Iterable[Candidate],
    carried: set[int],
    digest_max: int,
) -> list[Candidate]:
    """The comparisons week ``week`` carries: newest first, at most ``digest_max``.

    Published before the end of the week and not in the future, at most 14 days before the
    end of the week, and not carried by an earlier edition.
    """
    _, end = week_bounds(week, tz)
    oldest = end - WINDOW
    chosen = [
        c
        for c in candidates
        if c.id not in carried and oldest <= c.published_at < end and c.published_at <= now
    ]
    chosen.sort(key=lambda c: (c.published_at, c.id), reverse=True)
    return chosen[:digest_max]


def category_key(categories: Iterable[str]) -> frozenset[str]:
    """Normalise a subscriber's categories for matching; empty means all."""
    return frozenset(c.strip().casefold() for c in categories if c.strip())


def pick_for(categories: frozenset[str], planned: Sequence[Candidate]) -> tuple[int, ...]:
    """Ids of the planned comparisons a subscriber with ``categories`` gets (empty: all)."""
    if not categories:
        return tuple(c.id for c in planned)
    return tuple(c.id for c in planned if c.category.casefold() in categories)


def alert_key(comparison_id: int) -> str:
    """The unique ``week`` of the instant alert about a comparison."""
    return f"A{comparison_id}"


def alert_batches(
    unalerted: Sequence[Candidate], now: datetime, batch_s: float
) -> list[list[Candidate]]:
    """The instant alerts due now, each a batch of comparisons published together.

    A batch opens with the earliest comparison not yet alerted and takes every one published
    less than ``batch_s`` after it, so all of them were published within ``batch_s`` of each
    other; it is due once ``batch_s`` has passed since it opened (nothing more can join it).
    An alert is thus at most ``batch_s`` late. ``batch_s`` 0: one alert per comparison, at once.
    """
    ordered = sorted(unalerted, key=lambda c: (c.published_at, c.id))
    due: list[list[Candidate]] = []
    i = 0
    while i < len(ordered):
        opened = ordered[i].published_at
        closes = opened + timedelta(seconds=batch_s)
        batch = [ordered[i]]
        i += 1
        while i < len(ordered) and ordered[i].published_at < closes:
            batch.append(ordered[i])
            i += 1
        if closes <= now:
            due.append(batch)
    return due
