"""Provider webhooks: each request is verified the provider's way, then read into ProviderEvents.

Signature checks run over vectors the providers signed and published in their own SDKs' tests
(``tests/data/webhooks/sns/``, ``tests/data/webhooks/sendgrid/``; sources in the README there),
each replayed at the time it was signed. Nothing here signs with the code under test: a broken
string-to-sign fails these tests. The SES and SendGrid event payloads in ``tests/data/webhooks/``
follow the shapes each provider documents and are read by the parsers directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.webhook_vectors import (
    CONFIRMATION,
    RUBY_V1,
    SENDGRID,
    SENDGRID_NOW_S,
    SENDGRID_TAMPERS,
    SNS,
    SNS_TAMPERS,
    SNS_VECTORS,
    UNSUBSCRIBED,
    WITH_SUBJECT,
    body_of,
    certificate_of,
    sendgrid_headers,
    sendgrid_vector,
    signed_at_s,
    sns_vector,
)
from worker.bounces import mailgun, postmark, sendgrid, ses
from worker.bounces.webhooks import PROVIDERS, WebhookResult, WebhookSecrets, handle
from worker.errors import NotFound, WebhookAuthError, WebhookPayloadError

DATA = Path(__file__).parent / "data" / "webhooks"
NOW_S = 1795791610.0  # 2026-11-27T15:00:10Z, a few seconds after the sample events
OUR_MESSAGE_ID = "<d42.2026-W48@news.example.com>"
MAILGUN_KEY = "key-test-mailgun-signing"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark-hooks", "s3cret-pass"


def sample(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


@dataclass
class SnsHosts:
    """Serves the published certificates at the URLs their vectors name; records each fetch."""

    served: dict[str, bytes] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url not in self.served:
            raise OSError(f"404 {url}")
        return self.served[url]

    def certificates(self) -> ses.CertificateStore:
        return ses.CertificateStore(fetch=self.fetch)


@pytest.fixture
def sns() -> SnsHosts:
    hosts = SnsHosts()
    for name in SNS_VECTORS:
        hosts.served[sns_vector(name)["SigningCertURL"]] = certificate_of(name)
    return hosts


def stranger_certificate() -> x509.Certificate:
    """A certificate valid in 2026 for a key that signed none of the vectors."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2027, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )


# --- the other providers' secrets -------------------------------------------------------------


def mailgun_body(
    payload: dict[str, Any], token: str, timestamp: int = int(NOW_S), key: str = MAILGUN_KEY
) -> bytes:
    # Mailgun's documented scheme, spelled out here rather than taken from the code under test.
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    block = {"timestamp": str(timestamp), "token": token, "signature": signature}
    return json.dumps(dict(payload, signature=block)).encode("utf-8")


