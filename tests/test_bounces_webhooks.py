"""Provider webhooks: each request is verified the provider's way, then read into ProviderEvents.

The payloads in tests/data/webhooks/ follow the shapes each provider documents; the tests sign
them with keys made here (an RSA key and self-signed certificate served to SNS verification by
an injected fetcher, an ECDSA P-256 key for SendGrid, HMAC and basic-auth secrets).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from worker.bounces import mailgun, postmark, sendgrid, ses
from worker.bounces.webhooks import PROVIDERS, WebhookResult, WebhookSecrets, handle
from worker.errors import NotFound, WebhookAuthError, WebhookPayloadError

DATA = Path(__file__).parent / "data" / "webhooks"
NOW_S = 1795791610.0  # 2026-11-27T15:00:10Z, a few seconds after the sample events
OUR_MESSAGE_ID = "<d42.2026-W48@news.example.com>"
TOPIC = "arn:aws:sns:us-east-1:123456789012:newsletter-ses-events"
CERT_URL = (
    "https://sns.us-east-1.amazonaws.com/"
    "SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
)
MAILGUN_KEY = "key-test-mailgun-signing"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark-hooks", "s3cret-pass"


def sample(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def sample_list(name: str) -> list[dict[str, Any]]:
    return json.loads((DATA / name).read_text())


# --- keys and signers -------------------------------------------------------------------------


def self_signed_certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.fromtimestamp(NOW_S, UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def sns_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Sns:
    """Signs SNS envelopes and serves the certificate to verification through a fake fetcher."""

    key: rsa.RSAPrivateKey
    served: dict[str, bytes]
    fetched: list[str] = field(default_factory=list)

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url not in self.served:
            raise OSError(f"404 {url}")
        return self.served[url]

    def certificates(self) -> ses.CertificateStore:
        return ses.CertificateStore(fetch=self.fetch)

    def sign(self, envelope: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> bytes:
        algorithm = hashes.SHA256() if envelope["SignatureVersion"] == "2" else hashes.SHA1()
        signature = (key or self.key).sign(
            ses.string_to_sign(envelope), padding.PKCS1v15(), algorithm
        )
        envelope = dict(envelope, Signature=base64.b64encode(signature).decode("ascii"))
        return json.dumps(envelope).encode("utf-8")


@pytest.fixture
def sns(sns_key: rsa.RSAPrivateKey) -> Sns:
    return Sns(sns_key, {CERT_URL: self_signed_certificate(sns_key)})


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_public_key(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def sendgrid_headers(
    key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int = int(NOW_S)
) -> dict[str, str]:
    signature = key.sign(str(timestamp).encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode("ascii"),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp),
    }


def mailgun_body(
    payload: dict[str, Any], token: str, timestamp: int = int(NOW_S), key: str = MAILGUN_KEY
) -> bytes:
    signature = mailgun.signature_of(key, str(timestamp), token)
    block = {"timestamp": str(timestamp), "token": token, "signature": signature}
    return json.dumps(dict(payload, signature=block)).encode("utf-8")


def basic_auth(user: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {credentials}"}


@pytest.fixture
def secrets(sendgrid_key: ec.EllipticCurvePrivateKey) -> WebhookSecrets:
    return WebhookSecrets(
        ses_topic_arns=(TOPIC,),
        sendgrid_public_key=sendgrid_public_key(sendgrid_key),
        postmark_username=POSTMARK_USER,
        postmark_password=POSTMARK_PASSWORD,
        mailgun_signing_key=MAILGUN_KEY,
    )


@pytest.fixture
def post(secrets: WebhookSecrets, sns: Sns) -> Callable[..., WebhookResult]:
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


# --- Amazon SES through SNS -------------------------------------------------------------------


def test_an_ses_bounce_becomes_one_hard_event_per_bounced_recipient(post, sns):
    result = post("ses", sns.sign(sample("ses_bounce.json")))

    assert [e.recipient for e in result.events] == ["jane@example.com", "richard@example.com"]
    jane, richard = result.events
    assert {(e.kind, e.reason) for e in result.events} == {("hard", "userunknown")}
    assert jane.provider == "ses"
    assert jane.event_id == "19ba9823-d7f2-53c1-860e-cb10e0d13dfc:jane@example.com"
    assert richard.event_id == "19ba9823-d7f2-53c1-860e-cb10e0d13dfc:richard@example.com"
    assert jane.status == "5.1.1"
    assert jane.diagnostic == "smtp; 550 5.1.1 <jane@example.com>... User unknown"
    assert jane.message_id == OUR_MESSAGE_ID
    assert jane.occurred_at == datetime(2026, 11, 27, 15, 0, 5, 101000, tzinfo=UTC)
    assert jane.raw["bounce"]["bounceType"] == "Permanent"
    assert result.confirmation is None


def with_bounce_text(envelope: dict[str, Any], diagnostic: str) -> dict[str, Any]:
    message = json.loads(envelope["Message"])
    for recipient in message["bounce"]["bouncedRecipients"]:
        recipient["diagnosticCode"] = diagnostic
        recipient.pop("status")
    return dict(envelope, Message=json.dumps(message))


def test_a_permanent_bounce_whose_text_blames_our_ip_is_put_on_the_sender(post, sns):
    text = "smtp; 550 5.7.1 Client host [192.0.2.10] blocked using zen.spamhaus.org"
    envelope = with_bounce_text(sample("ses_bounce.json"), text)

    kinds = {e.kind for e in post("ses", sns.sign(envelope)).events}

    assert kinds == {"sender"}


def test_the_text_cannot_soften_a_bounce_the_provider_calls_permanent(post, sns):
    envelope = with_bounce_text(sample("ses_bounce.json"), "smtp; 552 Mailbox full")

    kinds = {(e.kind, e.reason) for e in post("ses", sns.sign(envelope)).events}

    assert kinds == {("hard", "undefined")}


def test_an_ses_complaint_becomes_a_complaint_event(post, sns):
    (event,) = post("ses", sns.sign(sample("ses_complaint.json"))).events

    assert (event.recipient, event.kind, event.reason) == (
        "mary@example.com",
        "complaint",
        "feedback",
    )
    assert event.event_id == "5c1e2b7a-3f0d-5e8c-9b2a-7d4e1f0a6c3b:mary@example.com"
    assert event.message_id == OUR_MESSAGE_ID


def test_an_ses_delivery_is_verified_and_yields_no_event(post, sns):
    assert post("ses", sns.sign(sample("ses_delivery.json"))).events == ()


def test_a_subscription_confirmation_asks_the_caller_to_visit_the_subscribe_url(post, sns):
    envelope = sample("sns_subscription_confirmation.json")  # signed with SignatureVersion 2

    result = post("ses", sns.sign(envelope))

    assert result.events == ()
    assert result.confirmation == ses.SubscriptionConfirmation(
        TOPIC, envelope["SubscribeURL"], envelope["Token"]
    )


def test_confirming_a_subscription_visits_the_subscribe_url(sns):
    url = sample("sns_subscription_confirmation.json")["SubscribeURL"]
    sns.served[url] = b"<ConfirmSubscriptionResponse/>"

    ses.confirm_subscription(ses.SubscriptionConfirmation(TOPIC, url, "token"), fetch=sns.fetch)

    assert sns.fetched == [url]


def test_a_subscription_confirmation_pointing_outside_sns_is_refused(post, sns):
    envelope = sample("sns_subscription_confirmation.json")
    envelope["SubscribeURL"] = "https://attacker.example/?Action=ConfirmSubscription"

    with pytest.raises(WebhookPayloadError, match="SubscribeURL"):
        post("ses", sns.sign(envelope))


def test_both_signature_versions_are_verified(post, sns):
    for version in ("1", "2"):
        envelope = dict(sample("ses_complaint.json"), SignatureVersion=version)
        assert len(post("ses", sns.sign(envelope)).events) == 1


def test_the_signing_certificate_is_fetched_once_and_then_cached(post, sns):
    post("ses", sns.sign(sample("ses_bounce.json")))
    post("ses", sns.sign(sample("ses_complaint.json")))

    assert sns.fetched == [CERT_URL]


def test_a_tampered_sns_message_is_refused(post, sns):
    body = sns.sign(sample("ses_bounce.json")).replace(b"jane@example.com", b"joan@example.com")

    with pytest.raises(WebhookAuthError, match="signature"):
        post("ses", body)


def test_an_sns_message_signed_by_another_key_is_refused(post, sns):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    with pytest.raises(WebhookAuthError, match="signature"):
        post("ses", sns.sign(sample("ses_bounce.json"), key=stranger))


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
    sns.served[cert_url] = sns.served[CERT_URL]
    envelope = dict(sample("ses_bounce.json"), SigningCertURL=cert_url)

    with pytest.raises(WebhookAuthError, match="not an SNS host"):
        post("ses", sns.sign(envelope))
    assert sns.fetched == []


def test_an_sns_host_in_any_region_is_trusted():
    assert ses.is_sns_url(
        "https://sns.eu-west-3.amazonaws.com/SimpleNotificationService-a.pem", pem=True
    )
    assert ses.is_sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", pem=True)


def test_a_certificate_that_cannot_be_fetched_refuses_the_message(post, sns):
    missing = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-gone.pem"
    envelope = dict(sample("ses_bounce.json"), SigningCertURL=missing)

    with pytest.raises(WebhookAuthError, match="cannot fetch"):
        post("ses", sns.sign(envelope))


def test_an_expired_signing_certificate_is_refused(post, sns):
    with pytest.raises(WebhookAuthError, match="not valid now"):
        post("ses", sns.sign(sample("ses_bounce.json")), now_s=NOW_S + 400 * 86400)


def test_a_topic_outside_the_allow_list_is_refused_before_fetching_anything(post, sns):
    envelope = dict(sample("ses_bounce.json"), TopicArn="arn:aws:sns:us-east-1:999999999999:x")

    with pytest.raises(WebhookAuthError, match="not allowed"):
        post("ses", sns.sign(envelope))
    assert sns.fetched == []


@pytest.mark.parametrize("version", ["3", None])
def test_an_unknown_signature_version_is_refused(post, sns, version):
    envelope = dict(sample("ses_bounce.json"), SignatureVersion="1")
    body = json.loads(sns.sign(envelope))
    body["SignatureVersion"] = version

    with pytest.raises(WebhookAuthError, match="SignatureVersion"):
        post("ses", json.dumps(body).encode())


def test_an_unsigned_sns_message_is_refused(post):
    envelope = sample("ses_bounce.json")
    del envelope["Signature"]

    with pytest.raises(WebhookAuthError):
        post("ses", json.dumps(envelope).encode())


def test_an_sns_type_header_that_contradicts_the_body_is_a_payload_error(post, sns):
    headers = {"X-Amz-Sns-Message-Type": "SubscriptionConfirmation"}

    with pytest.raises(WebhookPayloadError, match="header"):
        post("ses", sns.sign(sample("ses_bounce.json")), headers)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"Type": "Notification"}', b'{"Type": "Gossip", "Message": "x"}'],
)
def test_a_malformed_sns_body_is_a_payload_error(post, body):
    with pytest.raises(WebhookPayloadError):
        post("ses", body)


def test_a_signed_notification_whose_message_is_not_ses_json_is_a_payload_error(post, sns):
    envelope = dict(sample("ses_bounce.json"), Message="{not json")

    with pytest.raises(WebhookPayloadError, match="not JSON"):
        post("ses", sns.sign(envelope))


def test_a_signed_bounce_without_recipients_is_a_payload_error(post, sns):
    envelope = sample("ses_bounce.json")
    message = json.loads(envelope["Message"])
    message["bounce"]["bouncedRecipients"] = []
    envelope["Message"] = json.dumps(message)

    with pytest.raises(WebhookPayloadError, match="bouncedRecipients"):
        post("ses", sns.sign(envelope))


def test_the_greeting_ses_posts_when_a_topic_is_set_up_yields_no_event(post, sns):
    greeting = "Successfully validated SNS topic for Amazon SES event publishing."
    envelope = dict(sample("ses_bounce.json"), Message=greeting)

    assert post("ses", sns.sign(envelope)).events == ()


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
        ("Permanent", "General", "hard", "undefined"),
        ("Transient", "General", "soft", "undefined"),
        ("Undetermined", "Undetermined", "soft", "undefined"),
        ("Permanent", "SomethingNew", "hard", "undefined"),
    ],
)
def test_ses_bounce_types_map_to_kinds_by_table(bounce_type, sub_type, kind, reason):
    assert ses.bounce_class(bounce_type, sub_type)[:2] == (kind, reason)


# --- SendGrid ---------------------------------------------------------------------------------


def test_a_sendgrid_batch_yields_bounce_drop_deferral_and_complaint_but_not_open(
    post, sendgrid_key
):
    body = (DATA / "sendgrid_batch.json").read_bytes()

    events = post("sendgrid", body, sendgrid_headers(sendgrid_key, body)).events

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


def test_sendgrid_headers_are_found_whatever_their_case(post, sendgrid_key):
    body = (DATA / "sendgrid_batch.json").read_bytes()
    headers = {k.upper(): v for k, v in sendgrid_headers(sendgrid_key, body).items()}

    assert len(post("sendgrid", body, headers).events) == 4


def test_a_sendgrid_batch_signed_by_another_key_is_refused(post):
    body = (DATA / "sendgrid_batch.json").read_bytes()
    stranger = ec.generate_private_key(ec.SECP256R1())

    with pytest.raises(WebhookAuthError, match="signature"):
        post("sendgrid", body, sendgrid_headers(stranger, body))


def test_a_tampered_sendgrid_body_is_refused(post, sendgrid_key):
    body = (DATA / "sendgrid_batch.json").read_bytes()
    headers = sendgrid_headers(sendgrid_key, body)

    with pytest.raises(WebhookAuthError, match="signature"):
        post("sendgrid", body.replace(b'"bounce"', b'"delivered"'), headers)


@pytest.mark.parametrize("offset_s", [-301, 301, -86400])
def test_a_sendgrid_timestamp_outside_the_replay_window_is_refused(post, sendgrid_key, offset_s):
    body = (DATA / "sendgrid_batch.json").read_bytes()
    headers = sendgrid_headers(sendgrid_key, body, timestamp=int(NOW_S) + offset_s)

    with pytest.raises(WebhookAuthError, match="replay window"):
        post("sendgrid", body, headers)


@pytest.mark.parametrize(
    "drop", ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"]
)
def test_a_sendgrid_request_missing_a_signature_header_is_refused(post, sendgrid_key, drop):
    body = (DATA / "sendgrid_batch.json").read_bytes()
    headers = sendgrid_headers(sendgrid_key, body)
    del headers[drop]

    with pytest.raises(WebhookAuthError, match="missing"):
        post("sendgrid", body, headers)


@pytest.mark.parametrize(
    "body", [b"not json", b'{"event": "bounce"}', b'["bounce"]', b'[{"event": "bounce"}]']
)
def test_a_signed_but_malformed_sendgrid_body_is_a_payload_error(post, sendgrid_key, body):
    with pytest.raises(WebhookPayloadError):
        post("sendgrid", body, sendgrid_headers(sendgrid_key, body))


def test_unknown_sendgrid_event_types_are_accepted_and_yield_nothing(post, sendgrid_key):
    body = json.dumps(
        [
            {"email": "sam@example.com", "event": "delivered", "sg_event_id": "a", "timestamp": 1},
            {"email": "sam@example.com", "event": "group_resubscribe", "sg_event_id": "b"},
            {"event": "account_status_change", "type": "compliance_suspend"},
        ]
    ).encode()

    assert post("sendgrid", body, sendgrid_headers(sendgrid_key, body)).events == ()


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


def test_a_sendgrid_key_given_as_pem_is_accepted_too(sendgrid_key):
    pem = (
        sendgrid_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    body = b"[]"
    headers = {k.lower(): v for k, v in sendgrid_headers(sendgrid_key, body).items()}

    sendgrid.verify(
        body, headers[sendgrid.SIGNATURE_HEADER], headers[sendgrid.TIMESTAMP_HEADER], pem, NOW_S
    )


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
        ({"event": "failed", "severity": "permanent", "reason": "bounce"}, "hard", "undefined"),
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
