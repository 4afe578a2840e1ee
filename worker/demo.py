"""Demo data: the sample comparisons dated into the current week, and demo subscribers."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from worker.sending.planning import week_bounds, week_of
from worker.subscribers.rules import SubscriberInput

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
FIRST_NAMES = (
    "Ada",
    "Grace",
    "Linus",
    "Margaret",
    "Alan",
    "Barbara",
    "Dennis",
    "Frances",
    "Ken",
    "Radia",
    "Guido",
    "Katherine",
    "Tim",
    "Hedy",
    "Edsger",
    "Joan",
    "Donald",
    "Anita",
    "Niklaus",
    "Sophie",
    "Bjarne",
    "Adele",
    "John",
    "Karen",
    "Zoë",
)


def dated_samples(now: datetime, tz: ZoneInfo, path: Path | None = None) -> list[dict[str, Any]]:
    """The sample comparisons with their dates moved into the current week, order kept."""
    records = json.loads((path or SAMPLES_DIR / "comparisons.json").read_text())
    start, _ = week_bounds(week_of(now, tz), tz)
    span = max(now - start, timedelta(minutes=len(records)))
    step = span / (len(records) + 1)
    ordered = sorted(range(len(records)), key=lambda i: records[i]["published_at"], reverse=True)
    for rank, index in enumerate(ordered):
        records[index]["published_at"] = (now - step * (rank + 1)).isoformat()
    return records


def demo_subscribers(categories: list[str], count: int = 25) -> list[SubscriberInput]:
    """``count`` demo subscribers: some take everything, others one or two categories."""
    people = []
    for i in range(count):
        name = FIRST_NAMES[i % len(FIRST_NAMES)]
        if i % 3 == 0 or not categories:
            chosen: tuple[str, ...] = ()
        elif i % 3 == 1:
            chosen = (categories[i % len(categories)],)
        else:
            chosen = (categories[i % len(categories)], categories[(i + 2) % len(categories)])
        people.append(
            SubscriberInput(
                email=f"{name.lower().replace('ë', 'e')}{i + 1}@example.com",
                name=name,
                categories=chosen,
            )
        )
    return people