def basic_auth(user: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {credentials}"}


@pytest.fixture
def secrets() -> WebhookSecrets:
    return WebhookSecrets(
        ses_topic_arns=tuple(sorted({sns_vector(n)["TopicArn"] for n in SNS_VECTORS})),
        sendgrid_public_key=SENDGRID["public_key"],
        postmark_username=POSTMARK_USER,
        postmark_password=POSTMARK_PASSWORD,
        mailgun_signing_key=MAILGUN_KEY,
    )


@pytest.fixture
def post(secrets: WebhookSecrets, sns: SnsHosts) -> Callable[..., WebhookResult]:
    """Call the entry point as the HTTP route would, with a fresh certificate cache and tokens."""
    certificates = sns.certificates()
    seen = mailgun.RecentTokens()

    def call(
        provider: str, body: bytes, headers: dict[str, str] | None = None, **overrides: Any
    ) -> WebhookResult:
        return handle(
            provider,
            headers or {},
            body,
            overrides.pop("secrets", secrets),
            overrides.pop("now_s", NOW_S),
            certificates=overrides.pop("certificates", certificates),
            seen_token=overrides.pop("seen_token", seen),
        )

    return call


def post_sns(post: Callable[..., WebhookResult], envelope: dict[str, Any], **kw: Any) -> Any:
    """Post an SNS envelope at the time it was signed (unless the test says otherwise)."""
    kw.setdefault("now_s", signed_at_s(envelope))
    return post("ses", body_of(envelope), **kw)


# --- SNS signatures, over the published vectors -----------------------------------------------


@pytest.mark.parametrize("name", SNS_VECTORS)
def test_every_published_sns_vector_verifies(sns, name):
    envelope = ses.load_envelope((SNS / name).read_bytes())

    ses.verify(envelope, sns.certificates(), signed_at_s(envelope), (envelope["TopicArn"],))

    assert sns.fetched == [envelope["SigningCertURL"]]


def test_the_vectors_cover_both_signature_versions_and_every_message_type():
    seen = {(sns_vector(n)["Type"], sns_vector(n)["SignatureVersion"]) for n in SNS_VECTORS}

    assert {version for _, version in seen} == {"1", "2"}
    assert {kind for kind, _ in seen} == set(ses.MESSAGE_TYPES)


@pytest.mark.parametrize(
    ("name", "change"),
    [pytest.param(name, change, id=what) for what, name, change in SNS_TAMPERS],
)
def test_a_published_sns_vector_changed_in_one_field_is_refused(post, name, change):
    envelope = sns_vector(name)
    change(envelope)

    with pytest.raises(WebhookAuthError, match="signature does not match"):
        post_sns(post, envelope, now_s=signed_at_s(sns_vector(name)))


@pytest.mark.parametrize(
    ("offset_s", "accepted"),
    [
        (-ses.CLOCK_SKEW_S, True),
        (-ses.CLOCK_SKEW_S - 1, False),
        (ses.MAX_MESSAGE_AGE_S + ses.CLOCK_SKEW_S, True),
        (ses.MAX_MESSAGE_AGE_S + ses.CLOCK_SKEW_S + 1, False),
        (86400.0 * 30, False),
    ],
)
def test_an_sns_message_is_accepted_only_within_its_replay_window(post, sns, offset_s, accepted):
    envelope = sns_vector(UNSUBSCRIBED)
    sent_s = datetime.fromisoformat(envelope["Timestamp"]).timestamp()

    if accepted:
        post_sns(post, envelope, now_s=sent_s + offset_s)
    else:
        with pytest.raises(WebhookAuthError, match="replay window"):
            post_sns(post, envelope, now_s=sent_s + offset_s)
        assert sns.fetched == []


def test_a_subscription_confirmation_asks_the_caller_to_visit_the_subscribe_url(post):
    envelope = sns_vector(CONFIRMATION)

    result = post_sns(post, envelope)

    assert result.events == ()
    assert result.confirmation == ses.SubscriptionConfirmation(
        envelope["TopicArn"], envelope["SubscribeURL"], envelope["Token"]
    )


def test_an_unsubscribe_confirmation_is_verified_and_yields_nothing(post):
    result = post_sns(post, sns_vector(UNSUBSCRIBED))

    assert (result.events, result.confirmation) == ((), None)


def test_confirming_a_subscription_visits_the_subscribe_url(sns):
    url = sns_vector(CONFIRMATION)["SubscribeURL"]
    sns.served[url] = b"<ConfirmSubscriptionResponse/>"

    ses.confirm_subscription(ses.SubscriptionConfirmation("arn", url, "token"), fetch=sns.fetch)

    assert sns.fetched == [url]


def test_a_subscription_confirmation_pointing_outside_sns_is_refused():
    envelope = sns_vector(CONFIRMATION)
    envelope["SubscribeURL"] = "https://attacker.example/?Action=ConfirmSubscription"

    with pytest.raises(WebhookPayloadError, match="SubscribeURL"):
        ses.parse(envelope)


def test_a_verified_notification_that_is_not_an_ses_event_is_a_payload_error(post):
    with pytest.raises(WebhookPayloadError, match="not JSON"):
        post_sns(post, sns_vector(WITH_SUBJECT))


def test_the_signing_certificate_is_fetched_once_and_then_cached(post, sns):
    post_sns(post, sns_vector(CONFIRMATION))
    post_sns(post, sns_vector(UNSUBSCRIBED))

    assert sns.fetched == [sns_vector(CONFIRMATION)["SigningCertURL"]]


def test_an_sns_message_checked_against_another_certificate_is_refused(post, sns):
    envelope = sns_vector(UNSUBSCRIBED)
    sns.served[envelope["SigningCertURL"]] = certificate_of(RUBY_V1)

    with pytest.raises(WebhookAuthError, match="not valid now"):  # the 2022 certificate
        post_sns(post, envelope)


def test_trusted_certificates_verify_without_fetching_anything(post, sns):
    pem = certificate_of(CONFIRMATION)
    stranger = stranger_certificate().public_bytes(serialization.Encoding.PEM)
    trusted = ses.CertificateStore(fetch=sns.fetch, trusted=ses.load_certificates(stranger + pem))

    result = post_sns(post, sns_vector(CONFIRMATION), certificates=trusted)

    assert result.confirmation is not None
    assert sns.fetched == []


def test_a_message_no_trusted_certificate_signed_is_refused_without_fetching(post, sns):
    trusted = ses.CertificateStore(fetch=sns.fetch, trusted=[stranger_certificate()])

    with pytest.raises(WebhookAuthError, match="signature does not match"):
        post_sns(post, sns_vector(CONFIRMATION), certificates=trusted)
    assert sns.fetched == []


def test_a_bundle_without_an_rsa_certificate_is_not_trusted():
    with pytest.raises(ValueError):
        ses.load_certificates(b"not a certificate")


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.txt",
        "https://sns.us-east-1.amazonaws.com/cert.pem?.txt=.pem/../x",
        "https://evilsns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.evil.example/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "ftp://sns.us-east-1.amazonaws.com/cert.pem",
    ],
)
def test_a_signing_certificate_outside_sns_is_refused_without_fetching_it(post, sns, cert_url):
    envelope = sns_vector(UNSUBSCRIBED)
    sns.served[cert_url] = certificate_of(UNSUBSCRIBED)
    envelope["SigningCertURL"] = cert_url

    with pytest.raises(WebhookAuthError, match="not an SNS host"):
        post_sns(post, envelope)
    assert sns.fetched == []


