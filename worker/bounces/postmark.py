"""Postmark bounce and spam-complaint webhooks, authenticated by HTTP basic auth.

Postmark does not sign its webhooks; the URL carries credentials only we and Postmark know
(``https://user:password@host/webhooks/postmark``) and we compare them in constant time.

Postmark posts one record per request. Only Bounce and SpamComplaint records are about an
address; Delivery, Open, Click, SubscriptionChange and any record type added later are
acknowledged (200) and change nothing. A SubscriptionChange repeats, with fewer details, a
suppression Postmark also reports as a Bounce or SpamComplaint record: recording both would
count one bounce twice. A Bounce record of a type we do not act on (an auto-reply, an
unsubscribe request: some come without an ``Email``) is acknowledged the same way.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from worker.bounces import Kind, ProviderEvent, iso_time, text_or_none
from worker.bounces.classify import find_status_code
from worker.bounces.classify import refine as refine_by_text
from worker.errors import WebhookAuthError, WebhookPayloadError

PROVIDER = "postmark"

# Bounce ``Type`` -> (kind, reason, refine). refine lets the text classifier name a precise
# reason where Postmark's type is a catch-all.
BOUNCE_TYPES: dict[str, tuple[Kind, str, bool]] = {
    "HardBounce": ("soft", "onhold", True),
    "BadEmailAddress": ("hard", "userunknown", False),
    "SoftBounce": ("soft", "undefined", True),
    "Transient": ("soft", "undefined", True),
    "DnsError": ("soft", "networkerror", True),
    "Unknown": ("soft", "undefined", True),
    "SpamComplaint": ("complaint", "feedback", False),
    # A receiving filter judged our message, not the reader's address.
    "SpamNotification": ("sender", "spamdetected", False),
    "VirusNotification": ("sender", "virusdetected", False),
    "Blocked": ("sender", "blocked", True),
    "DMARCPolicy": ("sender", "authfailure", False),
    "Unconfirmed": ("sender", "rejected", False),
    "SMTPApiError": ("sender", "syntaxerror", False),
    "TemplateRenderingFailed": ("sender", "contenterror", False),
    "AutoResponder": ("ignored", "vacation", False),
    "AddressChange": ("ignored", "address_change", False),
    "ChallengeVerification": ("ignored", "challenge", False),
    "OpenRelayTest": ("ignored", "open_relay_test", False),
    "Unsubscribe": ("ignored", "unsubscribed", False),
    "Subscribe": ("ignored", "subscribed", False),
    "ManuallyDeactivated": ("ignored", "manually_deactivated", False),
    "InboundError": ("ignored", "inbound_error", False),
}
_UNKNOWN_TYPE: tuple[Kind, str, bool] = ("soft", "undefined", True)

RELEVANT_RECORD_TYPES = frozenset({"Bounce", "SpamComplaint"})


def verify(authorization: str | None, username: str, password: str) -> None:
    """Check the basic-auth credentials in constant time, or raise WebhookAuthError."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookAuthError("postmark: basic auth is missing")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise WebhookAuthError("postmark: basic auth is not base64") from err
    given_user, colon, given_password = decoded.partition(b":")
    # Compare both halves every time, so timing tells nothing about which one was wrong.
    user_ok = hmac.compare_digest(given_user, username.encode("utf-8"))
    password_ok = hmac.compare_digest(given_password, password.encode("utf-8"))
    if not (colon and user_ok and password_ok):
        raise WebhookAuthError("postmark: wrong basic-auth credentials")


def parse(body: bytes) -> list[ProviderEvent]:
    """Read one verified Postmark record: a bounce or spam complaint we act on, else nothing."""
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise WebhookPayloadError(f"postmark: body is not JSON: {err}") from err
    if not isinstance(record, dict):
        raise WebhookPayloadError("postmark: body is not a JSON object")
    if record.get("RecordType") not in RELEVANT_RECORD_TYPES:
        return []
    kind, reason, refine = bounce_class(record["RecordType"], text_or_none(record.get("Type")))
    if kind == "ignored":
        return []
    return [_event(record, kind, reason, refine)]


def bounce_class(record_type: str, bounce_type: str | None) -> tuple[Kind, str, bool]:
    """Map Postmark RecordType/Type to (kind, reason, whether the text may refine it)."""
    if record_type == "SpamComplaint":
        return BOUNCE_TYPES["SpamComplaint"]
    return BOUNCE_TYPES.get(bounce_type or "", _UNKNOWN_TYPE)


def _event(record: dict[str, Any], kind: Kind, reason: str, refine: bool) -> ProviderEvent:
    record_id, email = record.get("ID"), record.get("Email")
    if isinstance(record_id, bool) or not isinstance(record_id, int | str) or record_id == "":
        raise WebhookPayloadError("postmark: record has no ID")
    if not isinstance(email, str) or not email:
        raise WebhookPayloadError("postmark: record has no Email")
    # Details holds the remote server's words; Description is Postmark's generic gloss.
    diagnostic = (
        text_or_none(record.get("Details")) or text_or_none(record.get("Description")) or ""
    )
    status = find_status_code(diagnostic)
    if refine:
        kind, reason = refine_by_text(kind, reason, status, diagnostic)
    return ProviderEvent(
        provider=PROVIDER,
        event_id=str(record_id),
        recipient=email,
        kind=kind,
        reason=reason,
        status=status,
        diagnostic=diagnostic,
        occurred_at=iso_time(record.get("BouncedAt")),
        message_id=text_or_none(record.get("MessageID")),
        raw=record,
    )
