"""The bounce corpus and its labels, compared with what our parser finds.

Shared by the corpus table test and ``make bounce-report``. A row agrees when our finding for
that (file, recipient) has the labelled reason and kind; a recipient we report that the table
does not name counts as one more disagreeing row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from worker.bounces import BounceFinding
from worker.bounces.dsn import parse_bounce
from worker.errors import BounceParseError

CORPUS = Path(__file__).parent / "data" / "bounces" / "corpus"
EXPECTED = CORPUS / "expected.tsv"
NO_FINDING = "-"
SUPPRESSING = frozenset({"hard", "complaint"})


@dataclass(frozen=True)
class Row:
    """One labelled (file, recipient) of ``expected.tsv``."""

    file: str
    recipient: str
    action: str
    status: str
    reason: str
    kind: str
    mta: str
    note: str
    ours: str  # "reason/kind" we give instead, when this is a known disagreement


@dataclass(frozen=True)
class Outcome:
    """Our verdict on one row (or on a recipient the table does not name)."""

    row: Row
    reason: str
    kind: str
    action: str

    @property
    def ours(self) -> str:
        """Our verdict as ``reason/kind``, the form of the table's ``ours`` column."""
        return f"{self.reason}/{self.kind}"

    @property
    def agrees(self) -> bool:
        """True when our reason and kind are the labelled ones."""
        return (self.reason, self.kind) == (self.row.reason, self.row.kind)

    @property
    def suppress_agrees(self) -> bool:
        """True when we and the label agree on "suppress this address now?"."""
        return (self.kind in SUPPRESSING) == (self.row.kind in SUPPRESSING)


def load_rows(path: Path = EXPECTED) -> list[Row]:
    """The labelled rows, in file order."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        names = list(Row.__annotations__)
        return [Row(**{name: record.get(name) or "" for name in names}) for record in reader]


def files() -> list[str]:
    """Every message in the corpus, as a path relative to it."""
    return sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.eml"))


@cache
def findings_of(file: str) -> tuple[BounceFinding, ...]:
    """What our parser finds in one corpus file (nothing when it refuses the message)."""
    try:
        return parse_bounce((CORPUS / file).read_bytes()).findings
    except BounceParseError:
        return ()


def outcomes(rows: list[Row]) -> Iterator[Outcome]:
    """Our verdict on every labelled row, then on every recipient the labels do not name."""
    by_file: dict[str, list[Row]] = {}
    for row in rows:
        by_file.setdefault(row.file, []).append(row)
    for file, labelled in by_file.items():
        ours = {(f.recipient or "").lower(): f for f in findings_of(file)}
        for row in labelled:
            finding = ours.pop(row.recipient.lower(), None)
            if finding is None:
                yield Outcome(row, NO_FINDING, NO_FINDING, "none")
            else:
                yield Outcome(row, finding.reason, finding.kind, finding.action)
        for finding in ours.values():
            unlabelled = Row(
                file,
                finding.recipient or "",
                "none",
                "",
                NO_FINDING,
                NO_FINDING,
                labelled[0].mta,
                "",
                "",
            )
            yield Outcome(unlabelled, finding.reason, finding.kind, finding.action)
