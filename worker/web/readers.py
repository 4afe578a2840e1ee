"""Reader pages: subscribe (double opt-in), confirm, preferences, and the privacy actions
(export, delete); unsubscribing is ``worker.web.unsubscribe``.

Links in mail carry signed tokens, never ids. Opening a link (GET) never changes anything,
because mail scanners open every link: only a POST from the page's button does. The subscribe
form takes no CSRF token, so that a plain form on another site can post to it; double opt-in is
what stops anyone subscribing someone else.

The module is a little over 400 lines on purpose: every page a reader reaches from the form or
from a link in a mail is here, so the rule above can be checked in one read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from worker.actors import actors_of
from worker.catalog import queries as catalog
from worker.config import parse_rate
from worker.errors import InvalidToken
from worker.models import Subscriber, SubscriberStatus
from worker.runtime import Runtime
from worker.sending.throttle import over_limit
from worker.sending.tokens import read_link, sign_link
from worker.subscribers import privacy
from worker.subscribers import queries as subscribers
from worker.subscribers import service as readers
from worker.subscribers.rules import moves_into, split_categories
from worker.subscribers.service import FormErrors
from worker.web.deps import runtime
from worker.web.pages import page

router = APIRouter(tags=["readers"])

UNSUBSCRIBABLE = moves_into(SubscriberStatus.unsubscribed)
RATE_KEY = "newsletter:subscribe-rate"
EXPORT_FILENAME = "weekly-ai-tool-verdicts-my-data.json"

# Pages reached through a personal link: never cached, never framed (a framed "Delete" button
# is a clickjacking target), and the token never leaks to another site through Referer.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'"
PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": _CSP + "; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
# The form is meant to be framed by the comparison site (``?embed=1``): no frame-ancestors.
FORM_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
}

Field = Annotated[str | None, Form()]
RT = Annotated[Runtime, Depends(runtime)]


def _with(response: Response, headers: dict[str, str]) -> Response:
    response.headers.update(headers)
    return response


def _message(
    request: Request, heading: str, text: str, status_code: int = 200, **extra: Any
) -> Response:
    response = page(request, "message.html", status_code, heading=heading, text=text, **extra)
    return _with(response, PRIVATE_HEADERS)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _client_ip(request: Request) -> str:
    # Behind a proxy, run uvicorn with --proxy-headers/--forwarded-allow-ips so that this is
    # the reader's address; trusting X-Forwarded-For here would let anyone dodge the limit.
    return request.client.host if request.client else "unknown"


def over_rate(rt: Runtime, client: str) -> int | None:
    """Count one form post from ``client`` against NEWSLETTER_SUBSCRIBE_RATE (shared by every
    web process through Redis); whole seconds to wait when over it, else None."""
    count, period_s = parse_rate(rt.settings.subscribe_rate)
    wait_s = over_limit(rt.redis, f"{RATE_KEY}:{client}", count, period_s)
    return None if wait_s is None else max(1, math.ceil(wait_s))


def _subscriber(rt: Runtime, purpose: str, token: str) -> tuple[Subscriber | None, str]:
    """The subscriber a signed link names, or None and why not."""
    try:
        handle = read_link(rt.secret_key, purpose, token)
    except InvalidToken as exc:
        return None, "expired" if "expired" in str(exc) else "invalid"
    with rt.session() as session:
        subscriber = subscribers.get_subscriber_by_token(session, handle)
    return subscriber, "ok" if subscriber else "invalid"


# --- subscribe ------------------------------------------------------------------------------


def _categories(rt: Runtime, extra: Sequence[str] = ()) -> list[str]:
    with rt.session() as session:
        known = catalog.list_categories(session)
    folded = {c.casefold() for c in known}
    return known + [c for c in extra if c.casefold() not in folded]


def _form(
    request: Request,
    rt: Runtime,
    embed: bool,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    response = page(
        request,
        "subscribe.html",
        status_code,
        embed=embed,
        action="/subscribe",
        categories=_categories(rt),
        values=values,
        errors=errors or {},
    )
    return _with(response, FORM_HEADERS)


def _check_your_inbox(request: Request, email: str, embed: bool) -> Response:
    """The one answer to every accepted post, whatever we know about the address."""
    response = page(
        request,
        "message.html",
        200,
        embed=embed,
        heading="Check your inbox",
        text=f"If {email} can receive our mail, a message with a confirmation link is on its "
        "way. Press the button it leads to, and your subscription starts.",
        more="Nothing after a few minutes? Look in your spam folder, or send the form again "
        "in ten minutes.",
    )
    return _with(response, FORM_HEADERS)


@router.get("/subscribe", response_class=HTMLResponse)
def subscribe_form(request: Request, rt: RT, embed: str | None = None) -> Response:
    """The subscribe form; ``?embed=1`` serves it without page chrome, for an iframe."""
    source = request.headers.get("referer", "")[: readers.CONSENT_SOURCE_MAX]
    return _form(
        request,
        rt,
        _truthy(embed),
        {"email": "", "name": "", "categories": [], "cadence": "weekly", "source": source},
    )


@router.post("/subscribe", response_class=HTMLResponse)
def subscribe(
    request: Request,
    rt: RT,
    email: Field = None,
    name: Field = None,
    categories: Annotated[list[str] | None, Form()] = None,
    cadence: Field = None,
    website: Field = None,
    source: Field = None,
    embed: Field = None,
) -> Response:
    """Start a subscription: validate, record consent, mail a confirmation link."""
    framed = _truthy(embed)
    retry_after_s = over_rate(rt, _client_ip(request))
    if retry_after_s is not None:
        response = page(
            request,
            "message.html",
            429,
            embed=framed,
            heading="Too many attempts",
            text="This network has sent the form many times in a short while. "
            "Please wait a minute and try again.",
        )
        response.headers["Retry-After"] = str(retry_after_s)
        return _with(response, FORM_HEADERS)
    typed = (email or "").strip()[:254]
    if website:
        # The honeypot: people never see this field, form-filling bots do. Same answer.
        return _check_your_inbox(request, typed, framed)
    referer = request.headers.get("referer")
    values = {
        "email": typed,
        "name": (name or "")[:200],
        "categories": categories or [],
        "cadence": cadence or "weekly",
        "source": source or referer or "",
    }
    try:
        wanted = readers.read_subscribe_form(
            email,
            name,
            categories or [],
            cadence,
            _categories(rt),
            rt.settings.check_deliverability,
        )
    except FormErrors as exc:
        return _form(request, rt, framed, values, exc.errors, 422)
    consent = readers.consent_from(
        _client_ip(request), request.headers.get("user-agent"), source or referer
    )
    outcome = readers.subscribe(rt, wanted, consent)
    if outcome.mail and outcome.subscriber_id is not None:
        actors_of(rt).send_transactional(outcome.mail, outcome.subscriber_id)
    return _check_your_inbox(request, wanted.email, framed)


# --- confirm --------------------------------------------------------------------------------


def _bad_link(request: Request, why: str) -> Response:
    if why == "expired":
        return _message(
            request,
            "This link has expired",
            "Confirmation links work for 7 days. Subscribe again to get a new one.",
            400,
            link_url="/subscribe",
            link_text="Subscribe again",
        )
    return _message(
        request,
        "Link not valid",
        "This link is not valid. Use the link in your latest mail from us.",
        400,
    )


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(token: str, request: Request, rt: RT) -> Response:
    """A page with one button; opening the link alone confirms nothing."""
    subscriber, why = _subscriber(rt, "confirm", token)
    if subscriber is None:
        return _bad_link(request, why)
    if subscriber.status == SubscriberStatus.active.value:
        return _already_confirmed(request, rt, subscriber)
    if subscriber.status != SubscriberStatus.pending.value:
        return _no_longer_valid(request)
    response = page(request, "confirm.html", email=subscriber.email, action=f"/confirm/{token}")
    return _with(response, PRIVATE_HEADERS)


def _already_confirmed(request: Request, rt: Runtime, subscriber: Subscriber) -> Response:
    return _message(
        request,
        "Already confirmed",
        f"{subscriber.email} is already subscribed. There is nothing more to do.",
        link_url=_preferences_path(rt, subscriber),
        link_text="Change what you get",
    )


def _preferences_path(rt: Runtime, subscriber: Subscriber) -> str:
    return f"/preferences/{sign_link(rt.secret_key, 'preferences', subscriber.token)}"


def _unsubscribe_path(rt: Runtime, subscriber: Subscriber) -> str:
    return f"/unsubscribe/{sign_link(rt.secret_key, 'unsubscribe', subscriber.token)}"


def _no_longer_valid(request: Request) -> Response:
    return _message(
        request,
        "Link no longer valid",
        "This confirmation link is no longer valid. To subscribe, send the form "
        "again: we will mail you a new link.",
        400,
        link_url="/subscribe",
        link_text="Subscribe again",
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(token: str, request: Request, rt: RT) -> Response:
    """Confirm a subscription (pending → active); replaying the link changes nothing."""
    subscriber, why = _subscriber(rt, "confirm", token)
    if subscriber is None:
        return _bad_link(request, why)
    result = readers.confirm(rt, subscriber)
    if result == "already":
        return _already_confirmed(request, rt, subscriber)
    if result != "confirmed":
        return _no_longer_valid(request)
    # Only the request that moved pending → active gets here: one welcome per confirmation.
    assert subscriber.id is not None
    actors_of(rt).send_transactional(readers.MAIL_WELCOME, subscriber.id)
    return _message(
        request,
        "You are subscribed",
        f"Thank you: {subscriber.email} now gets Weekly AI Tool Verdicts. A welcome mail with "
        "what to expect is on its way; every mail has a link to change what you get or to leave.",
        link_url=_preferences_path(rt, subscriber),
        link_text="Choose what you get",
    )


# --- unsubscribe ----------------------------------------------------------------------------


@router.api_route("/unsubscribe/preview", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/preferences/preview", methods=["GET", "POST"], include_in_schema=False)
def test_mail_link(request: Request) -> Response:
    """Where the personal links of a test send and a preview lead: nobody is unsubscribed."""
    return _message(
        request,
        "This was a test mail",
        "The link you followed is in a test send or a preview of Weekly AI Tool Verdicts. "
        "It unsubscribes nobody and changes nothing: in a real mail, this link leads the "
        "reader to their own page.",
        link_url="/editions",
        link_text="Read past editions",
    )


# --- preferences and privacy ----------------------------------------------------------------


def _preferences(
    request: Request,
    rt: Runtime,
    token: str,
    subscriber: Subscriber,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> Response:
    stored = split_categories(subscriber.categories)
    values = values or {
        "name": subscriber.name,
        "categories": stored,
        "cadence": subscriber.cadence,
    }
    response = page(
        request,
        "preferences.html",
        status_code,
        email=subscriber.email,
        status=subscriber.status,
        action=f"/preferences/{token}",
        unsubscribe_action=_unsubscribe_path(rt, subscriber),
        categories=_categories(rt, stored),
        values=values,
        errors=errors or {},
        saved=saved,
    )
    return _with(response, PRIVATE_HEADERS)


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences_page(token: str, request: Request, rt: RT) -> Response:
    """Categories, cadence and name; unsubscribe; export or delete one's data."""
    subscriber, why = _subscriber(rt, "preferences", token)
    if subscriber is None:
        return _bad_link(request, why)
    return _preferences(request, rt, token, subscriber)


