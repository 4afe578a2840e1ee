"""What long CLI work shows: the progress bar."""

from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from worker.cli.app import err
from worker.errors import NewsletterError
from worker.runtime import Runtime
from worker.sending import control, pipeline


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def wait_for(rt: Runtime, week: str, timeout_s: float | None = None) -> control.EditionStatusView:
    started = time.monotonic()
    last_done, last_change = -1, time.monotonic()
    with progress_bar() as progress:
        task = progress.add_task(f"sending {week}", total=None, rate="")
        while True:
            view = control.status(rt, week)
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(
                task,
                total=max(view.total, 1),
                completed=view.done,
                rate=f"{view.sent / elapsed:,.0f} sent/s",
            )
            if view.status not in ("sending", "draft"):
                progress.update(task, total=max(view.total, 1), completed=max(view.total, 1))
                break
            if view.done != last_done:
                last_done, last_change = view.done, time.monotonic()
            elif time.monotonic() - last_change > 15:
                progress.console.print(
                    "no progress for 15 s: is a worker running? "
                    "(start one with `newsletter worker`)"
                )
                last_change = time.monotonic()
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise NewsletterError(f"{week}: not complete after {timeout_s:.0f} s")
            owed = view.queued + view.sending
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
