"""Edition planning (SPEC §3), table-driven: which comparisons a week carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker.errors import InputError
from worker.sending.planning import (
    Candidate,
    category_key,
    parse_week,
    pick_for,
    plan_edition,
    week_bounds,
    week_of,
)

UTC_ZONE = ZoneInfo("UTC")
# 2026-W48 runs Monday 2026-11-23 00:00 to Monday 2026-11-30 00:00.
END_W48 = datetime(2026, 11, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def at(days_before_end: float, hours: float = 0) -> datetime:
    return END_W48 - timedelta(days=days_before_end, hours=hours)


def c(id_: int, when: datetime, category: str = "Developer Tools") -> Candidate:
    return Candidate(id=id_, category=category, published_at=when)


@pytest.mark.parametrize(
    ("title", "candidates", "carried", "now", "digest_max", "expected"),
    [
        ("newest first", [c(1, at(5)), c(2, at(3)), c(3, at(4))], set(), NOW, 10, [2, 3, 1]),
        (
            "future-dated ones wait",
            [c(1, at(4)), c(2, NOW + timedelta(hours=1))],
            set(),
            NOW,
            10,
            [1],
        ),
        ("carried by an earlier edition", [c(1, at(4)), c(2, at(5))], {2}, NOW, 10, [1]),
        (
            "14-day window is inclusive at its start",
            [c(1, at(14)), c(2, at(14, 1))],
            set(),
            END_W48,
            10,
            [1],
        ),
        (
            "published in the next week",
            [c(1, END_W48), c(2, at(0, 1))],
            set(),
            END_W48 + timedelta(days=1),
            10,
            [2],
        ),
        ("at most digest_max", [c(i, at(1, i)) for i in range(1, 6)], set(), END_W48, 3, [1, 2, 3]),
        ("the empty week", [], set(), NOW, 10, []),
        ("only old ones", [c(1, at(20))], set(), NOW, 10, []),
    ],
)
def test_plan_edition(
    title: str,
    candidates: list[Candidate],
    carried: set[int],
    now: datetime,
    digest_max: int,
    expected: list[int],
) -> None:
    chosen = plan_edition("2026-W48", UTC_ZONE, now, candidates, carried, digest_max)
    assert [x.id for x in chosen] == expected, title


def test_weeks_are_counted_in_the_configured_time_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # Sunday 20:00 UTC is already Monday in Tokyo: the next ISO week there.
    sunday_evening = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
    assert week_of(sunday_evening, UTC_ZONE) == "2026-W48"
    assert week_of(sunday_evening, tokyo) == "2026-W49"
    start, end = week_bounds("2026-W48", tokyo)
    assert start == datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
    assert end - start == timedelta(days=7)
    late = c(1, datetime(2026, 11, 29, 16, 0, tzinfo=UTC))  # Monday 01:00 in Tokyo
    assert plan_edition("2026-W48", tokyo, end + timedelta(days=1), [late], set(), 10) == []
    assert plan_edition("2026-W48", UTC_ZONE, END_W48, [late], set(), 10) == [late]


@pytest.mark.parametrize("text", ["2026-48", "2026-W8", "W48", "2026-W54", "2025-W53", ""])
def test_bad_weeks_are_refused_with_the_expected_shape(text: str) -> None:
    with pytest.raises(InputError, match="bad week"):
        parse_week(text)


def test_long_years_have_a_week_53() -> None:
    assert parse_week("2026-W53") == (2026, 53)


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        ([], (1, 2, 3)),
        (["Writing"], (2,)),
        (["writing", "DEVELOPER TOOLS"], (1, 2)),
        (["Audio & Voice"], ()),
    ],
)
def test_subscribers_get_only_their_categories(
    categories: list[str], expected: tuple[int, ...]
) -> None:
    planned = [c(1, at(1), "Developer Tools"), c(2, at(2), "Writing"), c(3, at(3), "Productivity")]
    assert pick_for(category_key(categories), planned) == expected


def test_a_comparison_published_at_this_very_moment_is_carried() -> None:
    now = NOW
    assert plan_edition("2026-W48", UTC_ZONE, now, [c(1, now)], set(), 10) == [c(1, now)]
    later = now + timedelta(microseconds=1)
    assert plan_edition("2026-W48", UTC_ZONE, now, [c(1, later)], set(), 10) == []
