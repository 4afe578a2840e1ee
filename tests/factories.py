"""Small builders of test data in the project's own input formats."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from worker.actors import actors_of
from worker.catalog.service import import_comparisons
from worker.catalog.views import ComparisonView, ReviewView, ToolView
from worker.runtime import Runtime
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import SubscriberInput


def comparison(
    slug: str,
    category: str,
    published_at: datetime,
    title: str | None = None,
    ships: tuple[int, int] = (3, 2),
) -> dict[str, Any]:
    """A valid import record; ``ships`` is how many of 4 reviews ship each tool."""
    names = (f"{slug}-a", f"{slug}-b")
    reviews = []
    for tool, ship_count in zip(names, ships, strict=True):
        for i in range(4):
            reviews.append(
                {
                    "reviewer": f"Reviewer {i}",
                    "tool": tool,
                    "verdict": "ship" if i < ship_count else "skip",
                    "quote": f"Quote {i} on {tool}.",
                }
            )
    return {
        "slug": slug,
        "title": title or f"{names[0]} vs {names[1]}",
        "category": category,
        "url": f"https://verdicts.example.com/compare/{slug}",
        "published_at": published_at.isoformat(),
        "tools": [
            {
                "name": n,
                "version": "1.0",
                "category": category,
                "tagline": f"{n} tagline",
                "summary": f"{n} summary",
                "pricing": "Free",
                "community_votes": None,
            }
            for n in names
        ],
        "reviews": reviews,
    }


def view(record: dict[str, Any], comparison_id: int = 1) -> ComparisonView:
    """An import record as the store's view of it, without a database (for rendering tests)."""

    def tool(data: dict[str, Any]) -> ToolView:
        reviews = tuple(
            ReviewView(r["reviewer"], r["verdict"], r["quote"])
            for r in record["reviews"]
            if r["tool"] == data["name"]
        )
        ships = sum(1 for r in reviews if r.verdict == "ship")
        return ToolView(
            name=data["name"],
            version=data["version"],
            category=data["category"],
            tagline=data["tagline"],
            summary=data["summary"],
            pricing=data["pricing"],
            community_votes=data["community_votes"],
            ship_percent=round(100 * ships / len(reviews)) if reviews else None,
            reviews=reviews,
        )

    return ComparisonView(
        id=comparison_id,
        slug=record["slug"],
        title=record["title"],
        category=record["category"],
        url=record["url"],
        published_at=datetime.fromisoformat(record["published_at"]),
        tool_a=tool(record["tools"][0]),
        tool_b=tool(record["tools"][1]),
    )


def load(rt: Runtime, *records: dict[str, Any]) -> None:
    """Import comparison records."""
    report = import_comparisons(rt.engine, json.dumps(list(records)))
    assert not report.errors, report.errors


def subscribe(
    rt: Runtime,
    *people: tuple[str, str, tuple[str, ...]],
    confirmed: bool = True,
    cadence: str = "weekly",
) -> None:
    """Add (email, name, categories) subscribers."""
    with rt.session() as session, session.begin():
        subscribers.merge_subscribers(
            session,
            [SubscriberInput(email=e, name=n, categories=c, cadence=cadence) for e, n, c in people],
            confirmed,
            "test",
        )


def send(rt: Runtime, week: str, now: datetime) -> Any:
    """Start sending a week through the real actors."""
    from worker.sending import control

    return control.start_send(rt, week, now, actors_of(rt))


class FanOutHere:
    """The real queue, except that fan-out runs in this process, so that a test can look at
    the rows and jobs it made before any worker runs. ``enqueue`` replaces the hand-over of
    deliver jobs (e.g. to drop them: rows owed and no job carrying them)."""

    def __init__(
        self, rt: Runtime, enqueue: Callable[[list[tuple[int, str]]], None] | None = None
    ) -> None:
        self.rt = rt
        self._enqueue = enqueue

    def start_fan_out(self, edition_id: int) -> None:
        from worker.sending import pipeline

        pipeline.fan_out(self.rt, edition_id, self)

    def start_refill(self, edition_id: int) -> None:
        actors_of(self.rt).start_refill(edition_id)

    def enqueue(self, jobs: list[tuple[int, str]]) -> None:
        (self._enqueue or actors_of(self.rt).enqueue)(jobs)

    def jobs_alive(self, job_ids: Iterable[str]) -> set[str]:
        return actors_of(self.rt).jobs_alive(job_ids)

    def send_transactional(self, kind: str, subscriber_id: int) -> None:
        actors_of(self.rt).send_transactional(kind, subscriber_id)