def test_a_trusted_certificate_does_not_make_a_foreign_certificate_url_acceptable(post):
    envelope = sns_vector(UNSUBSCRIBED)
    envelope["SigningCertURL"] = "https://attacker.example/SimpleNotificationService-1.pem"
    trusted = ses.CertificateStore.from_pem(certificate_of(UNSUBSCRIBED))

    with pytest.raises(WebhookAuthError, match="not an SNS host"):
        post_sns(post, envelope, certificates=trusted)


def test_an_sns_host_in_any_region_is_trusted():
    assert ses.is_sns_url(
        "https://sns.eu-west-3.amazonaws.com/SimpleNotificationService-a.pem", pem=True
    )
    assert ses.is_sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", pem=True)


def test_a_certificate_that_cannot_be_fetched_refuses_the_message(post, sns):
    sns.served.clear()

    with pytest.raises(WebhookAuthError, match="cannot fetch"):
        post_sns(post, sns_vector(UNSUBSCRIBED))


@pytest.mark.parametrize("name", [WITH_SUBJECT, RUBY_V1])
def test_a_signing_certificate_outside_its_validity_is_refused(sns, name):
    url = sns_vector(name)["SigningCertURL"]
    pem = x509.load_pem_x509_certificate(certificate_of(name))
    certificates = sns.certificates()

    for moment in (pem.not_valid_before_utc, pem.not_valid_after_utc):
        assert certificates.public_keys(url, moment.timestamp())
    for moment in (
        pem.not_valid_before_utc - timedelta(seconds=1),
        pem.not_valid_after_utc + timedelta(seconds=1),
    ):
        with pytest.raises(WebhookAuthError, match="not valid now"):
            certificates.public_keys(url, moment.timestamp())


def test_a_topic_outside_the_allow_list_is_refused_before_fetching_anything(post, sns, secrets):
    others = WebhookSecrets(
        **{**secrets.__dict__, "ses_topic_arns": ("arn:aws:sns:us-east-1:999999999999:x",)}
    )

    with pytest.raises(WebhookAuthError, match="not allowed"):
        post_sns(post, sns_vector(UNSUBSCRIBED), secrets=others)
    assert sns.fetched == []


@pytest.mark.parametrize("version", ["3", None])
def test_an_unknown_signature_version_is_refused(post, version):
    envelope = dict(sns_vector(UNSUBSCRIBED), SignatureVersion=version)

    with pytest.raises(WebhookAuthError, match="SignatureVersion"):
        post_sns(post, envelope)


def test_an_unsigned_sns_message_is_refused(post):
    envelope = sns_vector(UNSUBSCRIBED)
    del envelope["Signature"]

    with pytest.raises(WebhookAuthError, match="missing"):
        post_sns(post, envelope)


def test_an_sns_type_header_that_contradicts_the_body_is_a_payload_error(post):
    headers = {"X-Amz-Sns-Message-Type": "SubscriptionConfirmation"}

    with pytest.raises(WebhookPayloadError, match="header"):
        post_sns(post, sns_vector(UNSUBSCRIBED), headers=headers)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"Type": "Notification"}', b'{"Type": "Gossip", "Message": "x"}'],
)
def test_a_malformed_sns_body_is_a_payload_error(post, body):
    with pytest.raises(WebhookPayloadError):
        post("ses", body)


# --- SES events inside SNS (read after verification) ------------------------------------------


