"""Finding subscribers for the console: by address or name, status, category and cadence,
a page at a time with the total."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, or_, select
from sqlmodel import Session

from worker.models import Subscriber
from worker.subscribers.rules import SEPARATOR


@dataclass(frozen=True)
class SubscriberFilter:
    """What the operator searched for; empty fields match everyone."""

    q: str = ""
    status: str = ""
    category: str = ""
    cadence: str = ""


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(wanted: SubscriberFilter) -> list[Any]:
    conditions: list[Any] = []
    if wanted.q.strip():
        pattern = _like(wanted.q.strip())
        conditions.append(
            or_(
                Subscriber.email_key.like(pattern, escape="\\"),
                func.lower(Subscriber.name).like(pattern, escape="\\"),
            )
        )
    if wanted.status:
        conditions.append(Subscriber.status == wanted.status)
    if wanted.cadence:
        conditions.append(Subscriber.cadence == wanted.cadence)
    if wanted.category:
        # Who gets the category: those who chose it, and those who chose none (= all).
        stored = literal(SEPARATOR) + Subscriber.categories + literal(SEPARATOR)
        pattern = "%" + SEPARATOR + wanted.category.replace("%", "").replace("_", "") + SEPARATOR
        conditions.append(or_(Subscriber.categories == "", stored.like(pattern + "%")))
    return conditions


def search_subscribers(
    session: Session, wanted: SubscriberFilter, offset: int, limit: int
) -> tuple[list[Subscriber], int]:
    """One page of the subscribers matching ``wanted`` (by id) and how many match in all."""
    conditions = _conditions(wanted)
    total = session.execute(
        select(func.count()).select_from(Subscriber).where(*conditions)
    ).scalar_one()
    rows = session.execute(
        select(Subscriber).where(*conditions).order_by(Subscriber.id).offset(offset).limit(limit)
    ).scalars()
    return list(rows), int(total)
