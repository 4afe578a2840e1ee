"""What readers do: subscribe (double opt-in), confirm, change preferences, export, erase.

The web routes in ``worker.web.readers`` and the operator CLI call these; they take the
Runtime and never read settings from anywhere else. Its queries live in
``worker.subscribers.queries``; exporting and erasing a reader's data in
``worker.subscribers.privacy``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from worker.errors import Conflict, InputError, NotFound
from worker.models import (
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from worker.runtime import Runtime
from worker.subscribers import queries as subscribers
from worker.subscribers.queries import Consent
from worker.subscribers.rules import (
    NEVER_AGAIN,
    clean_cadence,
    clean_categories,
    clean_email,
    clean_name,
    join_categories,
    operator_may_move,
    split_categories,
)

CONFIRMATION_EVERY_S = 600
"""At most one confirmation (or already-subscribed) mail per address in this many seconds."""

LOCAL_PART_MAX = 64
CATEGORIES_MAX = 30
CATEGORIES_CHARS_MAX = 2000  # the width of Subscriber.categories
CONSENT_IP_MAX = 64
CONSENT_SOURCE_MAX = 1000
CONSENT_USER_AGENT_MAX = 500


MAIL_CONFIRM = "confirm"
MAIL_ALREADY = "already_subscribed"
MAIL_WELCOME = "welcome"


# --- input ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choices:
    """A validated name, categories and cadence."""

    name: str
    categories: tuple[str, ...]
    cadence: str

    @property
    def stored_categories(self) -> str:
        """The categories as the store keeps them."""
        return join_categories(self.categories)


@dataclass(frozen=True)
class SubscribeRequest:
    """A validated subscribe form."""

    email: str
    choices: Choices


class FormErrors(InputError):
    """Every field at fault in a form, as ``{field: message for a reader}``."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _reason(exc: InputError, field_name: str) -> str:
    text = str(exc).removeprefix(f"{field_name}: ")
    return text[:1].upper() + text[1:]


def _printable(text: str | None, limit: int) -> str | None:
    """Consent facts come from headers anyone can forge: keep them printable and bounded."""
    if not text:
        return None
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    return kept.strip()[:limit] or None


def consent_from(ip: str | None, user_agent: str | None, source: str | None) -> Consent:
    """The consent record of a form post, sanitised for storage."""
    return Consent(
        ip=_printable(ip, CONSENT_IP_MAX),
        user_agent=_printable(user_agent, CONSENT_USER_AGENT_MAX),
        source=_printable(source, CONSENT_SOURCE_MAX),
    )


def read_choices(
    name: str | None, categories: list[str], cadence: str | None, known: list[str]
) -> tuple[Choices | None, dict[str, str]]:
    """Validate name, categories and cadence; known categories take their stored spelling."""
    errors: dict[str, str] = {}
    clean: Choices | None = None
    try:
        name_ok = clean_name(name)
    except InputError as exc:
        errors["name"] = _reason(exc, "name")
    try:
        canonical = {c.casefold(): c for c in known}
        picked = tuple(canonical.get(c.casefold(), c) for c in clean_categories(categories))
        if any(";" in c for c in picked):
            raise InputError("categories: a category name cannot contain ';'")
        if len(picked) > CATEGORIES_MAX or len(join_categories(picked)) > CATEGORIES_CHARS_MAX:
            raise InputError(f"categories: too many (at most {CATEGORIES_MAX})")
    except InputError as exc:
        errors["categories"] = _reason(exc, "categories")
    try:
        cadence_ok = clean_cadence(cadence)
    except InputError:
        errors["cadence"] = "Choose the weekly digest or instant alerts"
    if not errors:
        clean = Choices(name=name_ok, categories=picked, cadence=cadence_ok)
    return clean, errors