def read_ses(envelope: dict[str, Any]) -> tuple[Any, ...]:
    """The events of an SNS envelope, read as the entry point reads a verified one."""
    return ses.parse(ses.load_envelope(body_of(envelope))).events


def test_an_ses_bounce_becomes_one_hard_event_per_bounced_recipient():
    events = read_ses(sample("ses_bounce.json"))

    assert [e.recipient for e in events] == ["jane@example.com", "richard@example.com"]
    jane, richard = events
    assert {(e.kind, e.reason) for e in events} == {("hard", "userunknown")}
    assert jane.provider == "ses"
    assert jane.event_id == "19ba9823-d7f2-53c1-860e-cb10e0d13dfc:jane@example.com"
    assert richard.event_id == "19ba9823-d7f2-53c1-860e-cb10e0d13dfc:richard@example.com"
    assert jane.status == "5.1.1"
    assert jane.diagnostic == "smtp; 550 5.1.1 <jane@example.com>... User unknown"
    assert jane.message_id == OUR_MESSAGE_ID
    assert jane.occurred_at == datetime(2026, 11, 27, 15, 0, 5, 101000, tzinfo=UTC)
    assert jane.raw["bounce"]["bounceType"] == "Permanent"


def with_bounce_text(envelope: dict[str, Any], diagnostic: str) -> dict[str, Any]:
    message = json.loads(envelope["Message"])
    for recipient in message["bounce"]["bouncedRecipients"]:
        recipient["diagnosticCode"] = diagnostic
        recipient.pop("status")
    return dict(envelope, Message=json.dumps(message))


def test_a_permanent_bounce_whose_text_blames_our_ip_is_put_on_the_sender():
    text = "smtp; 550 5.7.1 Client host [192.0.2.10] blocked using zen.spamhaus.org"
    envelope = with_bounce_text(sample("ses_bounce.json"), text)

    assert {e.kind for e in read_ses(envelope)} == {"sender"}


def test_a_generic_permanent_bounce_takes_the_reason_and_kind_its_text_names():
    # One table turns a reason into a kind, for provider events as for bounce mail: SES's
    # catch-all "Permanent/General" says only "a bounce"; the reply says why.
    full = with_bounce_text(sample("ses_bounce.json"), "smtp; 552 Mailbox full")
    unknown = with_bounce_text(sample("ses_bounce.json"), "smtp; 550 5.1.1 user unknown")
    silent = with_bounce_text(sample("ses_bounce.json"), "")

    assert {(e.kind, e.reason) for e in read_ses(full)} == {("soft", "mailboxfull")}
    assert {(e.kind, e.reason) for e in read_ses(unknown)} == {("hard", "userunknown")}
    assert {(e.kind, e.reason) for e in read_ses(silent)} == {("soft", "onhold")}


def test_an_ses_complaint_becomes_a_complaint_event():
    (event,) = read_ses(sample("ses_complaint.json"))

    assert (event.recipient, event.kind, event.reason) == (
        "mary@example.com",
        "complaint",
        "feedback",
    )
    assert event.event_id == "5c1e2b7a-3f0d-5e8c-9b2a-7d4e1f0a6c3b:mary@example.com"
    assert event.message_id == OUR_MESSAGE_ID


def test_an_ses_delivery_yields_no_event():
    assert read_ses(sample("ses_delivery.json")) == ()


def test_a_notification_whose_message_is_not_ses_json_is_a_payload_error():
    envelope = dict(sample("ses_bounce.json"), Message="{not json")

    with pytest.raises(WebhookPayloadError, match="not JSON"):
        read_ses(envelope)


def test_a_bounce_without_recipients_is_a_payload_error():
    envelope = sample("ses_bounce.json")
    message = json.loads(envelope["Message"])
    message["bounce"]["bouncedRecipients"] = []
    envelope["Message"] = json.dumps(message)

    with pytest.raises(WebhookPayloadError, match="bouncedRecipients"):
        read_ses(envelope)


def test_the_greeting_ses_posts_when_a_topic_is_set_up_yields_no_event():
    greeting = "Successfully validated SNS topic for Amazon SES event publishing."

    assert read_ses(dict(sample("ses_bounce.json"), Message=greeting)) == ()


