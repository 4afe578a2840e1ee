"""SendGrid Event Webhook: verify the ECDSA signature over ``timestamp + body``, then read events.

SendGrid posts a JSON array of events. Only bounces, drops, deferrals and spam reports concern
us; delivered, open, click, processed and any type SendGrid adds later are accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from worker.bounces import Kind, ProviderEvent, epoch_time
from worker.bounces.classify import find_status_code
from worker.bounces.classify import refine as refine_by_text
from worker.errors import ConfigError, WebhookAuthError, WebhookPayloadError

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
DEFAULT_REPLAY_WINDOW_S = 300.0

# ``type`` of a bounce event -> (kind, reason). "blocked" is SendGrid's temporary refusal.
BOUNCE_TYPES: dict[str, tuple[Kind, str]] = {
    "bounce": ("soft", "onhold"),
    "blocked": ("soft", "undefined"),
}

# ``bounce_classification`` -> (kind, reason) where it settles the matter. "Mailbox
# Unavailable", "Technical Failure" and "Unclassified" do not: the type and the text decide.
BOUNCE_CLASSIFICATIONS: dict[str, tuple[Kind, str]] = {
    "Invalid Address": ("hard", "userunknown"),
    # These three are about our message, IP or rate, not the reader's address.
    "Content": ("sender", "policyviolation"),
    "Reputation": ("sender", "blocked"),
    "Frequency or Volume Too High": ("sender", "ratelimited"),
}

# ``reason`` of a dropped event -> (kind, reason). SendGrid drops without trying to deliver.
DROP_REASONS: dict[str, tuple[Kind, str]] = {
    "Bounced Address": ("hard", "userunknown"),
    "Invalid": ("hard", "userunknown"),
    "Spam Reporting Address": ("complaint", "feedback"),
    "Unsubscribed Address": ("ignored", "unsubscribed"),
    "Invalid SMTPAPI header": ("sender", "syntaxerror"),
    "Recipient List over Package Quota": ("sender", "ratelimited"),
}
_DROP_FALLBACK: tuple[Kind, str] = ("sender", "policyviolation")

RELEVANT_EVENTS = frozenset({"bounce", "dropped", "deferred", "spamreport"})


@functools.lru_cache(maxsize=8)
def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """Read the verification key as SendGrid shows it (base64 DER), or as PEM; P-256 only."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError) as err:
        raise ConfigError("sendgrid_public_key", "not a base64 DER or PEM public key") from err
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("sendgrid_public_key", "not an ECDSA P-256 public key")
    return key


def verify(
    body: bytes,
    signature_b64: str | None,
    timestamp: str | None,
    public_key: str,
    now_s: float,
    replay_window_s: float = DEFAULT_REPLAY_WINDOW_S,
) -> None:
    """Check the signature over ``timestamp + body`` and the replay window, or raise."""
    key = load_public_key(public_key)
    if not signature_b64 or not timestamp:
        raise WebhookAuthError("sendgrid: signature or timestamp header is missing")
    if not timestamp.isdigit():
        raise WebhookAuthError(f"sendgrid: timestamp {timestamp!r} is not a Unix time")
    if abs(now_s - int(timestamp)) > replay_window_s:
        raise WebhookAuthError(f"sendgrid: timestamp {timestamp} is outside the replay window")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as err:
        raise WebhookAuthError("sendgrid: signature is not base64") from err
    try:
        key.verify(signature, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as err:
        raise WebhookAuthError("sendgrid: signature does not match") from err


def parse(body: bytes) -> list[ProviderEvent]:
    """Read a verified batch: one ProviderEvent per bounce, drop, deferral or spam report."""
    try:
        batch = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise WebhookPayloadError(f"sendgrid: body is not JSON: {err}") from err
    if not isinstance(batch, list):
        raise WebhookPayloadError("sendgrid: body is not a JSON array of events")
    events = []
    for index, item in enumerate(batch):
        if not isinstance(item, dict):
            raise WebhookPayloadError(f"sendgrid: event {index} is not an object")
        if item.get("event") in RELEVANT_EVENTS:
            events.append(_event(index, item))
    return events


def event_class(item: dict[str, Any]) -> tuple[Kind, str, bool]:
    """Map one SendGrid event to (kind, reason, whether the text may refine it)."""
    name = item["event"]
    if name == "spamreport":
        return "complaint", "feedback", False
    if name == "deferred":
        return "soft", "expired", True
    if name == "dropped":
        kind, reason = DROP_REASONS.get(str(item.get("reason", "")), _DROP_FALLBACK)
        if str(item.get("reason", "")).startswith("Spam Content"):
            kind, reason = "sender", "spamdetected"
        return kind, reason, False
    kind, reason = BOUNCE_TYPES.get(str(item.get("type") or "bounce"), BOUNCE_TYPES["bounce"])
    classified = BOUNCE_CLASSIFICATIONS.get(str(item.get("bounce_classification", "")))
    if classified is None:
        return kind, reason, True
    return classified[0], classified[1], False


def _event(index: int, item: dict[str, Any]) -> ProviderEvent:
    email, event_id = item.get("email"), item.get("sg_event_id")
    if not isinstance(email, str) or not email:
        raise WebhookPayloadError(f"sendgrid: event {index} has no email")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookPayloadError(f"sendgrid: event {index} has no sg_event_id")
    kind, reason, refine = event_class(item)
    # Bounces and drops explain themselves in "reason", deferrals in "response".
    diagnostic = str(item.get("response") or item.get("reason") or "")
    status = item.get("status") if isinstance(item.get("status"), str) else None
    status = status or find_status_code(diagnostic)
    if refine:
        kind, reason = refine_by_text(kind, reason, status, diagnostic)
    smtp_id = item.get("smtp-id")
    return ProviderEvent(
        provider=PROVIDER,
        event_id=event_id,
        recipient=email,
        kind=kind,
        reason=reason,
        status=status,
        diagnostic=diagnostic,
        occurred_at=epoch_time(item.get("timestamp")),
        message_id=smtp_id if isinstance(smtp_id, str) and smtp_id else None,
        raw=item,
    )