@router.post("/preferences/{token}", response_class=HTMLResponse)
def save_preferences(
    token: str,
    request: Request,
    rt: RT,
    name: Field = None,
    categories: Annotated[list[str] | None, Form()] = None,
    cadence: Field = None,
) -> Response:
    """Save categories, cadence and name; the next mail follows them."""
    subscriber, why = _subscriber(rt, "preferences", token)
    if subscriber is None or subscriber.id is None:
        return _bad_link(request, why)
    choices, errors = readers.read_choices(name, categories or [], cadence, _categories(rt))
    if choices is None:
        values = {
            "name": (name or "")[:200],
            "categories": categories or [],
            "cadence": cadence or subscriber.cadence,
        }
        return _preferences(request, rt, token, subscriber, values, errors, status_code=422)
    readers.save_preferences(rt, subscriber.id, choices)
    subscriber, _why = _subscriber(rt, "preferences", token)
    assert subscriber is not None
    return _preferences(request, rt, token, subscriber, saved=True)


@router.post("/preferences/{token}/export")
def export(token: str, request: Request, rt: RT) -> Response:
    """Everything stored about the subscriber, as a JSON download."""
    subscriber, why = _subscriber(rt, "preferences", token)
    if subscriber is None:
        return _bad_link(request, why)
    with rt.session() as session:
        data = privacy.export_data(session, subscriber)
    response = JSONResponse(
        data, headers={"Content-Disposition": f'attachment; filename="{EXPORT_FILENAME}"'}
    )
    return _with(response, PRIVATE_HEADERS)


@router.post("/preferences/{token}/delete", response_class=HTMLResponse)
def delete(token: str, request: Request, rt: RT, confirm: Field = None) -> Response:
    """Erase the subscriber's personal data (the box must be ticked: it cannot be undone)."""
    subscriber, why = _subscriber(rt, "preferences", token)
    if subscriber is None:
        return _bad_link(request, why)
    if not _truthy(confirm):
        return _preferences(
            request,
            rt,
            token,
            subscriber,
            errors={"confirm_delete": "Tick the box to confirm that your data should be deleted"},
            status_code=422,
        )
    with rt.session() as session, session.begin():
        current = subscribers.get_subscriber_by_token(session, subscriber.token)
        if current is not None:
            privacy.erase(session, rt.secret_key, current)
    return _message(
        request,
        "Your data is deleted",
        "We deleted your address, your choices and the record of every mail we "
        "sent you. You get no more mail from us.",
    )