@pytest.mark.parametrize(
    ("bounce_type", "sub_type", "kind", "reason"),
    [
        ("Permanent", "NoEmail", "hard", "userunknown"),
        ("Permanent", "Suppressed", "hard", "userunknown"),
        ("Permanent", "OnAccountSuppressionList", "hard", "userunknown"),
        ("Transient", "MailboxFull", "soft", "mailboxfull"),
        ("Transient", "MessageTooLarge", "soft", "mesgtoobig"),
        ("Transient", "ContentRejected", "sender", "policyviolation"),
        ("Transient", "AttachmentRejected", "sender", "policyviolation"),
        ("Permanent", "General", "soft", "onhold"),
        ("Transient", "General", "soft", "undefined"),
        ("Undetermined", "Undetermined", "soft", "undefined"),
        ("Permanent", "SomethingNew", "soft", "onhold"),
    ],
)
def test_ses_bounce_types_map_to_kinds_by_table(bounce_type, sub_type, kind, reason):
    assert ses.bounce_class(bounce_type, sub_type)[:2] == (kind, reason)


# --- SendGrid signatures, over the published vector -------------------------------------------


def test_the_published_sendgrid_vector_verifies_and_yields_its_dropped_address(post):
    body = SENDGRID["payload"].encode()

    (event,) = post("sendgrid", body, sendgrid_headers(), now_s=SENDGRID_NOW_S).events

    assert (event.provider, event.recipient) == ("sendgrid", "hello@world.com")
    assert (event.kind, event.reason) == ("hard", "userunknown")
    assert event.event_id == "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
    assert event.message_id == "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>"


def test_the_other_published_sendgrid_vector_verifies_too():
    vector = sendgrid_vector("sendgrid-nodejs")

    sendgrid.verify(
        vector["payload"].encode(),
        vector["signature"],
        vector["timestamp"],
        vector["public_key"],
        int(vector["timestamp"]) + 5,
    )


@pytest.mark.parametrize(
    ("body", "headers", "now_s"),
    [pytest.param(b, h, n, id=what) for what, b, h, n in SENDGRID_TAMPERS],
)
def test_the_published_sendgrid_vector_changed_in_one_place_is_refused(post, body, headers, now_s):
    with pytest.raises(WebhookAuthError, match="signature does not match"):
        post("sendgrid", body, headers, now_s=now_s)


def test_the_published_sendgrid_vector_under_another_key_is_refused(post, secrets):
    other_key = sendgrid_vector("sendgrid-nodejs")["public_key"]
    others = WebhookSecrets(**{**secrets.__dict__, "sendgrid_public_key": other_key})

    with pytest.raises(WebhookAuthError, match="signature does not match"):
        post(
            "sendgrid",
            SENDGRID["payload"].encode(),
            sendgrid_headers(),
            now_s=SENDGRID_NOW_S,
            secrets=others,
        )


@pytest.mark.parametrize(
    ("offset_s", "accepted"), [(-300, True), (300, True), (-301, False), (301, False)]
)
def test_a_sendgrid_request_is_accepted_only_within_its_replay_window(post, offset_s, accepted):
    body, now_s = SENDGRID["payload"].encode(), int(SENDGRID["timestamp"]) + offset_s

    if accepted:
        assert len(post("sendgrid", body, sendgrid_headers(), now_s=now_s).events) == 1
    else:
        with pytest.raises(WebhookAuthError, match="replay window"):
            post("sendgrid", body, sendgrid_headers(), now_s=now_s)


def test_sendgrid_headers_are_found_whatever_their_case(post):
    headers = {k.upper(): v for k, v in sendgrid_headers().items()}

    events = post("sendgrid", SENDGRID["payload"].encode(), headers, now_s=SENDGRID_NOW_S).events

    assert len(events) == 1


@pytest.mark.parametrize(
    "drop", ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"]
)
def test_a_sendgrid_request_missing_a_signature_header_is_refused(post, drop):
    headers = sendgrid_headers()
    del headers[drop]

    with pytest.raises(WebhookAuthError, match="missing"):
        post("sendgrid", SENDGRID["payload"].encode(), headers, now_s=SENDGRID_NOW_S)


def test_a_sendgrid_key_given_as_pem_is_accepted_too():
    der = base64.b64decode(SENDGRID["public_key"])
    pem = (
        serialization.load_der_public_key(der)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )

    sendgrid.verify(
        SENDGRID["payload"].encode(),
        SENDGRID["signature"],
        SENDGRID["timestamp"],
        pem,
        SENDGRID_NOW_S,
    )


# --- SendGrid events (read after verification) ------------------------------------------------


