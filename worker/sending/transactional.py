"""Transactional mail: the answer to something a reader just did (confirm your address, you
are already subscribed, welcome once confirmed). Load, render, build, send, like a delivery,
but on a queue of its own so that it never waits behind an edition, and without
List-Unsubscribe: it is not a list mail.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from worker.bounces.policy import refusal_facts
from worker.bounces.record import policy_of, record_bounce
from worker.errors import InputError, PermanentFailure, RecipientRefused
from worker.models import Cadence, Subscriber, SubscriberStatus, utcnow
from worker.runtime import Runtime
from worker.sending.delivery import links_for
from worker.sending.digest import join_words
from worker.sending.message import Identity
from worker.sending.render import RenderedMail
from worker.sending.tokens import CONFIRM_MAX_AGE_S, sign_link
from worker.sending.weekly import schedule_words
from worker.subscribers import queries as subscribers
from worker.subscribers import service as readers
from worker.subscribers.rules import split_categories

log = logging.getLogger(__name__)

CONFIRM_DAYS = CONFIRM_MAX_AGE_S // 86400


@dataclass(frozen=True)
class Kind:
    """One kind of transactional mail: its template, subject and who may get it."""

    template: str
    subject: str
    status: str


KINDS = {
    readers.MAIL_CONFIRM: Kind(
        "confirm",
        "Confirm your subscription to Weekly AI Tool Verdicts",
        SubscriberStatus.pending.value,
    ),
    readers.MAIL_ALREADY: Kind(
        "confirm",
        "You are already subscribed to Weekly AI Tool Verdicts",
        SubscriberStatus.active.value,
    ),
    readers.MAIL_WELCOME: Kind(
        "welcome",
        "Welcome to Weekly AI Tool Verdicts",
        SubscriberStatus.active.value,
    ),
}


def confirm_url(rt: Runtime, subscriber_token: str) -> str:
    """The link that confirms a subscription (signed, valid for 7 days)."""
    token = sign_link(rt.secret_key, "confirm", subscriber_token)
    return f"{rt.settings.public_url}/confirm/{token}"


def render(rt: Runtime, kind: str, subscriber: Subscriber) -> tuple[RenderedMail, dict[str, str]]:
    """The compiled mail of ``kind`` for ``subscriber`` and the values of its slots."""
    spec = KINDS[kind]
    unsubscribe_url, preferences_url = links_for(rt, subscriber.token)
    already = kind == readers.MAIL_ALREADY
    context = {
        "title": spec.subject,
        "already": already,
        "preheader": (
            "Your address is already on the list; here is where to change what you get."
            if already
            else "One click to confirm, and the week's verdicts are yours."
        ),
        "confirm_url": confirm_url(rt, subscriber.token),
        "confirm_days": CONFIRM_DAYS,
        "email": subscriber.email,
    }
    if kind == readers.MAIL_WELCOME:
        context.update(welcome_context(rt, subscriber))
    values = {
        "name": subscriber.name,
        "greeting_name": subscriber.name or "there",
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }
    return rt.renderer.render(spec.template, spec.subject, context), values


def welcome_context(rt: Runtime, subscriber: Subscriber) -> dict[str, object]:
    """What the welcome mail says: what comes, when (the weekly schedule), where to change it."""
    settings = rt.settings
    instant = subscriber.cadence == Cadence.instant.value
    return {
        "preheader": (
            "Instant alerts as comparisons are published; change it any time."
            if instant
            else "What comes, when, and how to change it."
        ),
        "instant": instant,
        "categories": join_words(split_categories(subscriber.categories)),
        "schedule": schedule_words(settings.weekly_cron, settings.tz, utcnow()),
        "archive_url": f"{settings.public_url}/editions",
        "postal_address": settings.postal_address or "",
    }


def build(
    mail: RenderedMail,
    values: dict[str, str],
    to_name: str,
    to_email: str,
    identity: Identity,
    message_id: str,
    date: datetime,
    feedback_id: str | None = None,
) -> bytes:
    """A multipart/alternative message, DKIM-signed when the identity has a signer; the
    email package refuses CR/LF in any header."""
    local, _, domain = to_email.rpartition("@")
    message = EmailMessage(policy=policy.SMTP if to_email.isascii() else policy.SMTPUTF8)
    message["From"] = identity.mail_from
    message["To"] = Address(display_name=to_name, username=local, domain=domain)
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    if feedback_id:
        message["Feedback-ID"] = feedback_id
    message.set_content(mail.text.fill(values, escape=False))
    message.add_alternative(mail.html.fill(values, escape=True), subtype="html")
    return identity.sign(message.as_bytes(), date)


def send(rt: Runtime, kind: str, subscriber_id: int) -> str:
    """Send a transactional mail to a subscriber if it still applies; returns what happened.

    A temporary SMTP failure propagates, so the actor retries it with backoff.
    """
    if kind not in KINDS:
        raise InputError(f"unknown transactional mail {kind!r}")
    with rt.session() as session:
        subscriber = subscribers.get_subscriber_by_id(session, subscriber_id)
        suppressed = subscriber is not None and subscribers.is_suppressed(
            session, rt.secret_key, subscriber.email
        )
    if subscriber is None or suppressed:
        return "skipped: no such subscriber"
    if subscriber.status != KINDS[kind].status:
        # Confirmed, unsubscribed or bounced since the job was queued: the mail is moot.
        return f"skipped: subscriber is {subscriber.status}"
    mail, values = render(rt, kind, subscriber)
    message_id = f"<{kind}.{secrets.token_hex(8)}@{rt.settings.mail_domain}>"
    feedback_id = rt.identity.feedback_id(kind, "transactional")
    data = build(
        mail,
        values,
        subscriber.name,
        subscriber.email,
        rt.identity,
        message_id,
        utcnow(),
        feedback_id,
    )
    try:
        rt.transport.send(rt.settings.bounce_address, subscriber.email, data)
    except RecipientRefused as exc:
        facts = refusal_facts(exc.code, exc.text, subscriber.email, subscriber_id=subscriber_id)
        with rt.session() as session, session.begin():
            record_bounce(session, facts, policy_of(rt.settings))
        return f"refused: {exc}"
    except PermanentFailure as exc:
        log.error("%s mail to subscriber %s failed for good: %s", kind, subscriber_id, exc)
        return f"failed: {exc}"
    return "sent"
