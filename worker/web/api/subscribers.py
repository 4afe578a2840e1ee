"""Subscribers over the operator API: search with filters and totals, one subscriber's record,
an operator's changes (through the status table in ``subscribers.rules``), erasure."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from worker.actors import actors_of
from worker.catalog import queries as catalog
from worker.errors import NotFound
from worker.models import Subscriber
from worker.runtime import Runtime
from worker.subscribers import privacy, service
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import split_categories
from worker.web.api.common import Limit, moment
from worker.web.deps import operator

router = APIRouter(tags=["subscribers"])

Status = Literal["pending", "active", "unsubscribed", "bounced", "complained"]
CadenceName = Literal["weekly", "instant"]
Email = Annotated[str, Path(min_length=3, max_length=320, description="The address.")]


class SubscriberChanges(BaseModel):
    """What to change; a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=1000)
    categories: list[Annotated[str, Field(max_length=1000)]] | None = Field(
        default=None, max_length=100
    )
    cadence: CadenceName | None = None
    status: Status | None = Field(
        default=None,
        description="`unsubscribed`, `bounced`, `complained`, or `pending` (mails a new "
        "confirmation); only the reader's confirmation makes them `active` again.",
    )


def subscriber_json(s: Subscriber) -> dict[str, Any]:
    """A subscriber as the list shows it."""
    return {
        "id": s.id,
        "email": s.email,
        "name": s.name,
        "status": s.status,
        "categories": split_categories(s.categories),
        "cadence": s.cadence,
        "created_at": moment(s.created_at),
        "confirmed_at": moment(s.confirmed_at),
    }


@router.get("/subscribers")
def list_subscribers(
    rt: Runtime = Depends(operator),
    after: Annotated[
        int, Query(ge=0, le=2**62, description="Subscribers with ids above this (the `next`).")
    ] = 0,
    limit: Limit = 100,
    status: Status | None = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    cadence: CadenceName | None = None,
    q: Annotated[
        str | None, Query(max_length=320, description="Part of the address or the name.")
    ] = None,
) -> dict[str, Any]:
    """One keyset page of subscribers, filtered; ``total`` counts every match and ``totals``
    every subscriber by status."""
    wanted = subscribers.SubscriberFilter(status=status, category=category, cadence=cadence, q=q)
    with rt.session() as session:
        found = subscribers.list_subscribers_page(session, after, limit, wanted=wanted)
        total = subscribers.count_matching(session, wanted)
        totals = subscribers.count_subscribers(session)
    items = [subscriber_json(s) for s in found]
    return {
        "items": items,
        "total": total,
        "totals": totals,
        "next": found[-1].id if len(found) == limit else None,
    }


@router.get("/subscribers/{email}")
def get_subscriber(email: Email, rt: Runtime = Depends(operator)) -> dict[str, Any]:
    """Everything stored about a subscriber: consent, preferences, deliveries, bounce events."""
    return privacy.export_subscriber(rt, email)


@router.patch("/subscribers/{email}")
def patch_subscriber(
    email: Email, changes: SubscriberChanges, rt: Runtime = Depends(operator)
) -> dict[str, Any]:
    """Change name, categories, cadence or status; 409 when the status table refuses."""
    with rt.session() as session:
        known = catalog.list_categories(session)
    subscriber, mail = service.change_subscriber(
        rt, email, service.Changes(**changes.model_dump()), known
    )
    if mail is not None and subscriber.id is not None:
        actors_of(rt).send_transactional(mail, subscriber.id)
    return {**subscriber_json(subscriber), "mail": mail}


@router.delete("/subscribers/{email}", status_code=204)
def delete_subscriber(email: Email, rt: Runtime = Depends(operator)) -> Response:
    """Erase a subscriber (a bounced or complained address keeps only a keyed hash)."""
    if not privacy.erase_subscriber(rt, email):
        raise NotFound(f"no subscriber {email}")
    return Response(status_code=204)
