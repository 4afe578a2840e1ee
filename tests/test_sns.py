"""SNS envelope verification, by its own module: every refusal says exactly why, certificates
are cached within a bound, and the default fetcher keeps to what it promises (no redirects, a
size limit) against a local HTTP server."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.webhook_vectors import (
    CONFIRMATION,
    SNS_VECTORS,
    UNSUBSCRIBED,
    certificate_of,
    signed_at_s,
    sns_vector,
)
from worker.bounces import sns
from worker.errors import WebhookAuthError, WebhookPayloadError


def _store(**served: bytes) -> sns.CertificateStore:
    by_url = {sns_vector(n)["SigningCertURL"]: certificate_of(n) for n in SNS_VECTORS}
    by_url.update(served)

    def fetch(url: str) -> bytes:
        if url not in by_url:
            raise OSError(f"404 {url}")
        return by_url[url]

    return sns.CertificateStore(fetch=fetch)


def _refusal(envelope: dict[str, Any], store: sns.CertificateStore | None = None) -> str:
    with pytest.raises(WebhookAuthError) as info:
        sns.verify(envelope, store or _store(), signed_at_s(sns_vector(UNSUBSCRIBED)))
    return str(info.value)


def test_each_refusal_says_exactly_why() -> None:
    good = sns_vector(UNSUBSCRIBED)
    assert _refusal({**good, "SignatureVersion": "3"}) == ("ses: unsupported SignatureVersion '3'")
    assert _refusal({**good, "Signature": None}) == "ses: Signature or SigningCertURL is missing"
    assert _refusal({**good, "SigningCertURL": None}) == (
        "ses: Signature or SigningCertURL is missing"
    )
    assert _refusal({**good, "Signature": "not base64!"}) == "ses: Signature is not base64"
    assert _refusal({**good, "Timestamp": "yesterday"}) == (
        "ses: Timestamp 'yesterday' is not a time"
    )
    other = base64.b64encode(b"\0" * 256).decode()
    assert _refusal({**good, "Signature": other}) == "ses: SNS signature does not match"


def test_a_naive_timestamp_is_utc() -> None:
    good = sns_vector(UNSUBSCRIBED)
    naive = good["Timestamp"].replace("Z", "")
    with pytest.raises(WebhookAuthError, match="signature does not match"):  # not its age
        sns.verify({**good, "Timestamp": naive}, _store(), signed_at_s(good))


def test_a_signature_with_characters_outside_base64_is_refused_not_skipped() -> None:
    good = sns_vector(UNSUBSCRIBED)
    assert _refusal({**good, "Signature": "#" + good["Signature"]}) == (
        "ses: Signature is not base64"
    )


def test_certificate_problems_name_the_url() -> None:
    good = sns_vector(UNSUBSCRIBED)
    url = good["SigningCertURL"]
    assert _refusal(good, _store(**{url: b"not a certificate"})) == (
        f"ses: signing certificate is not PEM: {url}"
    )
    missing = url.replace(".pem", "-gone.pem")
    assert _refusal({**good, "SigningCertURL": missing}).startswith(
        f"ses: cannot fetch signing certificate {missing}: 404"
    )


def test_a_trusted_certificate_out_of_date_is_named_as_trusted() -> None:
    good = sns_vector(UNSUBSCRIBED)
    store = sns.CertificateStore.from_pem(certificate_of(UNSUBSCRIBED))
    with pytest.raises(WebhookAuthError) as info:
        sns.verify(good, store, 4_000_000_000.0, max_age_s=10**10)
    assert str(info.value) == "ses: trusted signing certificate is not valid now"
    fetched = _store()
    with pytest.raises(WebhookAuthError) as info:
        sns.verify(good, fetched, 4_000_000_000.0, max_age_s=10**10)
    assert str(info.value) == f"ses: signing certificate {good['SigningCertURL']} is not valid now"


def test_the_cache_keeps_the_most_recent_certificates_within_its_bound() -> None:
    fetched: list[str] = []
    pem = certificate_of(UNSUBSCRIBED)

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return pem

    store = sns.CertificateStore(fetch=fetch, max_entries=2)
    urls = [f"https://sns.us-east-1.amazonaws.com/c{i}.pem" for i in range(3)]
    now_s = signed_at_s(sns_vector(UNSUBSCRIBED))
    for url in urls:
        store.public_keys(url, now_s)
    store.public_keys(urls[2], now_s)  # cached
    store.public_keys(urls[1], now_s)  # cached: the bound is two
    store.public_keys(urls[0], now_s)  # evicted first, fetched again
    assert fetched == [*urls, urls[0]]
    assert sns.CertificateStore().public_keys  # the default store builds with no arguments


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "ses: body is not JSON: "),
        (b"[]", "ses: body is not a JSON object"),
        (b'{"Type": "Other"}', "ses: unknown SNS message Type 'Other'"),
        (b'{"Type": "Notification"}', "ses: SNS field Message is missing or not a string"),
    ],
)
def test_an_envelope_that_is_not_one_says_why(body: bytes, message: str) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        sns.load_envelope(body)
    assert str(info.value).startswith(message)
    if not message.endswith(": "):
        assert str(info.value) == message


def test_an_envelope_without_its_optional_subject_is_read_and_checked_whole() -> None:
    envelope = dict(sns_vector(UNSUBSCRIBED))
    envelope.pop("Subject", None)
    import json

    assert sns.load_envelope(json.dumps(envelope).encode()) == envelope
    broken = {**sns_vector(CONFIRMATION), "Token": 7}
    with pytest.raises(WebhookPayloadError, match="field Token is missing"):
        sns.load_envelope(json.dumps(broken).encode())


def test_the_string_to_sign_is_utf8() -> None:
    envelope = {**sns_vector(UNSUBSCRIBED), "Message": "é"}
    assert "Message\né\n".encode() in sns.string_to_sign(envelope)


@pytest.mark.parametrize(
    ("url", "pem", "trusted"),
    [
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem", True, True),
        ("https://sns.eu-west-1.amazonaws.com:443/x.pem", True, True),
        ("https://sns.eu-west-1.amazonaws.com:444/x.pem", True, False),
        ("https://sns.eu-west-1.amazonaws.com:99999/x.pem", True, False),  # no such port
        ("https://user@sns.eu-west-1.amazonaws.com/x.pem", True, False),
        ("http://sns.eu-west-1.amazonaws.com/x.pem", True, False),
        ("https://sns.eu-west-1.amazonaws.com/x.pem?a=1", True, False),
        ("https://sns.eu-west-1.amazonaws.com/x.txt", True, False),
        ("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription", False, True),
    ],
)
def test_which_urls_are_sns(url: str, pem: bool, trusted: bool) -> None:
    assert sns.is_sns_url(url, pem=pem) is trusted


def test_a_subscription_is_confirmed_by_visiting_its_sns_url_only() -> None:
    visited: list[str] = []
    url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t"
    sns.confirm_subscription(sns.SubscriptionConfirmation("arn", url, "t"), fetch=visited.append)
    assert visited == [url]


# --- the default fetcher, against a local HTTP server ---------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/redirect.pem":
            self.send_response(302)
            self.send_header("Location", "/small.pem")
            self.end_headers()
            return
        body = b"x" * (sns.MAX_CERTIFICATE_BYTES + 1 if self.path == "/big.pem" else 10)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_fetcher_returns_a_small_document(http_base: str) -> None:
    assert sns.fetch_https(f"{http_base}/small.pem") == b"x" * 10


def test_the_fetcher_refuses_a_big_document(http_base: str) -> None:
    with pytest.raises(ValueError, match=f"more than {sns.MAX_CERTIFICATE_BYTES} bytes"):
        sns.fetch_https(f"{http_base}/big.pem")


def test_the_fetcher_does_not_follow_redirects(http_base: str) -> None:
    import httpx

    with pytest.raises(httpx.HTTPStatusError):
        sns.fetch_https(f"{http_base}/redirect.pem")


def test_a_notification_without_a_subject_still_has_every_other_field_checked() -> None:
    envelope = {k: v for k, v in sns_vector(UNSUBSCRIBED).items() if k != "TopicArn"}
    envelope.update(Type="Notification", Message="{}")
    envelope.pop("Subject", None)
    import json

    with pytest.raises(WebhookPayloadError) as info:
        sns.load_envelope(json.dumps(envelope).encode())
    assert str(info.value) == "ses: SNS field TopicArn is missing or not a string"