def read_subscribe_form(
    email: str | None,
    name: str | None,
    categories: list[str],
    cadence: str | None,
    known: list[str],
    check_deliverability: bool = False,
) -> SubscribeRequest:
    """Validate a subscribe form; FormErrors names every field at fault."""
    errors: dict[str, str] = {}
    address = ""
    try:
        address = clean_email(email or "", check_deliverability)
        if len(address.rpartition("@")[0]) > LOCAL_PART_MAX:
            # RFC 5321 §4.5.3.1.1; email-validator checks it only in strict mode, and servers
            # refuse such addresses, so taking one would only buy a bounce.
            raise InputError(
                f"email: the part before the @-sign is too long "
                f"({LOCAL_PART_MAX} characters at most)"
            )
    except InputError as exc:
        errors["email"] = _reason(exc, "email")
    choices, choice_errors = read_choices(name, categories, cadence, known)
    errors.update(choice_errors)
    if errors or choices is None:
        raise FormErrors(errors)
    return SubscribeRequest(email=address, choices=choices)


# --- subscribing and confirming -------------------------------------------------------------


@dataclass(frozen=True)
class SubscribeOutcome:
    """What a subscribe post did; the reader sees the same page whatever it is."""

    subscriber_id: int | None
    mail: str | None
    """``confirm``, ``already_subscribed`` or None (no mail: suppressed, or sent recently)."""


def subscribe(
    rt: Runtime, wanted: SubscribeRequest, consent: Consent, now: datetime | None = None
) -> SubscribeOutcome:
    """Record a subscribe request and say which mail (if any) the address should get."""
    now = now or utcnow()
    for attempt in (1, 2):
        try:
            return _subscribe(rt, wanted, consent, now)
        except IntegrityError:
            # Two posts for a new address raced; the loser finds the winner's row next time.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _subscribe(
    rt: Runtime, wanted: SubscribeRequest, consent: Consent, now: datetime
) -> SubscribeOutcome:
    c = wanted.choices
    with rt.session() as session, session.begin():
        if subscribers.is_suppressed(session, rt.secret_key, wanted.email):
            return SubscribeOutcome(None, None)
        known = subscribers.get_subscriber_by_email(session, wanted.email)
        if known is None:
            subscriber_id = subscribers.create_pending_subscriber(
                session, wanted.email, c.name, c.stored_categories, c.cadence, consent, now
            )
            mail = MAIL_CONFIRM
        elif known.status in NEVER_AGAIN:
            return SubscribeOutcome(known.id, None)
        elif known.status == SubscriberStatus.active.value:
            # Nobody may change an active reader's choices without their link; tell them
            # (by mail, so only the owner learns it) where their preferences are.
            assert known.id is not None
            subscriber_id, mail = known.id, MAIL_ALREADY
        else:
            assert known.id is not None
            subscriber_id, mail = known.id, MAIL_CONFIRM
            subscribers.mark_subscriber_pending(
                session, subscriber_id, c.name, c.stored_categories, c.cadence, consent, now
            )
        if not subscribers.mark_confirmation_due(session, subscriber_id, now, CONFIRMATION_EVERY_S):
            return SubscribeOutcome(subscriber_id, None)
        return SubscribeOutcome(subscriber_id, mail)


def confirm(rt: Runtime, subscriber: Subscriber, now: datetime | None = None) -> str:
    """Confirm a pending subscriber: ``confirmed``, ``already`` (active) or the status it has."""
    assert subscriber.id is not None
    with rt.session() as session, session.begin():
        if subscribers.mark_subscriber_confirmed(session, subscriber.id, now or utcnow()):
            return "confirmed"
        current = subscribers.get_subscriber_by_id(session, subscriber.id)
    if current is None:
        return "gone"
    return "already" if current.status == SubscriberStatus.active.value else current.status


def resubscribe(
    rt: Runtime, subscriber: Subscriber, consent: Consent, now: datetime | None = None
) -> SubscribeOutcome:
    """An unsubscribed reader asks to come back from the unsubscribed page: their last choices,
    and a new confirmation mail, exactly as the form would (the status table decides)."""
    choices = Choices(
        name=subscriber.name,
        categories=tuple(split_categories(subscriber.categories)),
        cadence=subscriber.cadence,
    )
    return subscribe(rt, SubscribeRequest(email=subscriber.email, choices=choices), consent, now)


UNSUBSCRIBE_REASONS = (
    "Too many mails",
    "Not what I expected",
    "Not relevant to me any more",
    "I never signed up",
    "Another reason",
)
"""What the unsubscribed page offers; the reader may add a few words of their own."""
UNSUBSCRIBE_REASON_MAX = 500


