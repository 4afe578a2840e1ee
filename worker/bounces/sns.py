"""The SNS envelope: verify a message's signature before anything reads it.

SNS signs a canonical string built from a few envelope fields (not the raw body), with an RSA key
whose certificate it names in ``SigningCertURL``. We only trust certificates served over https by
an SNS host, fetch them through an injected callable and keep them in memory; or, when the
deployment names its own (``NEWSLETTER_SNS_CERTIFICATE_FILE``), only those, never fetching. A
signature proves that *some* SNS topic sent the message, not that it is ours: the topic
allow-list does that. SNS gives up on an HTTP/S delivery after an hour at most, so an older
message can only be a replay. Reading the SES event inside is ``worker.bounces.ses``.
"""

from __future__ import annotations

import base64
import binascii
import json
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

from worker.bounces import iso_time
from worker.errors import WebhookAuthError, WebhookPayloadError

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


@dataclass(frozen=True)
class SubscriptionConfirmation:
    """SNS asks us to confirm a subscription: GET ``subscribe_url`` (an SNS host) to accept."""

    topic_arn: str
    subscribe_url: str
    token: str


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


def confirm_subscription(
    confirmation: SubscriptionConfirmation, fetch: Fetch = fetch_https
) -> None:
    """Accept an SNS subscription by visiting its SubscribeURL, which must be an SNS host."""
    if not is_sns_url(confirmation.subscribe_url, pem=False):
        raise WebhookPayloadError(
            f"ses: SubscribeURL is not an SNS host: {confirmation.subscribe_url!r}"
        )
    fetch(confirmation.subscribe_url)
