"""Loading comparisons: a file in the import format (SPEC §2), or one record from the API.

Bad records are reported with their index and the field at fault and skipped; with ``strict``
nothing loads when any record is bad. Re-importing a slug updates it.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.engine import Engine
from sqlmodel import Session

from worker.catalog import queries as catalog
from worker.catalog.records import ComparisonRecord, read_records, validate_all
from worker.errors import InputError
from worker.report import ImportReport


def load_comparison_records(engine: Engine, records: Iterable[ComparisonRecord]) -> ImportReport:
    """Upsert validated comparisons in one transaction."""
    report = ImportReport()
    with Session(engine) as session, session.begin():
        for record in records:
            if catalog.upsert_comparison(session, record):
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
