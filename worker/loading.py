"""Bulk loading into the store: comparison files and subscriber CSVs.

Bad records are reported and skipped; with ``strict`` nothing loads when any record is bad.
Subscriber CSVs are streamed and written in batches, so a million rows need little memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import Session

from worker import store
from worker.comparisons import ComparisonRecord, read_records, validate_all
from worker.errors import InputError
from worker.subscribers import SubscriberInput, read_csv

BATCH = 1000


@dataclass
class ImportReport:
    """What an import did, and the problems it skipped."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        """Records written (new or changed)."""
        return self.created + self.updated


def load_comparison_records(engine: Engine, records: Iterable[ComparisonRecord]) -> ImportReport:
    """Upsert validated comparisons in one transaction."""
    report = ImportReport()
    with Session(engine) as session, session.begin():
        for record in records:
            if store.upsert_comparison(session, record):
                report.created += 1
            else:
                report.updated += 1
    return report


def import_comparisons(engine: Engine, text: str, strict: bool = False) -> ImportReport:
    """Validate and load a comparison file's text; bad records are reported with their index."""
    good, bad = validate_all(read_records(text))
    errors = [str(e) for e in bad]
    if strict and bad:
        raise InputError(f"{len(bad)} invalid record(s), nothing loaded; first: {errors[0]}")
    report = load_comparison_records(engine, good)
    report.errors = errors
    return report


def import_subscribers(
    engine: Engine,
    lines: Iterable[str],
    confirmed: bool,
    strict: bool = False,
    source: str = "csv import",
    check_deliverability: bool = False,
    on_row: Callable[[int], None] | None = None,
) -> ImportReport:
    """Load a subscriber CSV in batches, merging duplicates case-insensitively."""
    report = ImportReport()
    rows = read_csv(lines, check_deliverability)
    if strict:
        # All or nothing: validate everything first, then load in one transaction.
        good: list[SubscriberInput] = []
        for line, item in rows:
            if isinstance(item, InputError):
                raise InputError(f"line {line}: {item}; nothing loaded (--strict)")
            good.append(item)
        with Session(engine) as session, session.begin():
            for start in range(0, len(good), BATCH):
                _add(
                    report,
                    store.merge_subscribers(
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
        _add(report, store.merge_subscribers(session, batch, confirmed, source))
    batch.clear()


def _add(report: ImportReport, counts: store.MergeCounts) -> None:
    report.created += counts.added
    report.updated += counts.updated
    report.unchanged += counts.unchanged
