"""Leaving: the unsubscribe page and its RFC 8058 one-click POST, then the unsubscribed page,
which asks why (optional, stored for operators) and offers to come back through a new
confirmation mail (never a silent revival: the status table decides).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from worker.actors import actors_of
from worker.errors import InputError
from worker.models import Subscriber, SubscriberStatus
from worker.runtime import Runtime
from worker.subscribers import queries as subscribers
from worker.subscribers import service as readers
from worker.web.pages import page
from worker.web.readers import (
    PRIVATE_HEADERS,
    RT,
    UNSUBSCRIBABLE,
    Field,
    _client_ip,
    _message,
    _subscriber,
    _with,
)

router = APIRouter(tags=["readers"])


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, rt: RT) -> Response:
    """A page with one button; opening the link alone changes nothing (mail scanners do that)."""
    subscriber, _why = _subscriber(rt, "unsubscribe", token)
    if subscriber is None:
        return _message(
            request,
            "Link not valid",
            "This unsubscribe link is not valid. Use the link in your latest mail.",
            400,
        )
    if subscriber.status not in UNSUBSCRIBABLE:
        return _unsubscribed(request, rt, token, subscriber)
    response = page(
        request, "unsubscribe.html", email=subscriber.email, action=f"/unsubscribe/{token}"
    )
    return _with(response, PRIVATE_HEADERS)


def _unsubscribed(
    request: Request,
    rt: Runtime,
    token: str,
    subscriber: Subscriber,
    reason_saved: bool = False,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The page after leaving: what happens now, why (optional), come back, the site."""
    response = page(
        request,
        "unsubscribed.html",
        status_code,
        email=subscriber.email,
        can_come_back=subscriber.status == SubscriberStatus.unsubscribed.value,
        reasons=readers.UNSUBSCRIBE_REASONS,
        reason_action=f"/unsubscribe/{token}/reason",
        resubscribe_action=f"/unsubscribe/{token}/resubscribe",
        reason_saved=reason_saved,
        errors=errors or {},
        site_url=rt.settings.site_url,
    )
    return _with(response, PRIVATE_HEADERS)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, request: Request, rt: RT) -> Response:
    """RFC 8058 one-click (``List-Unsubscribe=One-Click``) or the page's button: 200, at once."""
    subscriber, _why = _subscriber(rt, "unsubscribe", token)
    if subscriber is None:
        return _message(request, "Link not valid", "This unsubscribe link is not valid.", 400)
    assert subscriber.id is not None
    with rt.session() as session, session.begin():
        subscribers.mark_subscriber_status(session, subscriber.id, SubscriberStatus.unsubscribed)
    subscriber, _why = _subscriber(rt, "unsubscribe", token)
    assert subscriber is not None
    return _unsubscribed(request, rt, token, subscriber)


@router.post("/unsubscribe/{token}/reason", response_class=HTMLResponse)
def unsubscribe_reason(
    token: str, request: Request, rt: RT, reason: Field = None, detail: Field = None
) -> Response:
    """Why the reader left, if they care to say (stored; operators see it)."""
    subscriber, _why = _subscriber(rt, "unsubscribe", token)
    if subscriber is None or subscriber.id is None:
        return _message(request, "Link not valid", "This unsubscribe link is not valid.", 400)
    if subscriber.status != SubscriberStatus.unsubscribed.value:
        return _unsubscribed(request, rt, token, subscriber)
    try:
        text = readers.read_unsubscribe_reason(reason, detail)
    except InputError as exc:
        return _unsubscribed(
            request, rt, token, subscriber, errors={"reason": str(exc)}, status_code=422
        )
    readers.save_unsubscribe_reason(rt, subscriber.id, text)
    return _unsubscribed(request, rt, token, subscriber, reason_saved=True)


@router.post("/unsubscribe/{token}/resubscribe", response_class=HTMLResponse)
def resubscribe(token: str, request: Request, rt: RT) -> Response:
    """Come back: a new confirmation mail (double opt-in again), never a silent revival."""
    subscriber, _why = _subscriber(rt, "unsubscribe", token)
    if subscriber is None:
        return _message(request, "Link not valid", "This unsubscribe link is not valid.", 400)
    consent = readers.consent_from(
        _client_ip(request), request.headers.get("user-agent"), "unsubscribed page"
    )
    outcome = readers.resubscribe(rt, subscriber, consent)
    if outcome.mail and outcome.subscriber_id is not None:
        actors_of(rt).send_transactional(outcome.mail, outcome.subscriber_id)
    return _message(
        request,
        "Check your inbox",
        f"If {subscriber.email} can receive our mail, a message with a confirmation link is on "
        "its way. Press the button it leads to, and your subscription starts again.",
        more="Until then you get nothing from us.",
        link_url="/editions",
        link_text="Read past editions",
    )
