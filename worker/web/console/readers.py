"""Console routes for readers: search subscribers, one subscriber's consent, preferences and
history with the operator's actions (unsubscribe, resubscribe through a new confirmation,
erase: ``worker.subscribers.service``), and recent bounce events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from worker.actors import actors_of
from worker.audit import list_audit_events
from worker.bounces import KINDS
from worker.bounces import queries as bounce_queries
from worker.bounces.listing import list_bounce_reasons, list_recent_bounces
from worker.catalog import queries as catalog
from worker.models import BounceEvent, Cadence, Subscriber, SubscriberStatus
from worker.subscribers import privacy, service
from worker.subscribers import queries as subscribers
from worker.subscribers.queries import Consent
from worker.subscribers.rules import NEVER_AGAIN, can_move, split_categories
from worker.subscribers.search import SubscriberFilter, search_subscribers
from worker.web.console.base import (
    ConsoleRoute,
    ConsoleSession,
    audit,
    changing,
    client_ip,
    confirmation,
    page,
    refusal,
    rt_of,
    signed_in,
)

router = APIRouter(route_class=ConsoleRoute)
PAGE_SIZE = 50

SUBSCRIBER_ACTIONS: dict[str, tuple[str, str]] = {
    "unsubscribe": ("Unsubscribe", "They get no more mail; queued deliveries are skipped."),
    "resubscribe": (
        "Send a new confirmation",
        "They get a mail with a confirmation link and stay pending until they press it: "
        "nobody is subscribed without their own confirmation.",
    ),
    "erase": (
        "Erase",
        "Delete the address, its choices and every record of mail sent to it. This cannot be "
        "undone; an address that bounced or complained stays blocked (as a keyed hash).",
    ),
}


def _allowed(action: str, status: str) -> bool:
    if action == "unsubscribe":
        return can_move(status, SubscriberStatus.unsubscribed.value) and status != "unsubscribed"
    if action == "resubscribe":
        return status in (SubscriberStatus.unsubscribed.value, SubscriberStatus.pending.value)
    return action == "erase"


def _subscriber(request: Request, subscriber_id: int) -> Subscriber:
    with rt_of(request).session() as db:
        found = subscribers.get_subscriber_by_id(db, subscriber_id)
    if found is None:
        raise refusal(request, 404, "No such subscriber", "That subscriber does not exist.")
    return found


@router.get("/subscribers", name="console_subscribers")
def subscriber_list(
    request: Request,
    q: str = "",
    status: str = "",
    category: str = "",
    cadence: str = "",
    page_no: Annotated[int, Query(alias="page", ge=1)] = 1,
    session: ConsoleSession = Depends(signed_in),
) -> Response:
    """Search by address or name; filter by status, category and cadence; paged, with totals."""
    rt = rt_of(request)
    wanted = SubscriberFilter(
        q=q[:320],
        status=status if status in SubscriberStatus.__members__ else "",
        category=category[:100],
        cadence=cadence if cadence in Cadence.__members__ else "",
    )
    with rt.session() as db:
        rows, total = search_subscribers(db, wanted, (page_no - 1) * PAGE_SIZE, PAGE_SIZE)
        counts = subscribers.count_subscribers(db)
        categories = catalog.list_categories(db)
    query = {k: v for k, v in vars(wanted).items() if v}
    return page(
        request,
        "subscribers.html",
        session,
        rows=rows,
        total=total,
        counts=counts,
        wanted=wanted,
        query=query,
        statuses=list(SubscriberStatus),
        cadences=list(Cadence),
        categories=categories,
        page_no=page_no,
        pages=max(1, -(-total // PAGE_SIZE)),
        split_categories=split_categories,
    )


@router.get("/subscribers/{subscriber_id}", name="console_subscriber")
def subscriber_page(
    request: Request,
    subscriber_id: int,
    done: str = "",
    session: ConsoleSession = Depends(signed_in),
) -> Response:
    """Consent, preferences, every delivery and bounce event, the operator's actions."""
    rt = rt_of(request)
    found = _subscriber(request, subscriber_id)
    with rt.session() as db:
        deliveries = subscribers.list_deliveries_of(db, subscriber_id)
        events = bounce_queries.list_bounce_events_of(db, found)
        log = list_audit_events(db, limit=50, target=f"subscriber:{subscriber_id}")
    return page(
        request,
        "subscriber.html",
        session,
        subscriber=found,
        categories=split_categories(found.categories),
        deliveries=deliveries,
        events=events,
        log=log,
        actions=[a for a in SUBSCRIBER_ACTIONS if _allowed(a, found.status)],
        labels=SUBSCRIBER_ACTIONS,
        done=done if done in SUBSCRIBER_ACTIONS else "",
    )


