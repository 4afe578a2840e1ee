"""Subscriber input: addresses, names, categories and the CSV format, pure.

CSV columns: ``email,name,categories`` (categories ``;``-separated). The export's columns
(``email,name,status,categories,cadence``, …) are accepted too, so export → import round-trips.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from email_validator import EmailNotValidError, validate_email

from worker.errors import InputError
from worker.models import Cadence, SubscriberStatus

NAME_MAX = 200
EXPORT_COLUMNS = ("email", "name", "status", "categories", "cadence", "created_at", "confirmed_at")
IMPORTABLE_STATUSES = {s.value for s in SubscriberStatus}


@dataclass(frozen=True)
class SubscriberInput:
    """A validated subscriber to add or merge."""

    email: str
    name: str = ""
    categories: tuple[str, ...] = ()
    cadence: str = Cadence.weekly.value
    status: str | None = None
    created_at: datetime | None = None
    confirmed_at: datetime | None = None

    @property
    def key(self) -> str:
        """The case-insensitive identity of the address."""
        return email_key(self.email)


def email_key(email: str) -> str:
    """The unique key of an address: addresses are equal case-insensitively."""
    return email.strip().casefold()


def clean_email(raw: str, check_deliverability: bool = False) -> str:
    """Validate and normalise an address; CR/LF and other control characters are refused."""
    if any(unicodedata.category(ch) == "Cc" for ch in raw):
        raise InputError("email: control characters (such as line breaks) are not allowed")
    text = raw.strip()
    if not text:
        raise InputError("email: an address is required")
    if len(text) > 254:
        raise InputError("email: the address is too long (254 characters at most)")
    try:
        result = validate_email(text, check_deliverability=check_deliverability)
    except EmailNotValidError as exc:
        raise InputError(f"email: {exc}") from None
    return result.normalized


def clean_name(raw: str | None) -> str:
    """Validate a display name: no control characters, bounded length."""
    if raw is None:
        return ""
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in raw):
        raise InputError("name: control characters (such as line breaks) are not allowed")
    text = " ".join(raw.split())
    if len(text) > NAME_MAX:
        raise InputError(f"name: too long ({len(text)} characters, {NAME_MAX} at most)")
    return text


def clean_categories(values: Iterable[str]) -> tuple[str, ...]:
    """Strip, de-duplicate (case-insensitively) and bound a list of category names."""
    seen: dict[str, str] = {}
    for value in values:
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            raise InputError("categories: control characters are not allowed")
        text = value.strip()
        if len(text) > 100:
            raise InputError("categories: a category name is too long (100 characters at most)")
        if text:
            seen.setdefault(text.casefold(), text)
    return tuple(seen.values())


def clean_cadence(raw: str | None) -> str:
    """Validate a cadence (``weekly`` or ``instant``)."""
    value = (raw or Cadence.weekly.value).strip().lower()
    if value not in {c.value for c in Cadence}:
        raise InputError(f"cadence: must be weekly or instant, got {raw!r}")
    return value


def clean_timestamp(field: str, raw: str | None) -> datetime | None:
    """Parse an ISO 8601 time from an export (empty: none); naive times are UTC."""
    if not raw or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise InputError(f"{field}: not an ISO 8601 time: {raw[:40]!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def known_categories(
    categories: tuple[str, ...], known: Mapping[str, str] | None
) -> tuple[str, ...]:
    """``categories`` in their catalog spelling; InputError naming those the catalog lacks.

    ``known`` maps each catalog category, case-folded, to its spelling; None checks nothing.
    """
    if known is None:
        return categories
    unknown = [c for c in categories if c.casefold() not in known]
    if unknown:
        noun = "category" if len(unknown) == 1 else "categories"
        listed = ", ".join(repr(c) for c in unknown)
        raise InputError(
            f"categories: unknown {noun} {listed} (known: {'; '.join(sorted(known.values()))})"
        )
    return tuple(known[c.casefold()] for c in categories)


def read_csv(
    lines: Iterable[str],
    check_deliverability: bool = False,
    categories: Iterable[str] | None = None,
) -> Iterator[tuple[int, SubscriberInput | InputError]]:
    """Yield (line number, subscriber or error) for each data row of a subscriber CSV.

    ``categories``: the catalog's; a row naming another is an error (None: not checked).
    """
    known = None if categories is None else {c.casefold(): c for c in categories}
    reader = csv.DictReader(lines)
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if "email" not in fields:
        raise InputError("line 1: the header must have an 'email' column (email,name,categories)")
    reader.fieldnames = fields
    while True:
        line = reader.line_num + 1  # where the row starts, even when a quoted field spans lines
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, InputError(f"unreadable CSV: {exc}")
            return
        try:
            if None in row:
                raise InputError("more fields than the header has")
            status = (row.get("status") or "").strip().lower() or None
            if status is not None and status not in IMPORTABLE_STATUSES:
                raise InputError(f"status: unknown status {status!r}")
            yield (
                line,
                SubscriberInput(
                    email=clean_email(row.get("email") or "", check_deliverability),
                    name=clean_name(row.get("name")),
                    categories=known_categories(
                        clean_categories(split_categories(row.get("categories") or "")), known
                    ),
                    cadence=clean_cadence(row.get("cadence")),
                    status=status,
                    created_at=clean_timestamp("created_at", row.get("created_at")),
                    confirmed_at=clean_timestamp("confirmed_at", row.get("confirmed_at")),
                ),
            )
        except InputError as exc:
            yield line, exc


# --- categories -------------------------------------------------------------------------------

SEPARATOR = ";"
"""Between a subscriber's categories: as stored, in the CSV and on the command line."""


