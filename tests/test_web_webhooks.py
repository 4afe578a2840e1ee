"""``POST /webhooks/<provider>`` through the ASGI app: what each request records, or why not.

Signed requests replay the vectors SNS and SendGrid published (``tests.webhook_vectors``), at
the time each was signed: the app's clock and the visit that confirms an SNS subscription are
FastAPI dependencies, overridden here; the SNS certificates are the deployment's own
(``NEWSLETTER_SNS_CERTIFICATE_FILE``), so nothing is fetched.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.factories import subscribe
from tests.webhook_vectors import (
    CONFIRMATION,
    SENDGRID,
    SENDGRID_NOW_S,
    SENDGRID_TAMPERS,
    SNS,
    SNS_TAMPERS,
    SNS_VECTORS,
    body_of,
    sendgrid_headers,
    signed_at_s,
    sns_vector,
)
from worker.bounces import ses
from worker.errors import ConfigError
from worker.models import BounceEvent
from worker.runtime import Runtime, open_runtime
from worker.subscribers import queries as subscribers
from worker.web import create_app
from worker.web.webhooks import received_at_s, sns_confirmation

DATA = Path(__file__).parent / "data" / "webhooks"
POSTMARK_AUTH = {"Authorization": "Basic " + base64.b64encode(b"pm:s3cret").decode()}


@pytest.fixture
def client(
    make_settings: Callable[..., object], redis_client: object
) -> Iterator[Callable[..., TestClient]]:
    """The app over HTTP, for settings given by the test; its runtime is ``client.rt``."""
    opened: list[tuple[TestClient, Runtime]] = []

    def build(**overrides: object) -> TestClient:
        settings = make_settings(postmark_username="pm", postmark_password="s3cret", **overrides)
        rt = open_runtime(settings, redis_client=redis_client)  # type: ignore[arg-type]
        http = TestClient(create_app(settings, rt))  # type: ignore[arg-type]
        http.__enter__()
        http.rt = rt  # type: ignore[attr-defined]
        opened.append((http, rt))
        return http

    yield build
    for http, rt in opened:
        http.__exit__(None, None, None)
        rt.close()


def _events(rt: Runtime) -> list[BounceEvent]:
    with rt.session() as session:
        return list(session.execute(select(BounceEvent)).scalars().all())


def _status(rt: Runtime, email: str) -> str:
    with rt.session() as session:
        subscriber = subscribers.get_subscriber_by_email(session, email)
        assert subscriber is not None
        return subscriber.status


# --- Postmark: every record type it documents ---------------------------------------------


@pytest.mark.parametrize(
    ("sample", "recorded", "status"),
    [
        ("postmark_bounce.json", 1, "bounced"),
        ("postmark_spam_complaint.json", 1, "active"),  # about another reader
        ("postmark_unsubscribe.json", 0, "active"),
        ("postmark_autoresponder.json", 0, "active"),
        ("postmark_delivery.json", 0, "active"),
        ("postmark_open.json", 0, "active"),
        ("postmark_click.json", 0, "active"),
        # Postmark sends the Bounce or SpamComplaint record too, with the details: counting the
        # suppression as well would count one bounce twice.
        ("postmark_subscription_change.json", 0, "active"),
        ("postmark_subscription_change_hard_bounce.json", 0, "active"),
        ("postmark_subscription_reactivated.json", 0, "active"),
    ],
)
def test_each_postmark_record_type_is_answered_200_and_only_bounces_are_recorded(
    client: Callable[..., TestClient], sample: str, recorded: int, status: str
) -> None:
    http = client()
    rt: Runtime = http.rt  # type: ignore[attr-defined]
    subscribe(rt, ("jane@example.com", "", ()))

    answer = http.post(
        "/webhooks/postmark",
        content=(DATA / sample).read_bytes(),
        headers={**POSTMARK_AUTH, "Content-Type": "application/json"},
    )

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": recorded, "recorded": recorded}
    assert len(_events(rt)) == recorded
    assert _status(rt, "jane@example.com") == status


def test_a_postmark_unsubscribe_record_without_email_is_ignored(
    client: Callable[..., TestClient],
) -> None:
    http = client()
    body = json.loads((DATA / "postmark_unsubscribe.json").read_bytes())
    assert "Email" not in body

    answer = http.post("/webhooks/postmark", json=body, headers=POSTMARK_AUTH)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 0, "recorded": 0}
    assert _events(http.rt) == []  # type: ignore[attr-defined]


# --- SNS: the published vectors, and each of them spoiled ---------------------------------


@pytest.fixture
def sns_app(
    client: Callable[..., TestClient], tmp_path: Path
) -> tuple[TestClient, list[ses.SubscriptionConfirmation]]:
    """The app trusting the published SNS certificates; confirmations are recorded, not sent."""
    bundle = tmp_path / "sns-certificates.pem"
    bundle.write_bytes(b"".join(p.read_bytes() for p in sorted(SNS.glob("*/*.pem"))))
    topics = sorted({sns_vector(name)["TopicArn"] for name in SNS_VECTORS})
    http = client(ses_topic_arns=",".join(topics), sns_certificate_file=str(bundle))
    confirmed: list[ses.SubscriptionConfirmation] = []
    http.app.dependency_overrides[sns_confirmation] = lambda: confirmed.append  # type: ignore[attr-defined]
    return http, confirmed


def _post_sns(http: TestClient, envelope: dict[str, object], now_s: float) -> object:
    http.app.dependency_overrides[received_at_s] = lambda: now_s  # type: ignore[attr-defined]
    return http.post(
        "/webhooks/ses",
        content=body_of(envelope),  # type: ignore[arg-type]
        headers={"Content-Type": "text/plain; charset=UTF-8"},
    )


@pytest.mark.parametrize("name", SNS_VECTORS)
def test_every_published_sns_vector_passes_verification_over_http(sns_app, name):
    http, confirmed = sns_app
    envelope = sns_vector(name)

    answer = _post_sns(http, envelope, signed_at_s(envelope))

    if envelope["Type"] == "SubscriptionConfirmation":
        assert (answer.status_code, answer.json()) == (200, {"confirmed": envelope["TopicArn"]})
        assert [c.subscribe_url for c in confirmed] == [envelope["SubscribeURL"]]
    elif envelope["Type"] == "UnsubscribeConfirmation":
        assert (answer.status_code, answer.json()) == (200, {"received": 0, "recorded": 0})
    else:  # verified, then read: "Hello world" is no SES event
        assert answer.status_code == 400
        assert "not JSON" in answer.json()["detail"]
    assert _events(http.rt) == []


@pytest.mark.parametrize(
    ("name", "change"),
    [pytest.param(name, change, id=what) for what, name, change in SNS_TAMPERS],
)
def test_a_published_sns_vector_spoiled_in_one_field_is_401_and_changes_nothing(
    sns_app, name, change
):
    http, confirmed = sns_app
    envelope = sns_vector(name)
    change(envelope)

    answer = _post_sns(http, envelope, signed_at_s(sns_vector(name)))

    assert answer.status_code == 401, answer.text
    assert "signature does not match" in answer.json()["detail"]
    assert confirmed == []
    assert _events(http.rt) == []


@pytest.mark.parametrize("late_s", [ses.MAX_MESSAGE_AGE_S + ses.CLOCK_SKEW_S + 1, 86400.0])
def test_a_published_sns_vector_replayed_after_its_window_is_401_and_changes_nothing(
    sns_app, late_s
):
    http, confirmed = sns_app
    envelope = sns_vector(CONFIRMATION)

    answer = _post_sns(http, envelope, signed_at_s(envelope) - 5 + late_s)

    assert answer.status_code == 401
    assert "replay window" in answer.json()["detail"]
    assert confirmed == []


# --- SendGrid: the published vector, and each of it spoiled -------------------------------


@pytest.fixture
def sendgrid_app(client: Callable[..., TestClient]) -> TestClient:
    """The app with SendGrid's published key, and the reader the published event is about."""
    http = client(sendgrid_public_key=SENDGRID["public_key"])
    subscribe(http.rt, ("hello@world.com", "", ()))  # type: ignore[attr-defined]
    return http


