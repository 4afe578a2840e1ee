"""Every query about comparisons, tools and reviews.

Functions take a ``Session`` and leave committing to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    delete,
    insert,
    select,
)
from sqlmodel import Session

from worker.catalog.records import ComparisonRecord
from worker.catalog.views import ComparisonView, ReviewView, ToolView
from worker.models import (
    Comparison,
    Edition,
    EditionComparison,
    EditionKind,
    Review,
    Tool,
    utcnow,
)
from worker.sending.planning import Candidate


def _upsert_tool(session: Session, record: Any) -> int:
    tool = session.exec(
        select(Tool).where(Tool.name == record.name, Tool.version == record.version)
    ).scalar_one_or_none()
    if tool is None:
        tool = Tool(name=record.name, version=record.version)
    for field in ("category", "tagline", "summary", "pricing", "community_votes"):
        setattr(tool, field, getattr(record, field))
    session.add(tool)
    session.flush()
    assert tool.id is not None
    return tool.id


def upsert_comparison(session: Session, record: ComparisonRecord) -> bool:
    """Create or update a comparison by slug, with its tools and reviews; True when created."""
    ids = {tool.name: _upsert_tool(session, tool) for tool in record.tools}
    comparison = session.exec(
        select(Comparison).where(Comparison.slug == record.slug)
    ).scalar_one_or_none()
    created = comparison is None
    if comparison is None:
        comparison = Comparison(
            slug=record.slug,
            title="",
            category="",
            url="",
            published_at=record.published_at,
            tool_a_id=0,
            tool_b_id=0,
        )
    comparison.title = record.title
    comparison.category = record.category
    comparison.url = str(record.url)
    comparison.published_at = record.published_at
    comparison.tool_a_id = ids[record.tools[0].name]
    comparison.tool_b_id = ids[record.tools[1].name]
    comparison.updated_at = utcnow()
    session.add(comparison)
    session.flush()
    session.execute(delete(Review).where(Review.comparison_id == comparison.id))
    session.execute(
        insert(Review),
        [
            {
                "comparison_id": comparison.id,
                "tool_id": ids[r.tool],
                "position": i,
                "reviewer": r.reviewer,
                "verdict": r.verdict,
                "quote": r.quote,
            }
            for i, r in enumerate(record.reviews)
        ],
    ) if record.reviews else None
    return created


def list_candidates(session: Session, since: datetime, until: datetime) -> list[Candidate]:
    """Comparisons published in [since, until), as planning candidates."""
    rows = session.execute(
        select(Comparison.id, Comparison.category, Comparison.published_at).where(
            Comparison.published_at >= since, Comparison.published_at < until
        )
    ).all()
    return [Candidate(id=r.id, category=r.category, published_at=r.published_at) for r in rows]


def list_carried_ids(session: Session, except_edition_id: int | None = None) -> set[int]:
    """Ids of comparisons some (other) digest already carries (instant alerts do not count)."""
    query = (
        select(EditionComparison.comparison_id)
        .join(Edition, Edition.id == EditionComparison.edition_id)
        .where(Edition.kind == EditionKind.digest.value)
    )
    if except_edition_id is not None:
        query = query.where(EditionComparison.edition_id != except_edition_id)
    return set(session.execute(query).scalars())


def list_categories(session: Session) -> list[str]:
    """Every category some comparison is in, sorted."""
    return sorted(set(session.execute(select(Comparison.category).distinct()).scalars()))


def get_comparison_views(session: Session, ids: Sequence[int]) -> list[ComparisonView]:
    """Full views of the comparisons ``ids``, in that order."""
    if not ids:
        return []
    comparisons = {
        c.id: c for c in session.execute(select(Comparison).where(Comparison.id.in_(ids))).scalars()
    }
    tool_ids = {c.tool_a_id for c in comparisons.values()} | {
        c.tool_b_id for c in comparisons.values()
    }
    tools = {t.id: t for t in session.execute(select(Tool).where(Tool.id.in_(tool_ids))).scalars()}
    reviews: dict[tuple[int, int], list[Review]] = {}
    for review in session.execute(
        select(Review).where(Review.comparison_id.in_(ids)).order_by(Review.position)
    ).scalars():
        reviews.setdefault((review.comparison_id, review.tool_id), []).append(review)

    def tool_view(comparison_id: int, tool_id: int) -> ToolView:
        tool = tools[tool_id]
        own = reviews.get((comparison_id, tool_id), [])
        ships = sum(1 for r in own if r.verdict == "ship")
        return ToolView(
            name=tool.name,
            version=tool.version,
            category=tool.category,
            tagline=tool.tagline,
            summary=tool.summary,
            pricing=tool.pricing,
            community_votes=tool.community_votes,
            ship_percent=round(100 * ships / len(own)) if own else None,
            reviews=tuple(ReviewView(r.reviewer, r.verdict, r.quote) for r in own),
        )

    return [
        ComparisonView(
            id=c.id,
            slug=c.slug,
            title=c.title,
            category=c.category,
            url=c.url,
            published_at=c.published_at,
            tool_a=tool_view(c.id, c.tool_a_id),
            tool_b=tool_view(c.id, c.tool_b_id),
        )
        for c in (comparisons[i] for i in ids if i in comparisons)
        if c.id is not None
    ]
