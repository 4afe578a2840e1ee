"""``newsletter bounces …``: ingest bounce mail, serve an SMTP receiver, poll the mailbox, list."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from worker.bounces import queries as bounces
from worker.cli.app import bounces_app, cli_runtime, err, out, setup_logging
from worker.cli.output import progress_bar
from worker.config import load_settings
from worker.errors import InputError
from worker.sending import control
from worker.sending.digest import count as plural


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

    with cli_runtime() as rt:
        intake = intake_for(rt)
        messages = list(_inbound(source))
        tally: dict[str, int] = {}
        with progress_bar() as progress:
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
        f"{plural(len(messages), 'message')}: {summary or 'none'}"
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
    setup_logging(settings)
    with cli_runtime() as rt:
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
        err.print(f"{plural(handler.processed, 'message')} processed")


@bounces_app.command("poll")
def bounces_poll() -> None:
    """Process the bounce mailbox (NEWSLETTER_BOUNCE_MAILBOX) once."""
    from worker.bounces.poller import poll_mailbox

    with cli_runtime() as rt:
        if not rt.settings.bounce_mailbox:
            raise InputError("NEWSLETTER_BOUNCE_MAILBOX is not set")
        handled = poll_mailbox(rt)
    err.print(f"{plural(handled, 'message')} processed")


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
    with cli_runtime() as rt:
        edition_id = control.get_edition(rt, control.resolve_week(rt, week)).id if week else None
        with rt.session() as session:
            events = bounces.list_bounce_events(session, edition_id, kind, limit)
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