def read_unsubscribe_reason(reason: str | None, detail: str | None) -> str:
    """The reason as stored: one of UNSUBSCRIBE_REASONS, then the reader's words, if any."""
    picked = (reason or "").strip()
    if picked and picked not in UNSUBSCRIBE_REASONS:
        raise InputError("Choose one of the reasons listed")
    words = " ".join(
        "".join(
            " " if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in detail or ""
        ).split()
    )
    text = ": ".join(part for part in (picked, words) if part)
    if not text:
        raise InputError("Choose a reason or write a few words")
    if len(text) > UNSUBSCRIBE_REASON_MAX:
        raise InputError(f"Please keep it under {UNSUBSCRIBE_REASON_MAX} characters")
    return text


def save_unsubscribe_reason(rt: Runtime, subscriber_id: int, reason: str) -> None:
    """Keep why an unsubscribed reader left (operators see it)."""
    with rt.session() as session, session.begin():
        subscribers.mark_unsubscribe_reason(session, subscriber_id, reason)


def save_preferences(rt: Runtime, subscriber_id: int, choices: Choices) -> None:
    """Save what a subscriber chose on the preferences page."""
    with rt.session() as session, session.begin():
        subscribers.mark_subscriber_preferences(
            session, subscriber_id, choices.name, choices.stored_categories, choices.cadence
        )


# --- operators ------------------------------------------------------------------------------


def unsubscribe(rt: Runtime, subscriber_id: int) -> bool:
    """Unsubscribe a reader (an operator's action); False when their status does not allow it."""
    with rt.session() as session, session.begin():
        return subscribers.mark_subscriber_status(
            session, subscriber_id, SubscriberStatus.unsubscribed
        )


def resubscribe_by_id(
    rt: Runtime, subscriber_id: int, consent: Consent, now: datetime | None = None
) -> SubscribeOutcome:
    """An operator asks a reader to come back: as ``resubscribe``, pending again with a new
    confirmation mail to send (``outcome.mail``); nobody becomes active without confirming."""
    with rt.session() as session:
        found = subscribers.get_subscriber_by_id(session, subscriber_id)
    if found is None:
        raise NotFound(f"no subscriber #{subscriber_id}")
    return resubscribe(rt, found, consent, now)


@dataclass(frozen=True)
class Changes:
    """What an operator changes about a subscriber; None: unchanged."""

    name: str | None = None
    categories: list[str] | None = None
    cadence: str | None = None
    status: str | None = None


def change_subscriber(
    rt: Runtime, email: str, changes: Changes, known: list[str], now: datetime | None = None
) -> tuple[Subscriber, str | None]:
    """Apply an operator's changes; returns the subscriber and the mail it is owed (a new
    confirmation when set back to ``pending``). FormErrors names bad fields; Conflict when the
    status table refuses the move."""
    now = now or utcnow()
    mail = None
    with rt.session() as session, session.begin():
        subscriber = subscribers.get_subscriber_by_email(session, email)
        if subscriber is None:
            raise NotFound(f"no subscriber {email}")
        assert subscriber.id is not None
        choices, errors = read_choices(
            subscriber.name if changes.name is None else changes.name,
            split_categories(subscriber.categories)
            if changes.categories is None
            else changes.categories,
            changes.cadence or subscriber.cadence,
            known,
        )
        if errors or choices is None:
            raise FormErrors(errors)
        wanted = changes.status
        if wanted is not None and not operator_may_move(subscriber.status, wanted):
            hint = " (set pending: a new confirmation goes out)" if wanted == "active" else ""
            raise Conflict(
                f"{subscriber.email} is {subscriber.status}: it cannot become {wanted}{hint}"
            )
        subscribers.mark_subscriber_preferences(
            session, subscriber.id, choices.name, choices.stored_categories, choices.cadence
        )
        if wanted is not None and wanted != subscriber.status:
            subscribers.mark_subscriber_status(session, subscriber.id, SubscriberStatus(wanted))
        if wanted == SubscriberStatus.pending.value and subscribers.mark_confirmation_due(
            session, subscriber.id, now, CONFIRMATION_EVERY_S
        ):
            mail = MAIL_CONFIRM
        session.flush()
        session.refresh(subscriber)
    return subscriber, mail