def _post_sendgrid(http: TestClient, body: bytes, headers: dict[str, str], now_s: float) -> object:
    http.app.dependency_overrides[received_at_s] = lambda: now_s  # type: ignore[attr-defined]
    return http.post(
        "/webhooks/sendgrid", content=body, headers={**headers, "Content-Type": "application/json"}
    )


def test_the_published_sendgrid_vector_is_recorded_over_http(sendgrid_app):
    answer = _post_sendgrid(
        sendgrid_app, SENDGRID["payload"].encode(), sendgrid_headers(), SENDGRID_NOW_S
    )

    assert (answer.status_code, answer.json()) == (200, {"received": 1, "recorded": 1})
    [event] = _events(sendgrid_app.rt)
    assert (event.source, event.kind, event.recipient) == ("sendgrid", "hard", "hello@world.com")
    assert _status(sendgrid_app.rt, "hello@world.com") == "bounced"


@pytest.mark.parametrize(
    ("body", "headers", "now_s"),
    [pytest.param(b, h, n, id=what) for what, b, h, n in SENDGRID_TAMPERS]
    + [
        pytest.param(
            SENDGRID["payload"].encode(),
            sendgrid_headers(),
            int(SENDGRID["timestamp"]) + 301,
            id="outside the replay window",
        )
    ],
)
def test_the_published_sendgrid_vector_spoiled_is_401_and_changes_nothing(
    sendgrid_app, body, headers, now_s
):
    answer = _post_sendgrid(sendgrid_app, body, headers, now_s)

    assert answer.status_code == 401, answer.text
    assert _events(sendgrid_app.rt) == []
    assert _status(sendgrid_app.rt, "hello@world.com") == "active"


@pytest.mark.parametrize("content", [None, b"not a certificate"])
def test_an_sns_certificate_file_that_cannot_be_read_is_a_configuration_error(
    make_settings, tmp_path, content
):
    path = tmp_path / "sns.pem"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(ConfigError, match="NEWSLETTER_SNS_CERTIFICATE_FILE"):
        make_settings(sns_certificate_file=str(path))
