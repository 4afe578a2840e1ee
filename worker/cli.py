"""The ``newsletter`` command. Errors print one line to stderr and exit non-zero.

Progress, logs and messages go to stderr; data (``--json``, CSV) to stdout.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from worker import editions, store
from worker.actors import count_workers
from worker.config import Settings, load_settings
from worker.db import make_engine, migrate
from worker.errors import InputError, NewsletterError, NotFound
from worker.models import utcnow
from worker.runtime import Runtime, open_runtime

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)

app = typer.Typer(
    name="newsletter",
    help="Weekly AI Tool Verdicts: subscribers, weekly editions, deliveries and bounces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
comparisons_app = typer.Typer(
    help="Load the comparisons the mails are about.", no_args_is_help=True
)
subscribers_app = typer.Typer(help="Add, import and export subscribers.", no_args_is_help=True)
bounces_app = typer.Typer(help="Bounce and complaint tracking.", no_args_is_help=True)
app.add_typer(comparisons_app, name="comparisons")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(bounces_app, name="bounces")

WeekOption = Annotated[
    str | None, typer.Option("--week", help="ISO week, e.g. 2026-W48 (default: the current week).")
]


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper() if settings.log_level else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("dramatiq").setLevel(logging.WARNING)


@contextmanager
def _runtime(require_schema: bool = True) -> Iterator[Runtime]:
    settings = load_settings()
    rt = open_runtime(settings, require_schema=require_schema)
    try:
        yield rt
    finally:
        rt.close()


def _progress() -> Progress:
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


# --- setup --------------------------------------------------------------------------------


@app.command()
def init() -> None:
    """Create the data dir and apply database migrations (safe to run again)."""
    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    engine.dispose()
    err.print(f"database ready: {_safe_url(settings.resolved_database_url)}")
    err.print(f"data dir: {settings.data_dir.resolve()}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- comparisons ----------------------------------------------------------------------------


@comparisons_app.command("import")
def comparisons_import(
    file: Annotated[Path, typer.Argument(help="JSON array of comparison records; - for stdin.")],
    strict: Annotated[bool, typer.Option(help="Load nothing if any record is invalid.")] = False,
) -> None:
    """Import comparisons (SPEC §2 format); re-importing a slug updates it."""
    text = _read_text(file)
    with _runtime() as rt:
        from worker.loading import import_comparisons

        report = import_comparisons(rt.engine, text, strict)
    for problem in report.errors:
        err.print(f"skipped {problem}")
    err.print(f"{report.created} created, {report.updated} updated, {len(report.errors)} invalid")
    if report.errors and not report.loaded:
        raise typer.Exit(2)


def _read_text(file: Path) -> str:
    if str(file) == "-":
        return sys.stdin.read()
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{file}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{file}: {exc.strerror}") from None


# --- subscribers ----------------------------------------------------------------------------


@subscribers_app.command("add")
def subscribers_add(
    email: Annotated[str, typer.Argument(help="The address.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    categories: Annotated[str, typer.Option(help="';'-separated categories (empty: all).")] = "",
    cadence: Annotated[str, typer.Option(help="weekly or instant.")] = "weekly",
    confirmed: Annotated[bool, typer.Option(help="Active at once, without double opt-in.")] = False,
) -> None:
    """Add (or update) one subscriber."""
    from worker.subscribers import (
        SubscriberInput,
        clean_cadence,
        clean_categories,
        clean_email,
        clean_name,
    )

    settings = load_settings()
    item = SubscriberInput(
        email=clean_email(email, settings.check_deliverability),
        name=clean_name(name),
        categories=clean_categories(categories.split(";")),
        cadence=clean_cadence(cadence),
    )
    with _runtime() as rt, rt.session() as session, session.begin():
        counts = store.merge_subscribers(session, [item], confirmed, "cli")
        subscriber = store.get_subscriber_by_email(session, item.email)
        status = subscriber.status if subscriber else "?"
    verb = "added" if counts.added else "updated" if counts.updated else "unchanged"
    err.print(f"{item.email}: {verb} ({status})")


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[
        Path, typer.Argument(help="CSV with columns email,name,categories; - for stdin.")
    ],
    confirmed: Annotated[bool, typer.Option(help="New subscribers are active at once.")] = False,
    strict: Annotated[bool, typer.Option(help="Load nothing if any row is bad.")] = False,
) -> None:
    """Import subscribers from CSV; bad rows are reported by line number and skipped."""
    from worker.loading import import_subscribers

    settings = load_settings()
    if str(file) != "-" and not file.is_file():
        raise InputError(f"{file}: no such file")
    size = file.stat().st_size if str(file) != "-" else 0
    with _runtime() as rt:
        handle = sys.stdin if str(file) == "-" else open(file, encoding="utf-8-sig", newline="")
        with handle, _progress() as progress:
            task = progress.add_task("importing", total=size or None, rate="")
            started = time.monotonic()

            def lines() -> Iterator[str]:
                done = 0
                for line in handle:
                    done += len(line.encode())
                    yield line
                    if size:
                        progress.update(task, completed=min(done, size))

            def on_row(line: int) -> None:
                if line % 500 == 0:
                    rate = line / max(time.monotonic() - started, 1e-6)
                    progress.update(task, rate=f"{rate:,.0f} rows/s")

            try:
                report = import_subscribers(
                    rt.engine,
                    lines(),
                    confirmed,
                    strict,
                    check_deliverability=settings.check_deliverability,
                    on_row=on_row,
                )
            except UnicodeDecodeError as exc:
                raise InputError(f"{file}: not UTF-8 text ({exc.reason})") from None
            progress.update(task, completed=size or 1, total=size or 1)
    for problem in report.errors[:50]:
        err.print(f"skipped {problem}")
    if len(report.errors) > 50:
        err.print(f"… and {len(report.errors) - 50} more bad rows")
    err.print(
        f"{report.created} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.errors)} bad rows skipped"
    )


@subscribers_app.command("export")
def subscribers_export() -> None:
    """Write every subscriber as CSV to stdout (importable again)."""
    from worker.subscribers import EXPORT_COLUMNS

    with _runtime() as rt, rt.session() as session:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        for s in store.iter_subscribers(session):
            writer.writerow(
                [
                    s.email,
                    s.name,
                    s.status,
                    s.categories,
                    s.cadence,
                    s.created_at.isoformat() if s.created_at else "",
                    s.confirmed_at.isoformat() if s.confirmed_at else "",
                ]
            )


@subscribers_app.command("export-data")
def subscribers_export_data(email: Annotated[str, typer.Argument(help="The address.")]) -> None:
    """Everything stored about one address, as JSON on stdout (a reader's data request)."""
    from worker.readers import export_subscriber

    with _runtime() as rt:
        data = export_subscriber(rt, email)
    print(json.dumps(data, indent=2, ensure_ascii=False))


@subscribers_app.command("erase")
def subscribers_erase(
    email: Annotated[str, typer.Argument(help="The address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a subscriber's personal data (a keyed hash stays if they bounced or complained)."""
    from worker.readers import erase_subscriber

    if not yes and not typer.confirm(f"Erase everything stored about {email}?", err=True):
        raise typer.Exit(1)
    with _runtime() as rt:
        if not erase_subscriber(rt, email):
            raise NotFound(f"no subscriber {email}")
    err.print(f"{email}: erased")


# --- editions -------------------------------------------------------------------------------


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
    with _runtime() as rt:
        week = editions.resolve_week(rt, week)
        if dry_run:
            _dry_run(rt, week)
            return
        outcome = editions.start_send(rt, week, utcnow(), rt.actors)
        err.print(outcome.message)
        if outcome.edition is None or not wait:
            return
        if count_workers(rt):
            _wait_for(rt, week)
            return
        from worker import supervisor

        err.print(
            "no worker is running: delivering from this process "
            "(run `newsletter worker` to deliver apart from the command)"
        )
        with supervisor.running_worker(rt):
            _wait_for(rt, week)


def _dry_run(rt: Runtime, week: str) -> None:
    with rt.session() as session:
        existing = store.get_edition(session, week)
        subscribers = store.count_subscribers(session)
    if existing:
        err.print(f"{week}: edition exists ({existing.status}); `send` would re-queue what is owed")
        return
    ids = editions.plan(rt, week, utcnow())
    if not ids:
        err.print(f"nothing to send for {week}: no new comparisons in that week")
        return
    with rt.session() as session:
        views = store.get_comparison_views(session, ids)
    table = Table(title=f"{week}: would carry {len(views)} comparisons")
    for column in ("published", "category", "title"):
        table.add_column(column)
    for v in views:
        table.add_row(v.published_at.strftime("%Y-%m-%d %H:%M"), v.category, v.title)
    err.print(table)
    err.print(f"active subscribers: {subscribers.get('active', 0)}; nothing was changed")


def _wait_for(rt: Runtime, week: str, timeout_s: float | None = None) -> editions.EditionStatusView:
    started = time.monotonic()
    last_done, last_change = -1, time.monotonic()
    with _progress() as progress:
        task = progress.add_task(f"sending {week}", total=None, rate="")
        while True:
            view = editions.status(rt, week)
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
                edition = editions.get_edition(rt, week)
                if edition.id is not None and editions.finish_if_done(rt, edition.id):
                    continue
            # Counting a large edition's rows is work the database shares with the workers:
            # once a second, until the end is less than two seconds away.
            near_end = owed < 2 * view.done / elapsed
            time.sleep(0.25 if view.total < 5000 or near_end else 1.0)
    return view


@app.command()
def status(
    week: WeekOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Show an edition's counters (exit 1 when the week has no edition)."""
    with _runtime() as rt:
        week = editions.resolve_week(rt, week)
        view = editions.status(rt, week)
    if as_json:
        print(json.dumps(view.as_json()))
        return
    table = Table(title=f"Edition {view.week}: {view.status}")
    for column in ("total", "queued", "sending", "sent", "failed", "bounced", "skipped"):
        table.add_column(column, justify="right")
    table.add_row(
        *(
            str(getattr(view, c))
            for c in ("total", "queued", "sending", "sent", "failed", "bounced", "skipped")
        )
    )
    out.print(table)
    if view.uncertain:
        err.print(
            f"{view.uncertain} sends got no reply after the message went out (the server may"
            " have them): retried through the backoff, so those readers may have two copies"
        )
    _bounce_warnings(view)


def _bounce_warnings(view: editions.EditionStatusView) -> None:
    mailed = max(view.sent + view.bounced + view.failed, 1)
    hard = view.bounces.get("hard", 0)
    complaints = view.bounces.get("complaint", 0)
    sender = view.bounces.get("sender", 0)
    err.print(
        f"bounces: {hard} hard ({100 * hard / mailed:.2f}%), "
        f"{view.bounces.get('soft', 0)} soft, {complaints} complaints "
        f"({100 * complaints / mailed:.3f}%), {sender} sender problems"
    )
    if hard / mailed > 0.02:
        err.print(
            "[bold red]warning:[/] hard bounces above 2%: clean the list before the next send"
        )
    if complaints / mailed > 0.001:
        err.print("[bold red]warning:[/] complaints above 0.1%: mailbox providers will block you")
    if sender:
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
) -> None:
    """Render the week's digest as HTML (every comparison, sample reader)."""
    with _runtime() as rt:
        week = editions.resolve_week(rt, week)
        with rt.session() as session:
            edition = store.get_edition(session, week)
        if edition is not None:  # the edition keeps the HTML it was created with
            subject, html = edition.subject, edition.html
        else:
            ids = editions.plan(rt, week, utcnow())
            if not ids:
                raise NotFound(f"nothing to preview for {week}: no comparisons in that week")
            subject, html = editions.preview_html(rt, week, ids)
    if out_file:
        out_file.write_text(html, encoding="utf-8")
        err.print(f"{subject}\nwrote {out_file} ({len(html.encode()):,} bytes)")
    else:
        sys.stdout.write(html)


@app.command("test-send")
def test_send(
    email: Annotated[str, typer.Argument(help="Where to send the test.")],
    week: WeekOption = None,
) -> None:
    """Send the week's digest to one address now, subject prefixed [TEST]; counts nowhere."""
    from worker.subscribers import clean_email

    with _runtime() as rt:
        address = clean_email(email)
        week = editions.resolve_week(rt, week)
        message_id = editions.test_send(rt, address, week, utcnow())
    err.print(f"sent {week} to {address} ({message_id})")


@app.command()
def pause(week: Annotated[str, typer.Option("--week", help="ISO week, e.g. 2026-W48.")]) -> None:
    """Pause an edition: workers stop taking its deliveries."""
    with _runtime() as rt:
        week = editions.resolve_week(rt, week)
        changed = editions.pause(rt, week)
        view = editions.status(rt, week)
    err.print(f"{week}: {view.status}" + ("" if changed else " (unchanged)"))


@app.command()
def resume(week: Annotated[str, typer.Option("--week", help="ISO week, e.g. 2026-W48.")]) -> None:
    """Resume an edition and re-queue whatever the database says is still owed."""
    with _runtime() as rt:
        week = editions.resolve_week(rt, week)
        requeued = editions.resume(rt, week, utcnow(), rt.actors)
        view = editions.status(rt, week)
    err.print(f"{week}: {view.status}, {requeued} deliveries re-queued")


@app.command()
def cancel(week: Annotated[str, typer.Option("--week", help="ISO week, e.g. 2026-W48.")]) -> None:
    """Cancel an edition: what is not sent yet is skipped."""
    with _runtime() as rt:
        week = editions.resolve_week(rt, week)
        skipped = editions.cancel(rt, week)
    err.print(f"{week}: cancelled, {skipped} deliveries skipped")


@app.command()
def retry(week: Annotated[str, typer.Option("--week", help="ISO week, e.g. 2026-W48.")]) -> None:
    """Queue the edition's failed deliveries again."""
    with _runtime() as rt:
        week = editions.resolve_week(rt, week)
        count = editions.retry_failed(rt, week, utcnow(), rt.actors)
    err.print(f"{week}: {count} failed deliveries queued again")


# --- bounces ---------------------------------------------------------------------------------


def _inbound(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, raw message) for a file, a directory of files, an mbox, or stdin (-)."""
    from worker.bounces.intake import is_mbox, split_mbox

    if str(path) == "-":
        sources = [("stdin", sys.stdin.buffer.read())]
    elif path.is_dir():
        sources = [(str(p), p.read_bytes()) for p in sorted(path.iterdir()) if p.is_file()]
    elif path.is_file():
        sources = [(str(path), path.read_bytes())]
    else:
        raise InputError(f"{path}: no such file or directory")
    for name, data in sources:
        if is_mbox(data):
            for index, message in enumerate(split_mbox(data), 1):
                yield f"{name}#{index}", message
        else:
            yield name, data


@bounces_app.command("ingest")
def bounces_ingest(
    source: Annotated[
        Path,
        typer.Argument(help="An RFC 5322 message, a directory of them, an mbox, or - for stdin."),
    ] = Path("-"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Parse and match; change nothing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON line per recipient on stdout.")
    ] = False,
) -> None:
    """Read bounce mail, match it to deliveries and record it (each message once)."""
    from worker.bounces.intake import intake_for

    with _runtime() as rt:
        intake = intake_for(rt)
        messages = list(_inbound(source))
        tally: dict[str, int] = {}
        with _progress() as progress:
            task = progress.add_task("bounces", total=len(messages), rate="")
            for name, raw in messages:
                result = intake.process(raw, name, dry_run=dry_run)
                tally[result.outcome] = tally.get(result.outcome, 0) + 1
                if as_json:
                    for line in result.lines():
                        print(json.dumps(line), flush=True)
                elif result.outcome not in ("recorded", "ignored"):
                    progress.console.print(f"{name}: {result.outcome}: {result.reason}")
                progress.advance(task)
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(tally.items()))
    err.print(
        f"{len(messages)} messages: {summary or 'none'}"
        + (" (dry run: nothing changed)" if dry_run else "")
    )


@bounces_app.command("serve")
def bounces_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="SMTP port.")] = 2525,
) -> None:
    """Receive bounce mail over SMTP for the bounce address and its + variants."""
    from worker import supervisor
    from worker.bounces.intake import intake_for
    from worker.bounces.server import start_server

    settings = load_settings()
    _setup_logging(settings)
    with _runtime() as rt:
        controller, handler = start_server(
            intake_for(rt), settings.bounce_local_part, settings.bounce_domain, host, port
        )
        err.print(
            f"receiving bounce mail for {settings.bounce_address} (and its + variants) "
            f"on {host}:{port}"
        )
        try:
            supervisor.wait_for_signal()
        finally:
            controller.stop()
        err.print(f"{handler.processed} messages processed")


@bounces_app.command("poll")
def bounces_poll() -> None:
    """Process the bounce mailbox (NEWSLETTER_BOUNCE_MAILBOX) once."""
    from worker.bounces.intake import intake_for
    from worker.bounces.mailbox import poll

    with _runtime() as rt:
        if not rt.settings.bounce_mailbox:
            raise InputError("NEWSLETTER_BOUNCE_MAILBOX is not set")
        handled = poll(rt.settings.bounce_mailbox, intake_for(rt))
    err.print(f"{handled} messages processed")


@bounces_app.command("list")
def bounces_list(
    week: Annotated[str | None, typer.Option("--week", help="Only this edition.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="hard, soft, complaint or sender.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
) -> None:
    """List recorded bounce and complaint events."""
    from worker.bounces import KINDS

    if kind and kind not in KINDS:
        raise InputError(f"--kind: must be one of {', '.join(KINDS)}")
    with _runtime() as rt:
        edition_id = editions.get_edition(rt, editions.resolve_week(rt, week)).id if week else None
        with rt.session() as session:
            events = store.list_bounce_events(session, edition_id, kind, limit)
    table = Table(title=f"{len(events)} bounce events" + (f" in {week}" if week else ""))
    for column in ("received", "recipient", "kind", "reason", "source", "status", "diagnostic"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(
            e.received_at.strftime("%Y-%m-%d %H:%M"),
            e.recipient,
            e.kind,
            e.reason,
            e.source,
            e.status_code or "",
            e.diagnostic[:120],
        )
    out.print(table)


# --- processes ------------------------------------------------------------------------------


@app.command("worker")
def worker_command(
    threads: Annotated[
        int | None, typer.Option(help="Worker threads (default NEWSLETTER_WORKER_THREADS).")
    ] = None,
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run a worker: deliver jobs, retry, and sweep for lost work, until Ctrl-C."""
    from worker import supervisor

    settings = load_settings()
    _setup_logging(settings)
    if processes > 1:
        rt = open_runtime(settings)
        rt.redis.ping()  # start the embedded server before the children look for it
        args = ["worker"] + (["--threads", str(threads)] if threads else [])
        children = {f"worker-{i}": supervisor.spawn(args) for i in range(processes)}
        raise typer.Exit(supervisor.supervise(children))
    rt = open_runtime(settings)
    rt.redis.ping()
    supervisor.run_worker(rt, threads)
    rt.close()


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the reader pages, the operator API and the webhooks over HTTP."""
    import uvicorn

    from worker.web import create_app

    settings = load_settings()
    _setup_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )


@app.command()
def scheduler() -> None:
    """Run the weekly schedule (NEWSLETTER_WEEKLY_CRON) until Ctrl-C."""
    import scheduler as scheduler_module

    settings = load_settings()
    _setup_logging(settings)
    scheduler_module.run(settings)


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Web interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Web port.")] = 8000,
) -> None:
    """Run web, worker and scheduler together on this machine; Ctrl-C stops them all."""
    from worker import supervisor

    settings = load_settings()
    _setup_logging(settings)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    engine.dispose()
    rt = open_runtime(settings)
    rt.redis.ping()  # the embedded Redis lives at least as long as this process
    _warn_plain_http(settings)
    err.print(f"web: http://{host}:{port}  (reader form: {settings.public_url}/subscribe)")
    err.print(f"operator token: {settings.operator_token}")
    children = {
        "web": supervisor.spawn(["web", "--host", host, "--port", str(port)]),
        "worker": supervisor.spawn(["worker"]),
        "scheduler": supervisor.spawn(["scheduler"]),
    }
    code = supervisor.supervise(children)
    rt.close()
    raise typer.Exit(code)


def _warn_plain_http(settings: Settings) -> None:
    if settings.smtp_url and not settings.public_url.startswith("https://"):
        err.print(
            "[yellow]warning:[/] NEWSLETTER_PUBLIC_URL is not https while mail goes to a "
            "real SMTP server: unsubscribe links must be https in production"
        )


@app.command()
def demo(
    subscribers: Annotated[int, typer.Option(help="How many demo subscribers.")] = 25,
) -> None:
    """Run the whole pipeline on the embedded defaults and show what was sent."""
    from worker import supervisor
    from worker.demo import dated_samples, demo_subscribers
    from worker.loading import import_comparisons

    settings = load_settings()
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    engine.dispose()
    now = utcnow()
    with _runtime() as rt:
        records = dated_samples(now, settings.tz)
        report = import_comparisons(rt.engine, json.dumps(records))
        err.print(f"comparisons: {report.created} created, {report.updated} updated")
        with rt.session() as session, session.begin():
            categories = store.list_categories(session)
            counts = store.merge_subscribers(
                session, demo_subscribers(categories, subscribers), True, "demo"
            )
        err.print(f"subscribers: {counts.added} added, {counts.updated + counts.unchanged} known")
        week = editions.resolve_week(rt, None, now)
        started = time.monotonic()
        with supervisor.running_worker(rt, threads=4) as (actors, _worker):
            outcome = editions.start_send(rt, week, now, rt.actors)
            err.print(outcome.message)
            if outcome.edition is None:
                return
            view = _wait_for(rt, week, timeout_s=120)
        elapsed = time.monotonic() - started
        _print_summary(view, elapsed)
        err.print(
            f"outbox: {settings.outbox_dir.resolve()}"
            if not settings.smtp_url
            else f"sent through {settings.smtp_url}"
        )


def _print_summary(view: editions.EditionStatusView, elapsed_s: float) -> None:
    table = Table(title=f"Edition {view.week}: {view.status} in {elapsed_s:.1f} s")
    table.add_column("what")
    table.add_column("count", justify="right")
    for field in ("comparisons", "total", "sent", "skipped", "failed", "bounced", "queued"):
        table.add_row(field, str(getattr(view, field)))
    err.print(table)


# --- deliverability: DKIM keys and the DNS check ------------------------------------------------

dkim_app = typer.Typer(help="DKIM keys that sign every mail.", no_args_is_help=True)
app.add_typer(dkim_app, name="dkim")


@dkim_app.command("keygen")
def dkim_keygen(
    selector: Annotated[str, typer.Option("--selector", help="Selector, e.g. nl2026.")],
    key_type: Annotated[
        str, typer.Option("--type", help="rsa (2048 bits, read everywhere) or ed25519.")
    ] = "rsa",
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Key file to write (default: <data dir>/dkim/<selector>.pem)."),
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(help="Signing domain (default: NEWSLETTER_DKIM_DOMAIN or the From domain)."),
    ] = None,
) -> None:
    """Write a new DKIM private key (mode 0600) and print the DNS TXT record to publish."""
    from worker import dkim
    from worker.doctor import reserved
    from worker.errors import ConfigError

    given = {"dkim_selector": selector} | ({"dkim_domain": domain} if domain else {})
    try:
        settings = load_settings(check_dkim=False, **given)
    except ConfigError as exc:
        option = {"NEWSLETTER_DKIM_SELECTOR": "--selector", "NEWSLETTER_DKIM_DOMAIN": "--domain"}
        if exc.variable not in option:
            raise
        raise InputError(f"{option[exc.variable]}: {exc.problem}") from None
    assert settings.dkim_selector
    selector = settings.dkim_selector
    signing_domain = settings.dkim_domain or settings.mail_domain
    if reserved(signing_domain):
        raise InputError(
            f"{signing_domain} is not a domain receivers can look up: "
            "give --domain or set NEWSLETTER_DKIM_DOMAIN"
        )
    path = out_file or settings.data_dir / "dkim" / f"{selector}.pem"
    key = dkim.generate_key(key_type)
    dkim.write_key(key, path)
    err.print(f"wrote {path.resolve()} ({key.key_type}, {key.bits} bits, mode 0600)")
    err.print(f"publish this TXT record at {dkim.record_name(selector, signing_domain)}:")
    out.print(dkim.zone_line(selector, signing_domain, key), markup=False, soft_wrap=True)
    err.print(
        f"then set NEWSLETTER_DKIM_DOMAIN={signing_domain} NEWSLETTER_DKIM_SELECTOR={selector} "
        f"NEWSLETTER_DKIM_KEY_FILE={path.resolve()}",
        markup=False,
    )


@app.command()
def doctor(
    nameserver: Annotated[
        str | None,
        typer.Option(help="Ask this DNS server (IP[:port]), e.g. your domain's, not the system's."),
    ] = None,
) -> None:
    """Check SPF, DKIM and DMARC records against the settings, and the settings themselves."""
    from worker.doctor import DnsResolver, Setup, run_checks

    resolver = DnsResolver(nameserver)
    checks = run_checks(Setup.from_settings(load_settings()), resolver)
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    width = max(len(c.name) for c in checks)
    for check in checks:
        out.print(
            f"[{colour[check.status]}]{check.status:<4}[/] {check.name:<{width}}  ",
            end="",
        )
        out.print(check.detail, markup=False, soft_wrap=True)
    failed = sum(c.status == "fail" for c in checks)
    if failed:
        err.print(f"{failed} check(s) failed")
        raise typer.Exit(1)


# --- entry point ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning every error into one line on stderr and an exit code."""
    try:
        app(args=argv, prog_name="newsletter")
    except NewsletterError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # one line for the user; the traceback only when asked for
        if os.environ.get("NEWSLETTER_DEBUG"):
            raise
        err.print(
            f"error: unexpected {type(exc).__name__}: {exc} "
            "(set NEWSLETTER_DEBUG=1 for the traceback)",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