def test_a_sendgrid_batch_yields_bounce_drop_deferral_and_complaint_but_not_open():
    events = sendgrid.parse((DATA / "sendgrid_batch.json").read_bytes())

    by_recipient = {e.recipient: e for e in events}
    assert list(by_recipient) == [
        "jane@example.com",
        "richard@example.com",
        "alex@example.com",
        "mary@example.com",
    ]
    bounce, dropped, deferred, spam = events
    assert (bounce.kind, bounce.reason, bounce.status) == ("hard", "userunknown", "5.1.1")
    assert bounce.event_id == "Ym91bmNlLTAtMjQ2ODEzNTctdGVzdA"
    assert bounce.message_id == OUR_MESSAGE_ID
    assert bounce.occurred_at == datetime(2026, 11, 27, 15, 0, 5, tzinfo=UTC)
    assert bounce.raw["bounce_classification"] == "Invalid Address"
    assert (dropped.kind, dropped.reason) == ("hard", "userunknown")
    assert (deferred.kind, deferred.reason, deferred.status) == ("soft", "mailboxfull", "4.2.2")
    assert deferred.diagnostic.startswith("452 4.2.2")
    assert (spam.kind, spam.reason) == ("complaint", "feedback")
    assert {e.provider for e in events} == {"sendgrid"}


@pytest.mark.parametrize(
    "body", [b"not json", b'{"event": "bounce"}', b'["bounce"]', b'[{"event": "bounce"}]']
)
def test_a_malformed_sendgrid_body_is_a_payload_error(body):
    with pytest.raises(WebhookPayloadError):
        sendgrid.parse(body)


def test_unknown_sendgrid_event_types_are_accepted_and_yield_nothing():
    body = json.dumps(
        [
            {"email": "sam@example.com", "event": "delivered", "sg_event_id": "a", "timestamp": 1},
            {"email": "sam@example.com", "event": "group_resubscribe", "sg_event_id": "b"},
            {"event": "account_status_change", "type": "compliance_suspend"},
        ]
    ).encode()

    assert sendgrid.parse(body) == []


@pytest.mark.parametrize(
    ("item", "kind", "reason"),
    [
        (
            {"event": "bounce", "type": "bounce", "bounce_classification": "Reputation"},
            "sender",
            "blocked",
        ),
        (
            {"event": "bounce", "type": "blocked", "bounce_classification": "Content"},
            "sender",
            "policyviolation",
        ),
        (
            {"event": "bounce", "type": "blocked", "bounce_classification": "Invalid Address"},
            "hard",
            "userunknown",
        ),
        (
            {"event": "dropped", "reason": "Spam Reporting Address"},
            "complaint",
            "feedback",
        ),
        ({"event": "dropped", "reason": "Unsubscribed Address"}, "ignored", "unsubscribed"),
        (
            {"event": "dropped", "reason": "Spam Content (if spam checker app enabled)"},
            "sender",
            "spamdetected",
        ),
        ({"event": "dropped", "reason": "Invalid"}, "hard", "userunknown"),
        ({"event": "spamreport"}, "complaint", "feedback"),
    ],
)
def test_sendgrid_events_map_to_kinds_by_table(item, kind, reason):
    assert sendgrid.event_class(item)[:2] == (kind, reason)


# --- Postmark ---------------------------------------------------------------------------------


def test_a_postmark_bounce_becomes_a_hard_event(post):
    body = (DATA / "postmark_bounce.json").read_bytes()

    (event,) = post("postmark", body, basic_auth(POSTMARK_USER, POSTMARK_PASSWORD)).events

    assert (event.provider, event.recipient) == ("postmark", "jane@example.com")
    assert (event.kind, event.reason) == ("hard", "userunknown")
    assert event.event_id == "4323372036854775807"
    assert event.message_id == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert event.status == "5.1.1"
    assert event.diagnostic.startswith("smtp;550 5.1.1")
    assert event.occurred_at == datetime(2026, 11, 27, 15, 0, 5, 396393, tzinfo=UTC)
    assert event.raw["Tag"] == "edition-2026-W48"


def test_a_postmark_spam_complaint_becomes_a_complaint_event(post):
    body = (DATA / "postmark_spam_complaint.json").read_bytes()

    (event,) = post("postmark", body, basic_auth(POSTMARK_USER, POSTMARK_PASSWORD)).events

    assert (event.recipient, event.kind, event.reason) == (
        "mary@example.com",
        "complaint",
        "feedback",
    )
    assert event.event_id == "4323372036854775808"


@pytest.mark.parametrize(
    "headers",
    [
        basic_auth(POSTMARK_USER, "wrong"),
        basic_auth("someone", POSTMARK_PASSWORD),
        basic_auth(POSTMARK_USER, POSTMARK_PASSWORD + "x"),
        {"Authorization": f"Bearer {POSTMARK_PASSWORD}"},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {},
    ],
)
def test_wrong_postmark_credentials_are_refused(post, headers):
    body = (DATA / "postmark_bounce.json").read_bytes()

    with pytest.raises(WebhookAuthError):
        post("postmark", body, headers)


