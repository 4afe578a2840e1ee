"""What the console shows, computed from what the queries return: an edition's progress, rate
and ETA, and its send-rate chart as inline SVG. Pure functions; no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

RATE_WINDOW_S = 60
"""The send rate shown is the messages the server took over this many seconds (or since the
edition started, when that is sooner)."""


def rate_window_s(started_at: datetime | None, now: datetime) -> float:
    """Seconds the rate is counted over: the last minute, or since the start when sooner."""
    if started_at is None:
        return float(RATE_WINDOW_S)
    return min(float(RATE_WINDOW_S), max(1.0, (now - started_at).total_seconds()))


def aware(moment: datetime | None) -> datetime | None:
    """A stored moment as an aware UTC datetime (SQLite hands them back naive)."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def when(moment: datetime | None) -> str:
    """A moment as the console prints it (UTC)."""
    if moment is None:
        return "—"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def percent(value: float | None, digits: int = 1) -> str:
    """0.0523 → '5.2%'; None → '—'."""
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def num(value: float | int | None) -> str:
    """A count with thousands separators."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def duration(seconds: float | None) -> str:
    """90 → '1 min 30 s'; None → '—'."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


@dataclass(frozen=True)
class Progress:
    """An edition's numbers as the console shows them."""

    week: str
    kind: str
    status: str
    counts: dict[str, int]
    total: int
    done: int
    owed: int
    percent_done: float
    rate_per_s: float
    eta_s: float | None
    hard_bounce_rate: float | None
    complaint_rate: float | None
    pause_reason: str | None

    def as_json(self) -> dict[str, object]:
        """The live numbers the edition page refreshes."""
        return {
            "week": self.week,
            "status": self.status,
            **self.counts,
            "total": self.total,
            "done": self.done,
            "owed": self.owed,
            "percent_done": round(self.percent_done, 1),
            "rate_per_s": round(self.rate_per_s, 2),
            "eta": duration(self.eta_s),
            "hard_bounce_rate": percent(self.hard_bounce_rate),
            "complaint_rate": percent(self.complaint_rate, 2),
            "pause_reason": self.pause_reason,
        }


def progress(
    week: str,
    kind: str,
    status: str,
    counts: dict[str, int],
    bounce_kinds: dict[str, int],
    sent_in_window: int,
    pause_reason: str | None,
    window_s: float = RATE_WINDOW_S,
) -> Progress:
    """Progress, rate (messages taken over ``window_s``), ETA and bounce rates of an edition."""
    total = sum(counts.values())
    owed = counts.get("queued", 0) + counts.get("sending", 0)
    done = total - owed
    rate = sent_in_window / window_s if window_s > 0 else 0.0
    eta = owed / rate if rate > 0 and owed and status == "sending" else None
    mailed = counts.get("sent", 0) + counts.get("bounced", 0) + counts.get("failed", 0)
    return Progress(
        week=week,
        kind=kind,
        status=status,
        counts=counts,
        total=total,
        done=done,
        owed=owed,
        percent_done=100.0 * done / total if total else 0.0,
        rate_per_s=rate,
        eta_s=eta,
        hard_bounce_rate=bounce_kinds.get("hard", 0) / mailed if mailed else None,
        complaint_rate=bounce_kinds.get("complaint", 0) / mailed if mailed else None,
        pause_reason=pause_reason if status == "paused" else None,
    )


@dataclass(frozen=True)
class Chart:
    """Messages per second in equal buckets from ``start``."""

    start: datetime
    bucket_s: int
    rates: list[float]

    @property
    def peak(self) -> float:
        return max(self.rates, default=0.0)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.bucket_s * len(self.rates))


def rate_chart(
    sent_times: Sequence[datetime], start: datetime | None, end: datetime, buckets: int = 60
) -> Chart | None:
    """The send rate over time, in at most ``buckets`` bars of whole seconds; None before the
    first message."""
    if not sent_times:
        return None
    first = start or sent_times[0]
    last = max(end, sent_times[-1])
    span_s = max(1.0, (last - first).total_seconds())
    bucket_s = max(1, math.ceil(span_s / buckets))
    count = max(1, math.ceil(span_s / bucket_s))
    tally = [0] * count
    for moment in sent_times:
        index = int((moment - first).total_seconds() // bucket_s)
        tally[min(max(index, 0), count - 1)] += 1
    return Chart(first, bucket_s, [n / bucket_s for n in tally])


def chart_svg(chart: Chart | None, width: int = 600, height: int = 180) -> Markup:
    """The chart as an inline SVG (bars, the peak rate and the time span labelled)."""
    if chart is None:
        return Markup('<p class="muted">No message has gone out yet.</p>')
    left, bottom, top = 44, 22, 10
    plot_w, plot_h = width - left - 6, height - bottom - top
    peak = chart.peak or 1.0
    bar_w = plot_w / len(chart.rates)
    bars = []
    for i, rate in enumerate(chart.rates):
        h = plot_h * rate / peak
        x = left + i * bar_w
        bars.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
            f'height="{h:.1f}"><title>{rate:.1f}/s</title></rect>'
        )
    start_label = escape(chart.start.astimezone(UTC).strftime("%H:%M:%S"))
    end_label = escape(chart.end.astimezone(UTC).strftime("%H:%M:%S UTC"))
    summary = escape(
        f"Send rate: peak {chart.peak:.1f} messages/s, {len(chart.rates)} bars of "
        f"{chart.bucket_s} s from {start_label} to {end_label}"
    )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{summary}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{summary}</title>"
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 6}" y2="{top + plot_h}" '
        f'class="axis"/><line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>'
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{peak:.1f}/s</text>'
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 6}">{start_label}</text>'
        f'<text x="{width - 6}" y="{height - 6}" text-anchor="end">{end_label}</text>'
        f'<g class="bars">{"".join(bars)}</g></svg>'
    )
