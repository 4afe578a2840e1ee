"""What the console computes from the numbers (pure): progress, rate, ETA, the rate chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.web.console.views import chart_svg, duration, progress, rate_chart, rate_window_s

T0 = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def counts(**given: int) -> dict[str, int]:
    base = dict.fromkeys(("queued", "sending", "sent", "failed", "bounced", "skipped"), 0)
    return {**base, **given}


@pytest.mark.parametrize(
    ("status", "given", "sent_recently", "window_s", "done", "rate", "eta"),
    [
        ("sending", counts(queued=600, sent=400), 600, 60, 40.0, 10.0, "1 min 0 s"),
        ("sending", counts(queued=90, sending=10, sent=100), 50, 5, 50.0, 10.0, "10 s"),
        ("paused", counts(queued=600, sent=400), 0, 60, 40.0, 0.0, "—"),
        ("sent", counts(sent=990, bounced=10), 100, 60, 100.0, 100 / 60, "—"),
        ("draft", counts(), 0, 60, 0.0, 0.0, "—"),
    ],
)
def test_progress_rate_and_eta(
    status: str,
    given: dict[str, int],
    sent_recently: int,
    window_s: float,
    done: float,
    rate: float,
    eta: str,
) -> None:
    shown = progress("2026-W48", "digest", status, given, {}, sent_recently, None, window_s)
    assert shown.percent_done == pytest.approx(done)
    assert shown.rate_per_s == pytest.approx(rate)
    assert shown.as_json()["eta"] == eta


def test_bounce_and_complaint_rates_are_shares_of_what_was_mailed() -> None:
    shown = progress(
        "2026-W48",
        "digest",
        "paused",
        counts(sent=940, bounced=50, failed=10, skipped=100),
        {"hard": 50, "complaint": 2},
        0,
        "auto-paused: …",
    )
    assert shown.hard_bounce_rate == pytest.approx(0.05)
    assert shown.complaint_rate == pytest.approx(0.002)
    assert shown.as_json()["pause_reason"] == "auto-paused: …"
    # Only a paused edition shows why it was paused.
    assert progress("W", "digest", "sending", counts(), {}, 0, "old reason").pause_reason is None


@pytest.mark.parametrize(
    ("started", "window"),
    [(None, 60.0), (T0 - timedelta(minutes=5), 60.0), (T0 - timedelta(seconds=5), 5.0), (T0, 1.0)],
)
def test_the_rate_counts_over_the_last_minute_or_since_the_start(
    started: datetime | None, window: float
) -> None:
    assert rate_window_s(started, T0) == window


def test_the_chart_buckets_messages_per_second_over_the_edition() -> None:
    times = [T0 + timedelta(seconds=s) for s in (0, 0.5, 1, 1, 1, 2.9)]
    chart = rate_chart(times, T0, T0 + timedelta(seconds=3))
    assert chart is not None and chart.bucket_s == 1 and chart.rates == [2, 3, 1]
    long = [T0 + timedelta(seconds=10 * i) for i in range(360)]  # an hour at 0.1/s
    chart = rate_chart(long, T0, T0 + timedelta(hours=1))
    assert chart is not None and chart.bucket_s == 60 and len(chart.rates) == 60
    assert max(chart.rates) == pytest.approx(0.1)
    assert rate_chart([], T0, T0) is None


def test_the_chart_svg_labels_its_peak_and_span_and_escapes_nothing_it_should_not() -> None:
    chart = rate_chart([T0, T0 + timedelta(seconds=1)], T0, T0 + timedelta(seconds=2))
    svg = str(chart_svg(chart))
    assert svg.startswith("<svg") and svg.count("<rect") == 2
    assert "1.0/s" in svg and "15:00:00" in svg and 'role="img"' in svg
    assert "No message has gone out yet" in str(chart_svg(None))


@pytest.mark.parametrize(
    ("s", "text"), [(None, "—"), (5, "5 s"), (90, "1 min 30 s"), (7260, "2 h 1 min")]
)
def test_durations_read_as_people_say_them(s: float | None, text: str) -> None:
    assert duration(s) == text
