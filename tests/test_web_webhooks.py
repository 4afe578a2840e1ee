"""``POST /webhooks/<provider>`` through the ASGI app: what each request records, or why not."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.factories import subscribe
from worker import store
from worker.models import BounceEvent
from worker.runtime import Runtime, open_runtime
from worker.web import create_app

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
        subscriber = store.get_subscriber_by_email(session, email)
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