@pytest.mark.parametrize(
    ("record_type", "bounce_type", "kind", "reason"),
    [
        ("Bounce", "BadEmailAddress", "hard", "userunknown"),
        ("Bounce", "AutoResponder", "ignored", "vacation"),
        ("Bounce", "DMARCPolicy", "sender", "authfailure"),
        ("Bounce", "SpamNotification", "sender", "spamdetected"),
        ("Bounce", "Transient", "soft", "undefined"),
        ("Bounce", "SomethingNew", "soft", "undefined"),
        ("SpamComplaint", None, "complaint", "feedback"),
    ],
)
def test_postmark_bounce_types_map_to_kinds_by_table(record_type, bounce_type, kind, reason):
    assert postmark.bounce_class(record_type, bounce_type)[:2] == (kind, reason)


def test_a_postmark_delivery_record_yields_nothing(post):
    body = json.dumps({"RecordType": "Delivery", "Recipient": "sam@example.com"}).encode()

    assert post("postmark", body, basic_auth(POSTMARK_USER, POSTMARK_PASSWORD)).events == ()


@pytest.mark.parametrize(
    "body", [b"{nope", b"[]", b'{"RecordType": "Bounce", "ID": 1}', b'{"RecordType": "Bounce"}']
)
def test_a_malformed_postmark_body_is_a_payload_error(post, body):
    with pytest.raises(WebhookPayloadError):
        post("postmark", body, basic_auth(POSTMARK_USER, POSTMARK_PASSWORD))


# --- Mailgun ----------------------------------------------------------------------------------


def test_a_mailgun_permanent_failure_becomes_a_hard_event(post):
    body = mailgun_body(sample("mailgun_failed_permanent.json"), token="t-permanent")

    (event,) = post("mailgun", body).events

    assert (event.provider, event.recipient) == ("mailgun", "jane@example.com")
    assert (event.kind, event.reason) == ("hard", "userunknown")
    assert event.event_id == "G9Bn5sl1TC6nu79C8C0bwg"
    assert event.message_id == OUR_MESSAGE_ID
    assert event.status == "5.1.1"
    assert "does not exist" in event.diagnostic
    assert event.occurred_at == datetime(2026, 11, 27, 15, 0, 5, 389832, tzinfo=UTC)


def test_a_mailgun_temporary_failure_becomes_a_soft_event(post):
    body = mailgun_body(sample("mailgun_failed_temporary.json"), token="t-temporary")

    (event,) = post("mailgun", body).events

    assert (event.recipient, event.kind, event.reason) == (
        "alex@example.com",
        "soft",
        "mailboxfull",
    )
    assert event.status == "4.2.2"
    assert event.event_id == "Fs7-5t81S2ufMBaGE4UHMA"


def test_a_mailgun_complaint_becomes_a_complaint_event(post):
    body = mailgun_body(sample("mailgun_complained.json"), token="t-complained")

    (event,) = post("mailgun", body).events

    assert (event.recipient, event.kind, event.reason) == (
        "mary@example.com",
        "complaint",
        "feedback",
    )
    assert event.event_id == "ncV2XwymRUKbPek_MIM-Gw"


def test_a_replayed_mailgun_token_is_refused(post):
    body = mailgun_body(sample("mailgun_failed_permanent.json"), token="t-once")
    post("mailgun", body)

    with pytest.raises(WebhookAuthError, match="already used"):
        post("mailgun", body)


def test_a_mailgun_token_is_remembered_only_once_it_is_signed(post):
    body = mailgun_body(sample("mailgun_failed_permanent.json"), token="t-1", key="wrong-key")
    with pytest.raises(WebhookAuthError, match="signature"):
        post("mailgun", body)

    good = mailgun_body(sample("mailgun_failed_permanent.json"), token="t-1")
    assert len(post("mailgun", good).events) == 1


@pytest.mark.parametrize("offset_s", [-301, 301])
def test_a_mailgun_timestamp_outside_the_replay_window_is_refused(post, offset_s):
    body = mailgun_body(
        sample("mailgun_failed_permanent.json"), token="t-old", timestamp=int(NOW_S) + offset_s
    )

    with pytest.raises(WebhookAuthError, match="replay window"):
        post("mailgun", body)


def test_a_mailgun_signature_made_with_another_key_is_refused(post):
    body = mailgun_body(sample("mailgun_failed_permanent.json"), token="t-x", key="other-key")

    with pytest.raises(WebhookAuthError, match="signature"):
        post("mailgun", body)


