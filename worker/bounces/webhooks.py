"""One entry point for provider webhooks: verify on the raw request, then parse, per provider.

Each provider is a row of ``PROVIDERS``: a function that checks its secret is configured,
verifies the request the provider's way (signature, basic auth, replay window) and only then
reads the body into ``ProviderEvent``s. The HTTP route maps ``WebhookAuthError`` to 401 and
``WebhookPayloadError`` to 400; recording the events is the caller's next step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from worker.bounces import ProviderEvent, mailgun, postmark, sendgrid, ses
from worker.bounces.ses import CertificateStore, SubscriptionConfirmation
from worker.errors import NotFound, WebhookAuthError, WebhookPayloadError

DEFAULT_REPLAY_WINDOW_S = 300.0

# Process-wide defaults: certificates are worth keeping between requests, and an in-process
# token memory is better than none when the caller has no shared store to offer.
_default_certificates = CertificateStore()
_default_seen_tokens = mailgun.RecentTokens(keep_s=2 * DEFAULT_REPLAY_WINDOW_S)


def default_certificates() -> CertificateStore:
    """The process's store of SNS certificates fetched from SNS hosts."""
    return _default_certificates


@dataclass(frozen=True)
class WebhookSecrets:
    """What each provider's verification needs; a provider left unset refuses every request."""

    ses_topic_arns: tuple[str, ...] = ()
    sendgrid_public_key: str | None = None
    postmark_username: str | None = None
    postmark_password: str | None = None
    mailgun_signing_key: str | None = None


@dataclass(frozen=True)
class WebhookResult:
    """A verified webhook: the events to record, or (SNS) a subscription the caller must confirm."""

    provider: str
    events: tuple[ProviderEvent, ...] = ()
    confirmation: SubscriptionConfirmation | None = None


@dataclass(frozen=True)
class _Request:
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes
    secrets: WebhookSecrets
    now_s: float
    certificates: CertificateStore
    seen_token: mailgun.SeenToken
    replay_window_s: float


def handle(
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: WebhookSecrets,
    now_s: float,
    *,
    certificates: CertificateStore | None = None,
    seen_token: mailgun.SeenToken | None = None,
    replay_window_s: float = DEFAULT_REPLAY_WINDOW_S,
) -> WebhookResult:
    """Verify and parse one webhook request for ``provider`` ("ses", "sendgrid", ...)."""
    run = PROVIDERS.get(provider)
    if run is None:
        raise NotFound(f"unknown webhook provider {provider!r}")
    request = _Request(
        headers={name.lower(): value for name, value in headers.items()},
        body=body,
        secrets=secrets,
        now_s=now_s,
        certificates=certificates or _default_certificates,
        seen_token=seen_token or _default_seen_tokens,
        replay_window_s=replay_window_s,
    )
    return run(request)


def _ses(request: _Request) -> WebhookResult:
    topic_arns = request.secrets.ses_topic_arns
    if not topic_arns:
        raise WebhookAuthError("ses: webhook not configured (no allowed SNS topic ARNs)")
    envelope = ses.load_envelope(request.body)
    header_type = request.headers.get("x-amz-sns-message-type")
    if header_type is not None and header_type != envelope["Type"]:
        raise WebhookPayloadError(
            f"ses: header says {header_type!r} but the body is a {envelope['Type']!r}"
        )
    ses.verify(envelope, request.certificates, request.now_s, topic_arns)
    result = ses.parse(envelope)
    return WebhookResult("ses", result.events, result.confirmation)


def _sendgrid(request: _Request) -> WebhookResult:
    public_key = request.secrets.sendgrid_public_key
    if not public_key:
        raise WebhookAuthError("sendgrid: webhook not configured (no verification key)")
    sendgrid.verify(
        request.body,
        request.headers.get(sendgrid.SIGNATURE_HEADER),
        request.headers.get(sendgrid.TIMESTAMP_HEADER),
        public_key,
        request.now_s,
        request.replay_window_s,
    )
    return WebhookResult("sendgrid", tuple(sendgrid.parse(request.body)))


def _postmark(request: _Request) -> WebhookResult:
    username, password = request.secrets.postmark_username, request.secrets.postmark_password
    if not username or not password:
        raise WebhookAuthError("postmark: webhook not configured (no basic-auth credentials)")
    postmark.verify(request.headers.get("authorization"), username, password)
    return WebhookResult("postmark", tuple(postmark.parse(request.body)))


def _mailgun(request: _Request) -> WebhookResult:
    signing_key = request.secrets.mailgun_signing_key
    if not signing_key:
        raise WebhookAuthError("mailgun: webhook not configured (no signing key)")
    payload = mailgun.load(request.body)
    mailgun.verify(payload, signing_key, request.now_s, request.seen_token, request.replay_window_s)
    return WebhookResult("mailgun", tuple(mailgun.parse(payload)))


PROVIDERS: Mapping[str, Callable[[_Request], WebhookResult]] = {
    "ses": _ses,
    "sendgrid": _sendgrid,
    "postmark": _postmark,
    "mailgun": _mailgun,
}
