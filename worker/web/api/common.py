"""What the operator API's routers share: the week in a path, paging."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Query

from worker.errors import FieldError, InputError
from worker.runtime import Runtime
from worker.sending import control

WEEK_PATTERN = r"^(\d{4}-W\d{2}|A\d{1,12})$"

Week = Annotated[
    str,
    Path(
        pattern=WEEK_PATTERN,
        description="ISO week of a digest (`2026-W48`) or the key of an instant alert (`A12`).",
        examples=["2026-W48"],
    ),
]
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many items.")]
Before = Annotated[
    int | None,
    Query(ge=1, le=2**62, description="The previous page's `next`: items with ids below it."),
]


def week_of_path(rt: Runtime, week: str) -> str:
    """A week from a path, checked (a week the year does not have is a 422 naming ``week``)."""
    if re.fullmatch(r"A\d{1,12}", week):
        return week
    try:
        return control.resolve_week(rt, week)
    except InputError as exc:
        raise FieldError({"week": str(exc)}) from None


def moment(value: datetime | None) -> str | None:
    """A stored time as ISO 8601 UTC (SQLite hands them back naive)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def page(items: list[dict[str, Any]], total: int, limit: int, cursor: int | None) -> dict[str, Any]:
    """A page: its items, how many match in all, and the cursor of the next page (or None)."""
    return {"items": items, "total": total, "next": cursor if len(items) == limit else None}
