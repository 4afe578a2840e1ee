"""Amazon SES notifications delivered by SNS: read the SES event inside a verified envelope.

Verifying the SNS envelope (signature, certificates, replay window) is ``worker.bounces.sns``;
its names are re-exported here, where the webhook intake looks for them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.bounces import Kind, ProviderEvent, iso_time, text_or_none
from worker.bounces.classify import refine as refine_by_text
from worker.bounces.sns import (
    CLOCK_SKEW_S,
    MAX_MESSAGE_AGE_S,
    MESSAGE_TYPES,
    CertificateStore,
    Fetch,
    SubscriptionConfirmation,
    confirm_subscription,
    fetch_https,
    is_sns_url,
    load_certificates,
    load_envelope,
    string_to_sign,
    verify,
)
from worker.errors import WebhookPayloadError

__all__ = [
    "CLOCK_SKEW_S",
    "MAX_MESSAGE_AGE_S",
    "MESSAGE_TYPES",
    "CertificateStore",
    "Fetch",
    "SnsResult",
    "SubscriptionConfirmation",
    "confirm_subscription",
    "fetch_https",
    "is_sns_url",
    "load_certificates",
    "load_envelope",
    "parse",
    "parse_notification",
    "string_to_sign",
    "verify",
]

log = logging.getLogger(__name__)

PROVIDER = "ses"

# (bounceType, bounceSubType) -> (kind, reason, refine): refine lets the text classifier name
# a more precise reason when SES's own subtype is a catch-all.
BOUNCE_TYPES: dict[tuple[str, str], tuple[Kind, str, bool]] = {
    ("Undetermined", "Undetermined"): ("soft", "undefined", True),
    ("Permanent", "General"): ("soft", "onhold", True),
    ("Permanent", "NoEmail"): ("hard", "userunknown", False),
    # SES suppresses an address after it bounced as unknown (or we listed it as such).
    ("Permanent", "Suppressed"): ("hard", "userunknown", False),
    ("Permanent", "OnAccountSuppressionList"): ("hard", "userunknown", False),
    ("Transient", "General"): ("soft", "undefined", True),
    ("Transient", "MailboxFull"): ("soft", "mailboxfull", False),
    ("Transient", "MessageTooLarge"): ("soft", "mesgtoobig", False),
    # Content refusals are about our message, not the reader's address.
    ("Transient", "ContentRejected"): ("sender", "policyviolation", False),
    ("Transient", "AttachmentRejected"): ("sender", "policyviolation", False),
}
_BOUNCE_TYPE_FALLBACK: dict[str, tuple[Kind, str, bool]] = {
    "Permanent": ("soft", "onhold", True),
    "Transient": ("soft", "undefined", True),
}

# ARF feedback types (RFC 5965) -> (kind, reason), as the DSN parser reads them.
COMPLAINT_TYPES: dict[str, tuple[Kind, str]] = {
    "abuse": ("complaint", "feedback"),
    "fraud": ("complaint", "feedback"),
    "virus": ("complaint", "feedback"),
    "other": ("complaint", "feedback"),
    # An authentication-failure report is about our DKIM/SPF, not a reader marking spam.
    "auth-failure": ("sender", "authfailure"),
    "not-spam": ("ignored", "not_spam"),
}

# SES event types that say nothing about a dead address or a complaint.
IGNORED_EVENT_TYPES = frozenset(
    {
        "Delivery",
        "Send",
        "Open",
        "Click",
        "Reject",
        "DeliveryDelay",
        "Rendering Failure",
        "Subscription",
        "Received",
    }
)


@dataclass(frozen=True)
class SnsResult:
    """What one SNS message asks of us: events to record, or a subscription to confirm."""

    events: tuple[ProviderEvent, ...] = ()
    confirmation: SubscriptionConfirmation | None = None


def parse(envelope: Mapping[str, Any]) -> SnsResult:
    """Turn a verified SNS envelope into events, or into a subscription to confirm."""
    message_type = envelope["Type"]
    if message_type == "SubscriptionConfirmation":
        url = envelope["SubscribeURL"]
        if not is_sns_url(url, pem=False):
            raise WebhookPayloadError(f"ses: SubscribeURL is not an SNS host: {url!r}")
        return SnsResult(
            confirmation=SubscriptionConfirmation(envelope["TopicArn"], url, envelope["Token"])
        )
    if message_type == "UnsubscribeConfirmation":
        # Bounces stop arriving after this; an operator should know.
        log.warning("SNS subscription to %s was removed", envelope["TopicArn"])
        return SnsResult()
    return SnsResult(events=tuple(parse_notification(envelope)))


def parse_notification(envelope: Mapping[str, Any]) -> list[ProviderEvent]:
    """Read the SES event inside an SNS Notification: one ProviderEvent per recipient."""
    try:
        ses_event = json.loads(envelope["Message"])
    except ValueError as err:
        # SES posts this plain-text greeting once when a topic is set up for event publishing.
        if envelope["Message"].startswith("Successfully validated SNS topic"):
            return []
        raise WebhookPayloadError("ses: SNS Message is not JSON") from err
    if not isinstance(ses_event, dict):
        raise WebhookPayloadError("ses: SNS Message is not a JSON object")
    event_type = ses_event.get("eventType") or ses_event.get("notificationType")
    if event_type == "Bounce":
        return _bounce_events(envelope, ses_event)
    if event_type == "Complaint":
        return _complaint_events(envelope, ses_event)
    if event_type in IGNORED_EVENT_TYPES:
        return []
    log.info("ignoring unknown SES event type %r", event_type)
    return []


def bounce_class(bounce_type: str | None, sub_type: str | None) -> tuple[Kind, str, bool]:
    """Map SES bounceType/bounceSubType to (kind, reason, whether the text may refine it)."""
    found = BOUNCE_TYPES.get((bounce_type or "", sub_type or ""))
    if found is not None:
        return found
    return _BOUNCE_TYPE_FALLBACK.get(bounce_type or "", ("soft", "undefined", True))


def _bounce_events(envelope: Mapping[str, Any], ses_event: dict[str, Any]) -> list[ProviderEvent]:
    bounce = _object(ses_event, "bounce")
    kind, reason, refine = bounce_class(bounce.get("bounceType"), bounce.get("bounceSubType"))
    occurred_at = iso_time(bounce.get("timestamp")) or iso_time(envelope.get("Timestamp"))
    message_id = _message_id(ses_event)
    events = []
    for recipient in _recipients(bounce, "bouncedRecipients"):
        status = text_or_none(recipient.get("status"))
        diagnostic = text_or_none(recipient.get("diagnosticCode")) or ""
        found_kind, found_reason = kind, reason
        if refine:
            found_kind, found_reason = refine_by_text(kind, reason, status, diagnostic)
        events.append(
            _event(
                envelope,
                recipient["emailAddress"],
                found_kind,
                found_reason,
                status,
                diagnostic,
                occurred_at,
                message_id,
                ses_event,
            )
        )
    return events


def _complaint_events(
    envelope: Mapping[str, Any], ses_event: dict[str, Any]
) -> list[ProviderEvent]:
    complaint = _object(ses_event, "complaint")
    kind: Kind
    if complaint.get("complaintSubType") == "OnAccountSuppressionList":
        # SES did not send: the address is on the account's list after an earlier complaint.
        kind, reason = "complaint", "feedback"
    else:
        feedback = text_or_none(complaint.get("complaintFeedbackType"))
        kind, reason = COMPLAINT_TYPES.get(feedback or "abuse", ("complaint", "feedback"))
    occurred_at = iso_time(complaint.get("timestamp")) or iso_time(envelope.get("Timestamp"))
    diagnostic = text_or_none(complaint.get("userAgent")) or ""
    message_id = _message_id(ses_event)
    return [
        _event(
            envelope,
            recipient["emailAddress"],
            kind,
            reason,
            None,
            diagnostic,
            occurred_at,
            message_id,
            ses_event,
        )
        for recipient in _recipients(complaint, "complainedRecipients")
    ]


def _event(
    envelope: Mapping[str, Any],
    recipient: str,
    kind: Kind,
    reason: str,
    status: str | None,
    diagnostic: str,
    occurred_at: datetime | None,
    message_id: str | None,
    raw: dict[str, Any],
) -> ProviderEvent:
    # One SNS message can name several recipients; SNS keeps its MessageId across retries.
    return ProviderEvent(
        provider=PROVIDER,
        event_id=f"{envelope['MessageId']}:{recipient}",
        recipient=recipient,
        kind=kind,
        reason=reason,
        status=status,
        diagnostic=diagnostic,
        occurred_at=occurred_at,
        message_id=message_id,
        raw=raw,
    )


def _object(ses_event: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = ses_event.get(name)
    if not isinstance(value, dict):
        raise WebhookPayloadError(f"ses: {name} is missing or not an object")
    return value


def _recipients(section: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    recipients = section.get(name)
    if not isinstance(recipients, list) or not recipients:
        raise WebhookPayloadError(f"ses: {name} is missing or empty")
    for recipient in recipients:
        if not isinstance(recipient, dict) or not isinstance(recipient.get("emailAddress"), str):
            raise WebhookPayloadError(f"ses: an entry of {name} has no emailAddress")
    return recipients


def _message_id(ses_event: Mapping[str, Any]) -> str | None:
    """Our own Message-ID when SES echoes the headers, else the SES message id."""
    mail = ses_event.get("mail")
    if not isinstance(mail, dict):
        return None
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return _angle(common["messageId"])
    for header in mail.get("headers") or ():
        if (
            isinstance(header, dict)
            and str(header.get("name", "")).lower() == "message-id"
            and isinstance(header.get("value"), str)
        ):
            return _angle(header["value"])
    return text_or_none(mail.get("messageId"))


def _angle(message_id: str) -> str:
    message_id = message_id.strip()
    if "@" in message_id and not message_id.startswith("<"):
        return f"<{message_id}>"
    return message_id
