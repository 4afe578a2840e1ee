"""Edition commands: send, status, preview, test-send, pause, resume, cancel, retry, and
``editions list``. Each defaults to the current week.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from worker.actors import actors_of, count_workers
from worker.bounces.rates import WARNINGS
from worker.catalog import queries as catalog
from worker.cli.app import WeekOption, app, cli_runtime, err, out
from worker.cli.output import edition_table, follow, wait_for
from worker.errors import InputError, NotFound
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending import control
from worker.sending import queries as sending
from worker.sending.digest import count as plural
from worker.subscribers import queries as subscribers


@app.command()
def send(
    week: WeekOption = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait until the edition is complete, with a progress bar."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; change nothing.")
    ] = False,
) -> None:
    """Create the week's edition and queue it for the workers (idempotent)."""
    with cli_runtime() as rt:
        week = control.resolve_week(rt, week)
        if dry_run:
            _dry_run(rt, week)
            return
        outcome = control.start_send(rt, week, utcnow(), actors_of(rt))
        err.print(outcome.message)
        if outcome.edition is None or not wait:
            return
        if count_workers(rt):
            wait_for(rt, week)
            return
        from worker import supervisor

        err.print(
            "no worker is running: delivering from this process "
            "(run `newsletter worker` to deliver apart from the command)"
        )
        with supervisor.running_worker(rt):
            wait_for(rt, week)


def _dry_run(rt: Runtime, week: str) -> None:
    with rt.session() as session:
        existing = sending.get_edition(session, week)
        counts = subscribers.count_subscribers(session)
    if existing:
        err.print(f"{week}: edition exists ({existing.status}); `send` would re-queue what is owed")
        return
    ids = control.plan(rt, week, utcnow())
    if not ids:
        err.print(f"nothing to send for {week}: no new comparisons in that week")
        return
    with rt.session() as session:
        views = catalog.get_comparison_views(session, ids)
    table = Table(title=f"{week}: would carry {len(views)} comparisons")
    for column in ("published", "category", "title"):
        table.add_column(column)
    for v in views:
        table.add_row(v.published_at.strftime("%Y-%m-%d %H:%M"), v.category, v.title)
    err.print(table)
    err.print(f"active subscribers: {counts.get('active', 0)}; nothing was changed")


@app.command()
def status(
    week: WeekOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    follow_it: Annotated[
        bool,
        typer.Option("--follow", help="Redraw until the edition is finished (Ctrl-C stops)."),
    ] = False,
) -> None:
    """Show an edition's counters (exit 1 when the week has no edition)."""
    with cli_runtime() as rt:
        week = control.resolve_week(rt, week)
        view = control.status(rt, week)
        if follow_it and not as_json:
            view = follow(rt, week)
    if as_json:
        print(json.dumps(view.as_json()))
        return
    if not follow_it:
        out.print(edition_table(view))
    if view.pause_reason:
        err.print(f"paused: {view.pause_reason}")
    if view.uncertain:
        err.print(
            f"{plural(view.uncertain, 'send')} got no reply after the message went out (the"
            " server may have them): retried through the backoff, so those readers may have"
            " two copies"
        )
    _bounce_warnings(view)


def _bounce_warnings(view: control.EditionStatusView) -> None:
    rates = view.rates
    err.print(
        f"bounces: {rates.hard} hard ({100 * rates.hard_rate:.2f}%), "
        f"{rates.soft} soft, {plural(rates.complaints, 'complaint')} "
        f"({100 * rates.complaint_rate:.3f}%), {plural(rates.sender, 'sender problem')}"
    )
    for code in rates.warnings:
        err.print(f"[bold red]warning:[/] {WARNINGS[code]}")
    if rates.sender:
        err.print(
            "[yellow]note:[/] some servers refused our mail for a sender reason "
            "(policy, reputation, authentication): see `newsletter bounces list --kind sender`"
        )


