"""Reader pages: unsubscribe (page + RFC 8058 one-click POST)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from worker import store
from worker.errors import InvalidToken
from worker.models import SubscriberStatus
from worker.runtime import Runtime
from worker.tokens import read_link
from worker.web.deps import runtime
from worker.web.pages import message, page

router = APIRouter(tags=["readers"])

UNSUBSCRIBABLE = (SubscriberStatus.pending.value, SubscriberStatus.active.value)


def _subscriber_token(rt: Runtime, purpose: str, token: str) -> str | None:
    try:
        return read_link(rt.secret_key, purpose, token)
    except InvalidToken:
        return None


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, rt: Runtime = Depends(runtime)) -> HTMLResponse:
    """A page with one button; opening the link alone changes nothing (mail scanners do that)."""
    handle = _subscriber_token(rt, "unsubscribe", token)
    with rt.session() as session:
        subscriber = store.get_subscriber_by_token(session, handle) if handle else None
    if subscriber is None:
        return message(request, "Link not valid",
                       "This unsubscribe link is not valid. Use the link in your latest mail.", 400)
    if subscriber.status not in UNSUBSCRIBABLE:
        return message(request, "You are unsubscribed",
                       f"{subscriber.email} gets no more mail from us.")
    return page(request, "unsubscribe.html", email=subscriber.email,
                action=f"/unsubscribe/{token}")


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, request: Request, rt: Runtime = Depends(runtime)) -> HTMLResponse:
    """RFC 8058 one-click (``List-Unsubscribe=One-Click``) or the page's button: 200, at once."""
    handle = _subscriber_token(rt, "unsubscribe", token)
    with rt.session() as session, session.begin():
        subscriber = store.get_subscriber_by_token(session, handle) if handle else None
        if subscriber is None:
            return message(request, "Link not valid", "This unsubscribe link is not valid.", 400)
        assert subscriber.id is not None
        store.mark_subscriber_status(session, subscriber.id, SubscriberStatus.unsubscribed,
                                     only_from=UNSUBSCRIBABLE)
    return message(request, "You are unsubscribed",
                   "You will get no more mail from Weekly AI Tool Verdicts. "
                   "Deliveries already queued for you will not be sent.")