@router.get("/subscribers/{subscriber_id}/confirm/{action}", name="console_confirm_subscriber")
def confirm_subscriber_action(
    request: Request,
    subscriber_id: int,
    action: str,
    session: ConsoleSession = Depends(signed_in),
) -> Response:
    """The confirmation step of a subscriber action."""
    found = _subscriber(request, subscriber_id)
    return confirmation(
        request,
        session,
        SUBSCRIBER_ACTIONS,
        action,
        heading=f"{{label}}: {found.email}?",
        status=found.status,
        allowed=_allowed,
        base_url=f"/admin/subscribers/{subscriber_id}",
        danger="erase",
    )


@router.post("/subscribers/{subscriber_id}/{action}", name="console_subscriber_action")
def subscriber_action(
    request: Request,
    subscriber_id: int,
    action: str,
    session: ConsoleSession = Depends(changing),
) -> Response:
    """Unsubscribe, ask to resubscribe (a new confirmation mail), or erase."""
    rt = rt_of(request)
    if action not in SUBSCRIBER_ACTIONS:
        raise refusal(request, 404, "No such action", f"There is no action {action}.")
    found = _subscriber(request, subscriber_id)
    target = f"subscriber:{subscriber_id}"
    if not _allowed(action, found.status):
        raise refusal(
            request,
            409,
            "Not allowed now",
            f"A {found.status} subscriber cannot take “{SUBSCRIBER_ACTIONS[action][0]}”. "
            "Nothing was changed.",
        )
    if action == "erase":
        privacy.erase_subscriber(rt, found.email)
        audit(request, session, "subscriber erase", target, "erased")
        return RedirectResponse("/admin/subscribers?erased=1", status_code=303)
    if action == "unsubscribe":
        changed = service.unsubscribe(rt, subscriber_id)
        audit(request, session, "subscriber unsubscribe", target, str(changed).lower())
    else:
        consent = Consent(client_ip(request), None, f"operator console ({session.actor})")
        outcome = service.resubscribe_by_id(rt, subscriber_id, consent)
        if outcome.mail != service.MAIL_CONFIRM or outcome.subscriber_id is None:
            why = (
                "the address bounced or complained and is never mailed again"
                if found.status in NEVER_AGAIN
                else "a confirmation went to this address less than ten minutes ago"
            )
            raise refusal(request, 409, "No confirmation sent", f"Nothing was sent: {why}.")
        actors_of(rt).send_transactional(outcome.mail, outcome.subscriber_id)
        audit(request, session, "subscriber resubscribe", target, "confirmation mail queued")
    return RedirectResponse(f"/admin/subscribers/{subscriber_id}?done={action}", status_code=303)


@router.get("/bounces", name="console_bounces")
def bounce_list(
    request: Request,
    kind: str = "",
    reason: str = "",
    session: ConsoleSession = Depends(signed_in),
) -> Response:
    """Recent bounce events, readers' problems apart from the sender's own."""
    rt = rt_of(request)
    kind = kind if kind in KINDS else ""
    reason = reason[:40]
    readers: tuple[list[BounceEvent], int] = ([], 0)
    sender: tuple[list[BounceEvent], int] = ([], 0)
    with rt.session() as db:
        if kind != "sender":
            readers = list_recent_bounces(db, kind, reason, sender_side=False)
        if kind in ("", "sender"):
            sender = list_recent_bounces(db, "", reason, sender_side=True)
        reasons = list_bounce_reasons(db)
    return page(
        request,
        "bounces.html",
        session,
        readers=readers[0],
        readers_total=readers[1],
        sender=sender[0],
        sender_total=sender[1],
        kinds=KINDS,
        reasons=reasons,
        kind=kind,
        reason=reason,
    )
