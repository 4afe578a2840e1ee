"""``newsletter subscribers …``: add, import, export, a reader's data, erase."""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from worker.cli.app import cli_runtime, err, subscribers_app
from worker.cli.output import progress_bar
from worker.config import load_settings
from worker.errors import InputError, NotFound
from worker.sending.digest import count
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import split_categories


@subscribers_app.command("add")
def subscribers_add(
    email: Annotated[str, typer.Argument(help="The address.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    categories: Annotated[str, typer.Option(help="';'-separated categories (empty: all).")] = "",
    cadence: Annotated[str, typer.Option(help="weekly or instant.")] = "weekly",
    confirmed: Annotated[bool, typer.Option(help="Active at once, without double opt-in.")] = False,
) -> None:
    """Add (or update) one subscriber."""
    from worker.subscribers.rules import (
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
        categories=clean_categories(split_categories(categories)),
        cadence=clean_cadence(cadence),
    )
    with cli_runtime() as rt, rt.session() as session, session.begin():
        counts = subscribers.merge_subscribers(session, [item], confirmed, "cli")
        subscriber = subscribers.get_subscriber_by_email(session, item.email)
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
    from worker.subscribers.imports import import_subscribers

    settings = load_settings()
    if str(file) != "-" and not file.is_file():
        raise InputError(f"{file}: no such file")
    size = file.stat().st_size if str(file) != "-" else 0
    with cli_runtime() as rt:
        handle = sys.stdin if str(file) == "-" else open(file, encoding="utf-8-sig", newline="")
        with handle, progress_bar() as progress:
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
    if report.unchecked_categories:
        err.print(
            "categories not checked (no comparison is loaded yet to know them by): "
            + "; ".join(sorted(report.unchecked_categories, key=str.casefold))
        )
    err.print(
        f"{report.created} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{count(len(report.errors), 'bad row')} skipped"
    )


@subscribers_app.command("show")
def subscribers_show(
    email: Annotated[str, typer.Argument(help="The address.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """One subscriber: status, choices, consent, and why they left (if they said)."""
    with cli_runtime() as rt, rt.session() as session:
        found = subscribers.get_subscriber_by_email(session, email)
        if found is None:
            raise NotFound(f"no subscriber {email}")
        deliveries = len(subscribers.list_deliveries_of(session, found.id or 0))
    fields = {
        "email": found.email,
        "name": found.name,
        "status": found.status,
        "categories": "; ".join(split_categories(found.categories)) or "all",
        "cadence": found.cadence,
        "created_at": found.created_at.isoformat() if found.created_at else "",
        "confirmed_at": found.confirmed_at.isoformat() if found.confirmed_at else "",
        "status_changed_at": (
            found.status_changed_at.isoformat() if found.status_changed_at else ""
        ),
        "consent": " · ".join(p for p in (found.consent_source, found.consent_ip) if p),
        "deliveries": count(deliveries, "delivery", "deliveries"),
        "unsubscribe_reason": found.unsubscribe_reason or "",
    }
    if as_json:
        sys.stdout.write(json.dumps(fields, ensure_ascii=False) + "\n")
        return
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        sys.stdout.write(f"{key.replace('_', ' '):<{width}}  {value or '—'}\n")


@subscribers_app.command("export")
def subscribers_export() -> None:
    """Write every subscriber as CSV to stdout (importable again)."""
    from worker.subscribers.rules import EXPORT_COLUMNS

    with cli_runtime() as rt, rt.session() as session:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        for s in subscribers.iter_subscribers(session):
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
    from worker.subscribers.privacy import export_subscriber

    with cli_runtime() as rt:
        data = export_subscriber(rt, email)
    print(json.dumps(data, indent=2, ensure_ascii=False))


@subscribers_app.command("erase")
def subscribers_erase(
    email: Annotated[str, typer.Argument(help="The address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a subscriber's personal data (a keyed hash stays if they bounced or complained)."""
    from worker.subscribers.privacy import erase_subscriber

    if not yes and not typer.confirm(f"Erase everything stored about {email}?", err=True):
        raise typer.Exit(1)
    with cli_runtime() as rt:
        if not erase_subscriber(rt, email):
            raise NotFound(f"no subscriber {email}")
    err.print(f"{email}: erased")
