"""Subscriber CSVs in: streamed, checked row by row, written in batches, so a million rows need
little memory. A bad row is reported by its line and skipped; with ``strict`` nothing loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy.engine import Engine
from sqlmodel import Session

from worker.catalog import queries as catalog
from worker.errors import InputError
from worker.report import ImportReport
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import SubscriberInput, read_csv

BATCH = 1000


def import_subscribers(
    engine: Engine,
    lines: Iterable[str],
    confirmed: bool,
    strict: bool = False,
    source: str = "csv import",
    check_deliverability: bool = False,
    on_row: Callable[[int], None] | None = None,
) -> ImportReport:
    """Load a subscriber CSV in batches, merging duplicates case-insensitively.

    A row naming a category no comparison is in is reported and skipped; with no comparison
    loaded yet, categories cannot be checked and the report says so (``unchecked``).
    """
    report = ImportReport()
    with Session(engine) as session:
        catalog_categories = catalog.list_categories(session)
    rows = read_csv(lines, check_deliverability, catalog_categories or None)
    unchecked = report.unchecked_categories if not catalog_categories else None
    if strict:
        # All or nothing: validate everything first, then load in one transaction.
        good: list[SubscriberInput] = []
        for line, item in rows:
            if isinstance(item, InputError):
                raise InputError(f"line {line}: {item}; nothing loaded (--strict)")
            if unchecked is not None:
                unchecked.update(item.categories)
            good.append(item)
        with Session(engine) as session, session.begin():
            for start in range(0, len(good), BATCH):
                _add(
                    report,
                    subscribers.merge_subscribers(
                        session, good[start : start + BATCH], confirmed, source
                    ),
                )
        return report
    batch: list[SubscriberInput] = []
    for line, item in rows:
        if on_row:
            on_row(line)
        if isinstance(item, InputError):
            report.errors.append(f"line {line}: {item}")
            continue
        if unchecked is not None:
            unchecked.update(item.categories)
        batch.append(item)
        if len(batch) >= BATCH:
            _flush(engine, batch, confirmed, source, report)
    _flush(engine, batch, confirmed, source, report)
    return report


def _flush(
    engine: Engine, batch: list[SubscriberInput], confirmed: bool, source: str, report: ImportReport
) -> None:
    if not batch:
        return
    with Session(engine) as session, session.begin():
        _add(report, subscribers.merge_subscribers(session, batch, confirmed, source))
    batch.clear()


def _add(report: ImportReport, counts: subscribers.MergeCounts) -> None:
    report.created += counts.added
    report.updated += counts.updated
    report.unchanged += counts.unchanged
