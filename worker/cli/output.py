"""What long CLI work shows: the progress bar of ``send --wait``, the table of ``status`` and
its ``--follow`` redraw, and the delivered rate both show."""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime

from rich.console import Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from worker.cli.app import err, out
from worker.errors import NewsletterError
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending import control, pipeline
from worker.sending import queries as sending

COLUMNS = ("total", "queued", "sending", "sent", "failed", "bounced", "skipped")
FINISHED = ("sent", "cancelled")
RATE_WINDOW_S = 10.0


class DeliveredRate:
    """Messages the servers accepted per second over the last ``window_s``, measured from the
    edition's ``sent`` count as it changes (not since the command started, which counted
    what was sent before it as if it had just gone), and never shown above the configured
    limit the throttle keeps to (a sample taken just after a batch was committed would)."""

    def __init__(self, limit_per_s: float = 0.0, window_s: float = RATE_WINDOW_S) -> None:
        self.limit_per_s = limit_per_s
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, at_s: float, sent: int) -> float | None:
        """Record the count at a moment; the rate, once half a second of samples is in."""
        self.samples.append((at_s, sent))
        while len(self.samples) > 2 and at_s - self.samples[1][0] >= self.window_s:
            self.samples.popleft()
        first_s, first_sent = self.samples[0]
        if at_s - first_s < 0.5:
            return None
        rate = max(sent - first_sent, 0) / (at_s - first_s)
        return min(rate, self.limit_per_s) if self.limit_per_s > 0 else rate


def rate_text(rate: float | None, owed: int) -> str:
    """``12 sent/s, eta 0:41`` (or what is known yet)."""
    if rate is None:
        return "measuring…"
    text = f"{rate:,.1f} sent/s"
    if owed and rate > 0:
        eta_s = int(owed / rate)
        text += f", eta {eta_s // 3600}:{eta_s % 3600 // 60:02d}:{eta_s % 60:02d}"
    return text


def edition_table(view: control.EditionStatusView) -> Table:
    """The counters of one edition as ``status`` shows them."""
    table = Table(title=f"Edition {view.week}: {view.status}")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    table.add_row(*(str(getattr(view, c)) for c in COLUMNS))
    return table


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def follow(rt: Runtime, week: str, every_s: float = 1.0) -> control.EditionStatusView:
    """Redraw the edition's table and delivered rate until it is sent or cancelled; Ctrl-C
    stops watching (the edition goes on)."""
    rate = DeliveredRate(rt.settings.send_rate)
    view = control.status(rt, week)

    def render() -> Group:
        measured = rate.add(time.monotonic(), view.sent)
        if view.status in FINISHED:
            return Group(edition_table(view))
        return Group(edition_table(view), Text(rate_text(measured, view.queued + view.sending)))

    try:
        err.print(f"watching {week} until it is sent or cancelled (Ctrl-C stops watching)")
        with Live(render(), console=out, auto_refresh=False) as live:
            while view.status not in FINISHED:
                time.sleep(every_s)
                view = control.status(rt, week)
                live.update(render(), refresh=True)
    except KeyboardInterrupt:
        err.print("stopped watching; the edition goes on")
    return view


def _waiting_on_backoff(rt: Runtime, week: str) -> datetime | None:
    """When every owed delivery is only waiting out a backoff: the end of the soonest."""
    edition = control.get_edition(rt, week)
    with rt.session() as session:
        ready, soonest = sending.count_ready(session, edition.id or 0, utcnow())
    if ready or soonest is None:
        return None
    return soonest if soonest.tzinfo else soonest.replace(tzinfo=UTC)


def wait_for(
    rt: Runtime, week: str, timeout_s: float | None = None, quiet_s: float = 15.0
) -> control.EditionStatusView:
    """Show the progress bar until the edition is complete; after ``quiet_s`` without
    progress, say why (a backoff being waited out, or perhaps no worker at all)."""
    started = time.monotonic()
    last_done, last_change = -1, time.monotonic()
    rate = DeliveredRate(rt.settings.send_rate)
    with progress_bar() as progress:
        task = progress.add_task(f"sending {week}", total=None, rate="")
        while True:
            view = control.status(rt, week)
            elapsed = max(time.monotonic() - started, 1e-6)
            owed = view.queued + view.sending
            progress.update(
                task,
                total=max(view.total, 1),
                completed=view.done,
                rate=rate_text(rate.add(time.monotonic(), view.sent), owed),
            )
            if view.status not in ("sending", "draft"):
                progress.update(task, total=max(view.total, 1), completed=max(view.total, 1))
                break
            if view.done != last_done:
                last_done, last_change = view.done, time.monotonic()
            elif time.monotonic() - last_change > quiet_s:
                retry_at = _waiting_on_backoff(rt, week)
                if retry_at is not None:
                    progress.console.print(
                        f"{owed} deliveries waiting out a backoff (server said try later):"
                        f" next retry at {retry_at.astimezone():%H:%M:%S}"
                    )
                else:
                    progress.console.print(
                        f"no progress for {quiet_s:.0f} s: is a worker running? "
                        "(start one with `newsletter worker`)"
                    )
                last_change = time.monotonic()
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise NewsletterError(f"{week}: not complete after {timeout_s:.0f} s")
            if view.status == "sending" and owed == 0 and view.total:
                # The last delivery is done: mark the edition sent now rather than at the
                # workers' next refill tick (the same check, under the same transaction).
                edition = control.get_edition(rt, week)
                if edition.id is not None and pipeline.finish_if_done(rt, edition.id):
                    continue
            # Counting a large edition's rows is work the database shares with the workers:
            # once a second, until the end is less than two seconds away.
            near_end = owed < 2 * view.done / elapsed
            time.sleep(0.25 if view.total < 5000 or near_end else 1.0)
    return view