@app.command()
def preview(
    week: WeekOption = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the HTML here instead of stdout.")
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Serve a page with the digest, an alert, the confirmation and the welcome "
            "mail at 320 and 600 px, with their text parts; Ctrl-C stops.",
        ),
    ] = False,
    host: Annotated[str, typer.Option(help="With --serve: the address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="With --serve: the port (0: any free one).")] = 8025,
) -> None:
    """Render the week's digest as HTML (every comparison, sample reader), or serve every mail."""
    if serve:
        _serve_previews(week, host, port)
        return
    with cli_runtime() as rt:
        week = control.resolve_week(rt, week)
        with rt.session() as session:
            edition = sending.get_edition(session, week)
        if edition is not None:  # the edition keeps the HTML it was created with
            subject, html = edition.subject, edition.html
        else:
            ids = control.plan(rt, week, utcnow())
            if not ids:
                raise NotFound(f"nothing to preview for {week}: no comparisons in that week")
            subject, html = control.preview_html(rt, week, ids)
    if out_file:
        out_file.write_text(html, encoding="utf-8")
        err.print(f"{subject}\nwrote {out_file} ({len(html.encode()):,} bytes)")
    else:
        sys.stdout.write(html)


def _serve_previews(week: str | None, host: str, port: int) -> None:
    from worker.cli.previews import make_server
    from worker.sending.previews import preview_mails

    with cli_runtime() as rt:
        week = control.resolve_week(rt, week)
        preview_mails(rt, week, utcnow())  # a week with nothing to show fails here, at once
        try:
            server = make_server(host, port, lambda: preview_mails(rt, week, utcnow()))
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound_port = server.server_address[1]
        err.print(f"previews of {week}: http://{host}:{bound_port}/ (Ctrl-C stops)")

        def stop(_signum: int, _frame: object) -> None:
            raise KeyboardInterrupt

        # Ctrl-C and a supervisor's SIGTERM both end it cleanly, also when started in the
        # background by a shell that had SIGINT ignored.
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            err.print("stopped")
        finally:
            server.server_close()


@app.command("test-send")
def test_send(
    email: Annotated[str, typer.Argument(help="Where to send the test.")],
    week: WeekOption = None,
) -> None:
    """Send the week's digest to one address now, subject prefixed [TEST]; counts nowhere."""
    from worker.subscribers.rules import clean_email

    with cli_runtime() as rt:
        address = clean_email(email)
        week = control.resolve_week(rt, week)
        message_id = control.test_send(rt, address, week, utcnow())
    err.print(f"sent {week} to {address} ({message_id})")


@app.command()
def pause(week: WeekOption = None) -> None:
    """Pause an edition: workers stop taking its deliveries."""
    with cli_runtime() as rt:
        week = control.resolve_week(rt, week)
        changed = control.pause(rt, week)
        view = control.status(rt, week)
    err.print(f"{week}: {view.status}" + ("" if changed else " (unchanged)"))


@app.command()
def resume(week: WeekOption = None) -> None:
    """Resume an edition and re-queue whatever the database says is still owed."""
    with cli_runtime() as rt:
        week = control.resolve_week(rt, week)
        requeued = control.resume(rt, week, utcnow(), actors_of(rt))
        view = control.status(rt, week)
    err.print(f"{week}: {view.status}, {plural(requeued, 'delivery', 'deliveries')} re-queued")


@app.command()
def cancel(week: WeekOption = None) -> None:
    """Cancel an edition: what is not sent yet is skipped."""
    with cli_runtime() as rt:
        week = control.resolve_week(rt, week)
        skipped = control.cancel(rt, week)
    err.print(f"{week}: cancelled, {plural(skipped, 'delivery', 'deliveries')} skipped")


@app.command()
def retry(week: WeekOption = None) -> None:
    """Queue the edition's failed deliveries again."""
    with cli_runtime() as rt:
        week = control.resolve_week(rt, week)
        count = control.retry_failed(rt, week, utcnow(), actors_of(rt))
    err.print(f"{week}: {plural(count, 'failed delivery', 'failed deliveries')} queued again")


editions_app = typer.Typer(help="Every edition and alert.", no_args_is_help=True)
app.add_typer(editions_app, name="editions")


@editions_app.command("list")
def list_editions(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line on stdout.")
    ] = False,
) -> None:
    """Editions and alerts, newest first: status, counts, bounce and complaint rates."""
    with cli_runtime() as rt:
        with rt.session() as session:
            editions = sending.list_editions_page(session, None, limit)
        views = [(e, control.status(rt, e.week)) for e in editions]
    if as_json:
        for edition, view in views:
            print(json.dumps({**view.as_json(), "kind": edition.kind}))
        return
    if not views:
        err.print("no editions yet: `newsletter send` creates this week's")
        return
    table = Table(title="Editions, newest first", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    for column in ("week", "kind", "status"):
        table.add_column(column, no_wrap=True)
    for column in ("sent", "failed", "bounced", "hard", "compl."):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    for edition, view in views:
        rates = view.rates
        table.add_row(
            view.week,
            edition.kind,
            view.status,
            f"{view.sent}/{view.total}",
            str(view.failed),
            str(view.bounced),
            f"{100 * rates.hard_rate:.2f}%" + ("!" if "hard_bounces" in rates.warnings else ""),
            f"{100 * rates.complaint_rate:.3f}%" + ("!" if "complaints" in rates.warnings else ""),
            edition.created_at.strftime("%Y-%m-%d"),
        )
    out.print(table)
