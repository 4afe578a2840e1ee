"""What a mail shows of a comparison: plain views, built by the catalog's queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ToolView:
    name: str
    version: str
    category: str
    tagline: str
    summary: str
    pricing: str
    community_votes: int | None
    ship_percent: int | None
    reviews: tuple[ReviewView, ...]


@dataclass(frozen=True)
class ReviewView:
    reviewer: str
    verdict: str
    quote: str


@dataclass(frozen=True)
class ComparisonView:
    """A comparison with everything a mail shows about it."""

    id: int
    slug: str
    title: str
    category: str
    url: str
    published_at: datetime
    tool_a: ToolView
    tool_b: ToolView
