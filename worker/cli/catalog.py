"""``newsletter comparisons …``: loading the comparisons the mails are about."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from worker.cli.app import cli_runtime, comparisons_app, err, read_text
from worker.sending.digest import count as plural


@comparisons_app.command("import")
def comparisons_import(
    file: Annotated[Path, typer.Argument(help="JSON array of comparison records; - for stdin.")],
    strict: Annotated[bool, typer.Option(help="Load nothing if any record is invalid.")] = False,
) -> None:
    """Import comparisons (SPEC §2 format); re-importing a slug updates it."""
    text = read_text(file)
    with cli_runtime() as rt:
        from worker.catalog.service import import_comparisons

        report = import_comparisons(rt.engine, text, strict)
    for problem in report.errors:
        err.print(f"skipped {problem}")
    err.print(
        f"{report.created} created, {report.updated} updated, "
        f"{plural(len(report.errors), 'invalid record')} skipped"
    )
    if report.errors and not report.loaded:
        raise typer.Exit(2)
