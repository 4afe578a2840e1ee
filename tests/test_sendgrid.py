"""SendGrid's event webhook, by its own module: each refusal's exact words over the published
vector, and each event read field by field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.webhook_vectors import SENDGRID, SENDGRID_NOW_S
from worker.bounces import sendgrid
from worker.errors import WebhookAuthError, WebhookPayloadError

BODY = SENDGRID["payload"].encode()


def refusal(signature: str | None, timestamp: str | None, body: bytes = BODY) -> str:
    with pytest.raises(WebhookAuthError) as info:
        sendgrid.verify(body, signature, timestamp, SENDGRID["public_key"], SENDGRID_NOW_S)
    return str(info.value)


def test_the_published_vector_verifies() -> None:
    sendgrid.verify(
        BODY, SENDGRID["signature"], SENDGRID["timestamp"], SENDGRID["public_key"], SENDGRID_NOW_S
    )


def test_each_refusal_says_exactly_why() -> None:
    good, ts = SENDGRID["signature"], SENDGRID["timestamp"]
    missing = "sendgrid: signature or timestamp header is missing"
    assert refusal(None, ts) == missing
    assert refusal(good, None) == missing
    assert refusal(good, "soon") == "sendgrid: timestamp 'soon' is not a Unix time"
    assert refusal("#" + good, ts) == "sendgrid: signature is not base64"
    assert refusal(good, ts, BODY + b" ") == "sendgrid: signature does not match"


def event(**fields: Any) -> dict[str, Any]:
    return {
        "email": "ann@example.com",
        "sg_event_id": "evt-1",
        "timestamp": 1_700_000_000,
        **fields,
    }


def one(**fields: Any) -> Any:
    [found] = sendgrid.parse(json.dumps([event(**fields)]).encode())
    return found


def test_a_bounce_is_read_field_by_field() -> None:
    found = one(
        event="bounce",
        type="bounce",
        status="5.1.1",
        reason="550 5.1.1 user unknown",
        **{"smtp-id": "<d1.2026-W48@news.example.com>"},
    )
    assert (found.provider, found.event_id, found.recipient) == (
        "sendgrid",
        "evt-1",
        "ann@example.com",
    )
    assert (found.kind, found.reason, found.status) == ("hard", "userunknown", "5.1.1")
    assert found.diagnostic == "550 5.1.1 user unknown"
    assert found.occurred_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert found.message_id == "<d1.2026-W48@news.example.com>"


@pytest.mark.parametrize(
    ("fields", "kind", "reason", "status", "diagnostic"),
    [
        ({"event": "spamreport"}, "complaint", "feedback", None, ""),
        # A complaint is a complaint whatever its text says.
        ({"event": "spamreport", "reason": "mailbox full"}, "complaint", "feedback", None,
         "mailbox full"),
        ({"event": "deferred", "response": "421 try later"}, "sender", "toomanyconn", None,
         "421 try later"),
        ({"event": "deferred", "response": "nothing said"}, "soft", "expired", None,
         "nothing said"),
        ({"event": "dropped", "reason": "Bounced Address"}, "hard", "userunknown", None,
         "Bounced Address"),
        ({"event": "dropped", "reason": "Spam Content (by rule)"}, "sender", "spamdetected",
         None, "Spam Content (by rule)"),
        ({"event": "dropped"}, "sender", "policyviolation", None, ""),
        ({"event": "bounce", "type": "blocked", "reason": "nothing said"}, "soft", "undefined",
         None, "nothing said"),
        ({"event": "bounce", "reason": "nothing said"}, "soft", "onhold", None, "nothing said"),
        ({"event": "bounce", "type": None, "reason": "x"}, "soft", "onhold", None, "x"),
        ({"event": "bounce", "type": "new", "reason": "x"}, "soft", "onhold", None, "x"),
        ({"event": "bounce", "bounce_classification": "Reputation", "reason": "user unknown"},
         "sender", "blocked", None, "user unknown"),
        ({"event": "bounce", "bounce_classification": "Unclassified", "reason": "user unknown",
          "status": "5.1.1"}, "hard", "userunknown", "5.1.1", "user unknown"),
        ({"event": "bounce", "reason": "550 5.2.2 mailbox full", "status": 552}, "soft",
         "mailboxfull", "5.2.2", "550 5.2.2 mailbox full"),
        ({"event": "bounce", "response": "the response", "reason": "the reason"}, "soft",
         "onhold", None, "the response"),
    ],
)  # fmt: skip
def test_event_kinds_reasons_and_texts(
    fields: dict[str, Any], kind: str, reason: str, status: str | None, diagnostic: str
) -> None:
    found = one(**fields)
    assert (found.kind, found.reason, found.status, found.diagnostic) == (
        kind,
        reason,
        status,
        diagnostic,
    )


@pytest.mark.parametrize("smtp_id", ["", None, 7])
def test_no_usable_smtp_id_is_no_message_id(smtp_id: object) -> None:
    assert one(event="spamreport", **{"smtp-id": smtp_id}).message_id is None


def test_other_events_yield_nothing() -> None:
    body = json.dumps([event(event="delivered"), event(event="open"), event(event="bounce")])
    assert [e.kind for e in sendgrid.parse(body.encode())] == ["soft"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "sendgrid: body is not JSON: "),
        (b"{}", "sendgrid: body is not a JSON array of events"),
        (b'[{"event": "open"}, 3]', "sendgrid: event 1 is not an object"),
        (b'[{"event": "bounce", "sg_event_id": "e"}]', "sendgrid: event 0 has no email"),
        (b'[{"event": "bounce", "email": "", "sg_event_id": "e"}]',
         "sendgrid: event 0 has no email"),
        (b'[{"event": "open"}, {"event": "bounce", "email": "a@x.org"}]',
         "sendgrid: event 1 has no sg_event_id"),
    ],
)  # fmt: skip
def test_a_batch_that_is_not_one_says_why(body: bytes, message: str) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        sendgrid.parse(body)
    assert str(info.value) == message or (
        message.endswith(": ") and str(info.value).startswith(message)
    )