def split_categories(text: str) -> list[str]:
    """The categories in stored or typed ``;``-separated text, blanks dropped."""
    return [c.strip() for c in text.split(SEPARATOR) if c.strip()]


def join_categories(categories: Iterable[str]) -> str:
    """Categories as stored: ``;``-separated."""
    return SEPARATOR.join(categories)


# --- status transitions ------------------------------------------------------------------------

_S = SubscriberStatus
MOVES: dict[SubscriberStatus, frozenset[SubscriberStatus]] = {
    # Confirming makes a reader active; asking again (or an import) keeps them pending.
    _S.pending: frozenset({_S.active, _S.unsubscribed, _S.bounced, _S.complained}),
    _S.active: frozenset({_S.unsubscribed, _S.bounced, _S.complained}),
    # Coming back goes through double opt-in again (pending), or an operator's confirmed import.
    _S.unsubscribed: frozenset({_S.pending, _S.active, _S.bounced, _S.complained}),
    # A dead address is never revived by anyone; a complaint outranks a bounce.
    _S.bounced: frozenset({_S.complained}),
    _S.complained: frozenset(),
}
"""Every move a subscriber's status may make (SPEC §2, §6): one table, asked by every writer."""

NEVER_AGAIN = frozenset({_S.bounced, _S.complained})
"""Statuses nothing brings back: the address is dead or its owner called us spam."""


def can_move(current: str, wanted: str) -> bool:
    """True when a subscriber may go from ``current`` to ``wanted`` (staying put is allowed)."""
    if current == wanted:
        return True
    return SubscriberStatus(wanted) in MOVES[SubscriberStatus(current)]


def moves_into(wanted: SubscriberStatus) -> tuple[str, ...]:
    """The statuses a subscriber may be in to move to ``wanted`` (for conditional updates)."""
    return tuple(s.value for s, allowed in MOVES.items() if wanted in allowed)


def operator_may_move(current: str, wanted: str) -> bool:
    """An operator's change of status: what the table allows, except making a reader active,
    which only the reader's own confirmation does (an operator sets ``pending``, which mails a
    new confirmation)."""
    if wanted == _S.active.value and current != _S.active.value:
        return False
    return can_move(current, wanted)
