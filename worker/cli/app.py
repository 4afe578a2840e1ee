"""The ``newsletter`` command's frame: the Typer apps, the consoles, building a runtime, and
``main``, the one place where errors become one line on stderr and an exit code.

Progress, logs and messages go to stderr; data (``--json``, CSV) to stdout.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from worker.config import Settings, load_settings
from worker.errors import InputError, NewsletterError
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


dkim_app = typer.Typer(help="DKIM keys that sign every mail.", no_args_is_help=True)
app.add_typer(dkim_app, name="dkim")


WeekOption = Annotated[
    str | None, typer.Option("--week", help="ISO week, e.g. 2026-W48 (default: the current week).")
]


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper() if settings.log_level else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("dramatiq").setLevel(logging.WARNING)


@contextmanager
def cli_runtime(require_schema: bool = True) -> Iterator[Runtime]:
    settings = load_settings()
    rt = open_runtime(settings, require_schema=require_schema)
    try:
        yield rt
    finally:
        rt.close()


def read_text(file: Path) -> str:
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
