"""Amazon SES notifications delivered by SNS: verify the SNS signature, then read the SES event.

SNS signs a canonical string built from a few envelope fields (not the raw body), with an RSA key
whose certificate it names in ``SigningCertURL``. We only trust certificates served over https by
an SNS host, fetch them through an injected callable and keep them in memory; or, when the
deployment names its own (``NEWSLETTER_SNS_CERTIFICATE_FILE``), only those, never fetching. A
signature proves that *some* SNS topic sent the message, not that it is ours: the topic
allow-list does that. SNS gives up on an HTTP/S delivery after an hour at most, so an older
message can only be a replay.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from worker.bounces import Kind, ProviderEvent, iso_time, text_or_none
from worker.bounces.classify import refine as refine_by_text
from worker.errors import WebhookAuthError, WebhookPayloadError

log = logging.getLogger(__name__)

PROVIDER = "ses"
FETCH_TIMEOUT_S = 5.0
MAX_CERTIFICATE_BYTES = 64 * 1024
MAX_MESSAGE_AGE_S = 3600.0
"""SNS's hard limit on the total retry time of an HTTP/S delivery."""
CLOCK_SKEW_S = 300.0
"""How far our clock and AWS's may disagree, either way."""

Fetch = Callable[[str], bytes]

# Anchored, so "sns.us-east-1.amazonaws.com.evil.example" and "evilsns.…" do not pass.
SNS_HOST = re.compile(r"\Asns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?\Z")

MESSAGE_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")

# Field order is fixed by SNS; optional fields are left out when absent, never sent empty.
_CONFIRMATION_FIELDS = (
    "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
)  # fmt: skip
_SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION_FIELDS,
    "UnsubscribeConfirmation": _CONFIRMATION_FIELDS,
}
_OPTIONAL_SIGNED_FIELDS = frozenset({"Subject"})

_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}

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
class SubscriptionConfirmation:
    """SNS asks us to confirm a subscription: GET ``subscribe_url`` (an SNS host) to accept."""

    topic_arn: str
    subscribe_url: str
    token: str


@dataclass(frozen=True)
class SnsResult:
    """What one SNS message asks of us: events to record, or a subscription to confirm."""

    events: tuple[ProviderEvent, ...] = ()
    confirmation: SubscriptionConfirmation | None = None


def fetch_https(url: str) -> bytes:
    """Download a small document over https with a short timeout (the default fetcher)."""
    import httpx  # imported here: parsing and verifying with an injected fetcher need no HTTP

    response = httpx.get(url, timeout=FETCH_TIMEOUT_S, follow_redirects=False)
    response.raise_for_status()
    if len(response.content) > MAX_CERTIFICATE_BYTES:
        raise ValueError(f"{url}: more than {MAX_CERTIFICATE_BYTES} bytes")
    return response.content


def is_sns_url(url: str, *, pem: bool) -> bool:
    """Tell whether ``url`` is https on an SNS host (and, for a certificate, a .pem path)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username is not None or parts.password is not None:
        return False
    if port not in (None, 443) or not SNS_HOST.match(parts.hostname or ""):
        return False
    if pem:
        # Real certificate URLs are a bare path; a query or fragment has no business there.
        return parts.path.endswith(".pem") and not parts.query and not parts.fragment
    return True


class CertificateStore:
    """SNS signing certificates: fetched once per URL through ``fetch``, or a trusted set.

    With ``trusted`` certificates (a deployment's own copy of SNS's), nothing is fetched: a
    message must be signed by one of them, whatever certificate URL it names.
    """

    def __init__(
        self,
        fetch: Fetch = fetch_https,
        max_entries: int = 32,
        trusted: Sequence[x509.Certificate] = (),
    ) -> None:
        self._fetch = fetch
        self._max_entries = max_entries
        self._trusted = tuple(trusted)
        self._certificates: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_pem(cls, pem: bytes) -> CertificateStore:
        """A store that trusts the certificates of a PEM bundle and fetches nothing."""
        return cls(trusted=load_certificates(pem))

    def public_keys(self, url: str, now_s: float) -> list[rsa.RSAPublicKey]:
        """The RSA keys that may have signed a message naming ``url``; refuse untrusted URLs."""
        if not is_sns_url(url, pem=True):
            raise WebhookAuthError(f"ses: signing certificate URL is not an SNS host: {url!r}")
        now = datetime.fromtimestamp(now_s, UTC)
        certificates = self._trusted or (self._certificate(url),)
        valid = [c for c in certificates if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
        if not valid:
            where = "trusted signing certificate" if self._trusted else f"signing certificate {url}"
            raise WebhookAuthError(f"ses: {where} is not valid now")
        keys = [c.public_key() for c in valid]
        rsa_keys = [k for k in keys if isinstance(k, rsa.RSAPublicKey)]
        if not rsa_keys:
            raise WebhookAuthError(f"ses: signing certificate has no RSA key: {url}")
        return rsa_keys

    def _certificate(self, url: str) -> x509.Certificate:
        with self._lock:
            cached = self._certificates.get(url)
        if cached is not None:
            return cached
        try:
            pem = self._fetch(url)
        except Exception as err:  # any transport failure means we cannot vouch for the message
            raise WebhookAuthError(f"ses: cannot fetch signing certificate {url}: {err}") from err
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as err:
            raise WebhookAuthError(f"ses: signing certificate is not PEM: {url}") from err
        with self._lock:
            self._certificates[url] = certificate
            while len(self._certificates) > self._max_entries:
                self._certificates.popitem(last=False)
        return certificate


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle; ValueError when it holds none with an RSA key."""
    certificates = x509.load_pem_x509_certificates(pem)
    if not any(isinstance(c.public_key(), rsa.RSAPublicKey) for c in certificates):
        raise ValueError("no certificate with an RSA key")
    return certificates