def test_a_mailgun_signature_block_with_a_swapped_token_is_refused(post):
    payload = json.loads(mailgun_body(sample("mailgun_failed_permanent.json"), token="t-a"))
    payload["signature"]["token"] = "t-b"

    with pytest.raises(WebhookAuthError, match="signature"):
        post("mailgun", json.dumps(payload).encode())


def test_an_unsigned_mailgun_post_is_refused(post):
    payload = sample("mailgun_failed_permanent.json")
    del payload["signature"]

    with pytest.raises(WebhookAuthError, match="missing"):
        post("mailgun", json.dumps(payload).encode())


def test_other_mailgun_events_are_accepted_and_yield_nothing(post):
    payload = sample("mailgun_failed_permanent.json")
    payload["event-data"] = {"event": "delivered", "id": "d1", "recipient": "sam@example.com"}

    assert post("mailgun", mailgun_body(payload, token="t-delivered")).events == ()


@pytest.mark.parametrize("drop", ["event-data", "id", "recipient", "severity"])
def test_a_signed_mailgun_post_missing_a_field_is_a_payload_error(post, drop):
    payload = sample("mailgun_failed_permanent.json")
    if drop == "event-data":
        del payload["event-data"]
    else:
        del payload["event-data"][drop]
        del payload["event-data"]["reason"]

    with pytest.raises(WebhookPayloadError):
        post("mailgun", mailgun_body(payload, token=f"t-missing-{drop}"))


def test_malformed_mailgun_json_is_a_payload_error(post):
    with pytest.raises(WebhookPayloadError):
        post("mailgun", b"{truncated")


@pytest.mark.parametrize(
    ("data", "kind", "reason"),
    [
        (
            {"event": "failed", "severity": "permanent", "reason": "suppress-bounce"},
            "hard",
            "userunknown",
        ),
        (
            {"event": "failed", "severity": "permanent", "reason": "suppress-complaint"},
            "complaint",
            "feedback",
        ),
        (
            {"event": "failed", "severity": "permanent", "reason": "suppress-unsubscribe"},
            "ignored",
            "unsubscribed",
        ),
        (
            {"event": "failed", "severity": "temporary", "reason": "greylisted"},
            "sender",
            "blocked",
        ),
        ({"event": "failed", "severity": "permanent", "reason": "bounce"}, "soft", "onhold"),
        ({"event": "complained"}, "complaint", "feedback"),
    ],
)
def test_mailgun_failures_map_to_kinds_by_table(data, kind, reason):
    assert mailgun.event_class(data)[:2] == (kind, reason)


def test_the_in_process_token_memory_remembers_each_token_once():
    seen = mailgun.RecentTokens()

    assert [seen("a"), seen("b"), seen("a")] == [False, False, True]


# --- the entry point --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "unset"),
    [
        ("ses", {"ses_topic_arns": ()}),
        ("sendgrid", {"sendgrid_public_key": None}),
        ("postmark", {"postmark_password": ""}),
        ("postmark", {"postmark_username": None}),
        ("mailgun", {"mailgun_signing_key": None}),
    ],
)
def test_a_provider_whose_secret_is_unset_refuses_everything(post, secrets, provider, unset):
    bare = WebhookSecrets(**{**secrets.__dict__, **unset})

    with pytest.raises(WebhookAuthError, match="not configured"):
        post(provider, b"{}", secrets=bare)


def test_every_provider_of_the_spec_has_an_entry():
    assert set(PROVIDERS) == {"ses", "sendgrid", "postmark", "mailgun"}


def test_an_unknown_provider_is_not_found(post):
    with pytest.raises(NotFound):
        post("sparkpost", b"{}")


def test_every_provider_table_agrees_with_the_one_reason_to_kind_table():
    from worker.bounces import mailgun, postmark, sendgrid, ses
    from worker.bounces.reasons import kind_of

    pairs = [
        *((k, r) for k, r, _refine in ses.BOUNCE_TYPES.values()),
        *ses.COMPLAINT_TYPES.values(),
        *sendgrid.BOUNCE_TYPES.values(),
        *sendgrid.BOUNCE_CLASSIFICATIONS.values(),
        *sendgrid.DROP_REASONS.values(),
        *((k, r) for k, r, _refine in postmark.BOUNCE_TYPES.values()),
        *mailgun.SEVERITIES.values(),
        *mailgun.FAILURE_REASONS.values(),
    ]
    assert [(k, r) for k, r in pairs if kind_of(r) != k] == []
