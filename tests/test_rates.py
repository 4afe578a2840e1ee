"""The one rule that says when an edition's bounce or complaint rate calls for a warning."""

from __future__ import annotations

import pytest

from worker.bounces.rates import WARNINGS, bounce_rates, rate_warnings


@pytest.mark.parametrize(
    "hard_rate,complaint_rate,expected",
    [
        (0.0, 0.0, []),
        (0.02, 0.001, []),  # at the line: not past it
        (0.0201, 0.0, ["hard_bounces"]),
        (0.0, 0.0011, ["complaints"]),
        (0.5, 0.5, ["hard_bounces", "complaints"]),
    ],
)
def test_rate_warnings(hard_rate: float, complaint_rate: float, expected: list[str]) -> None:
    assert rate_warnings(hard_rate, complaint_rate) == expected
    assert all(code in WARNINGS for code in expected)


@pytest.mark.parametrize(
    "sent,bounced,failed,by_kind,hard_rate,complaint_rate,warnings",
    [
        (0, 0, 0, {}, 0.0, 0.0, []),  # nothing attempted yet: no rate, no warning
        (97, 3, 0, {"hard": 3}, 0.03, 0.0, ["hard_bounces"]),
        (98, 2, 0, {"hard": 2}, 0.02, 0.0, []),
        (999, 0, 1, {"complaint": 1}, 0.0, 0.001, []),  # failed ones count as attempted
        (998, 0, 0, {"complaint": 1, "soft": 5}, 0.0, 1 / 998, ["complaints"]),
        # sender problems and soft bounces are counted but warn about nothing
        (10, 0, 0, {"sender": 5, "soft": 5}, 0.0, 0.0, []),
    ],
)
def test_bounce_rates_of_an_edition(
    sent: int,
    bounced: int,
    failed: int,
    by_kind: dict[str, int],
    hard_rate: float,
    complaint_rate: float,
    warnings: list[str],
) -> None:
    rates = bounce_rates(sent, bounced, failed, by_kind)
    assert rates.hard_rate == pytest.approx(hard_rate)
    assert rates.complaint_rate == pytest.approx(complaint_rate)
    assert rates.warnings == warnings
    assert rates.sender == by_kind.get("sender", 0)