def load_envelope(body: bytes) -> dict[str, Any]:
    """Decode the SNS JSON envelope; every field SNS sends is a string."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise WebhookPayloadError(f"ses: body is not JSON: {err}") from err
    if not isinstance(envelope, dict):
        raise WebhookPayloadError("ses: body is not a JSON object")
    message_type = envelope.get("Type")
    if message_type not in MESSAGE_TYPES:
        raise WebhookPayloadError(f"ses: unknown SNS message Type {message_type!r}")
    for name in _SIGNED_FIELDS[message_type]:
        value = envelope.get(name)
        if value is None and name in _OPTIONAL_SIGNED_FIELDS:
            continue
        if not isinstance(value, str):
            raise WebhookPayloadError(f"ses: SNS field {name} is missing or not a string")
    return envelope


def string_to_sign(envelope: Mapping[str, Any]) -> bytes:
    """Build the canonical text SNS signs: ``name\\nvalue\\n`` for each signed field, in order."""
    lines: list[str] = []
    for name in _SIGNED_FIELDS[envelope["Type"]]:
        value = envelope.get(name)
        if value is None and name in _OPTIONAL_SIGNED_FIELDS:
            continue
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def verify(
    envelope: Mapping[str, Any],
    certificates: CertificateStore,
    now_s: float,
    topic_arns: Collection[str] | None = None,
    max_age_s: float = MAX_MESSAGE_AGE_S,
) -> None:
    """Check the topic allow-list, the message's age and the SNS signature, or raise."""
    if topic_arns is not None and envelope["TopicArn"] not in topic_arns:
        raise WebhookAuthError(f"ses: topic {envelope['TopicArn']!r} is not allowed")
    algorithm = _SIGNATURE_HASHES.get(str(envelope.get("SignatureVersion")))
    if algorithm is None:
        raise WebhookAuthError(
            f"ses: unsupported SignatureVersion {envelope.get('SignatureVersion')!r}"
        )
    signature_b64 = envelope.get("Signature")
    cert_url = envelope.get("SigningCertURL")
    if not isinstance(signature_b64, str) or not isinstance(cert_url, str):
        raise WebhookAuthError("ses: Signature or SigningCertURL is missing")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as err:
        raise WebhookAuthError("ses: Signature is not base64") from err
    _check_age(envelope["Timestamp"], now_s, max_age_s)
    signed = string_to_sign(envelope)
    for key in certificates.public_keys(cert_url, now_s):
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            continue
        return
    raise WebhookAuthError("ses: SNS signature does not match")


def _check_age(timestamp: str, now_s: float, max_age_s: float) -> None:
    # Checked before any certificate is fetched: a stale message costs us no request.
    sent = iso_time(timestamp)
    if sent is None:
        raise WebhookAuthError(f"ses: Timestamp {timestamp!r} is not a time")
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    age_s = now_s - sent.timestamp()
    if not -CLOCK_SKEW_S <= age_s <= max_age_s + CLOCK_SKEW_S:
        raise WebhookAuthError(f"ses: Timestamp {timestamp} is outside the replay window")


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
        kind, reason = "complaint", "userunknown"
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


def confirm_subscription(
    confirmation: SubscriptionConfirmation, fetch: Fetch = fetch_https
) -> None:
    """Accept an SNS subscription by visiting its SubscribeURL, which must be an SNS host."""
    if not is_sns_url(confirmation.subscribe_url, pem=False):
        raise WebhookPayloadError(
            f"ses: SubscribeURL is not an SNS host: {confirmation.subscribe_url!r}"
        )
    fetch(confirmation.subscribe_url)
