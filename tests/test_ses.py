"""The SES event inside a verified SNS envelope, field by field: one event per recipient, the
kind and reason, when it happened, and our Message-ID."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.bounces import ses
from worker.errors import WebhookPayloadError

SNS_TIME = "2026-11-20T10:00:00.000Z"


def envelope(event: dict[str, Any] | str) -> dict[str, Any]:
    message = event if isinstance(event, str) else json.dumps(event)
    return {
        "Type": "Notification",
        "MessageId": "sns-1",
        "TopicArn": "arn:aws:sns:eu-west-1:123:ses",
        "Timestamp": SNS_TIME,
        "Message": message,
    }


def complaint(**fields: Any) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "ann@example.com"}], **fields},
        "mail": {"messageId": "ses-msg-1"},
    }


def bounce(**fields: Any) -> dict[str, Any]:
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "NoEmail",
            "bouncedRecipients": [{"emailAddress": "bob@example.com"}],
            **fields,
        },
        "mail": {"messageId": "ses-msg-2"},
    }


def one(event: dict[str, Any]) -> Any:
    [found] = ses.parse_notification(envelope(event))
    return found


def test_a_complaint_is_a_complaint_with_the_reader_agent_and_its_own_time() -> None:
    found = one(
        complaint(
            complaintFeedbackType="abuse",
            userAgent="Yahoo!-Mail-Feedback/1.0",
            timestamp="2026-11-20T09:00:00.000Z",
        )
    )
    assert (found.provider, found.event_id, found.recipient) == (
        "ses",
        "sns-1:ann@example.com",
        "ann@example.com",
    )
    assert (found.kind, found.reason, found.status) == ("complaint", "feedback", None)
    assert found.diagnostic == "Yahoo!-Mail-Feedback/1.0"
    assert found.occurred_at == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert found.message_id == "ses-msg-1"
    assert found.raw == complaint(
        complaintFeedbackType="abuse",
        userAgent="Yahoo!-Mail-Feedback/1.0",
        timestamp="2026-11-20T09:00:00.000Z",
    )


@pytest.mark.parametrize(
    ("fields", "kind", "reason"),
    [
        ({}, "complaint", "feedback"),  # no feedback type: a complaint all the same
        ({"complaintFeedbackType": "abuse"}, "complaint", "feedback"),
        ({"complaintFeedbackType": "auth-failure"}, "sender", "authfailure"),
        ({"complaintFeedbackType": "not-spam"}, "ignored", "not_spam"),
        ({"complaintFeedbackType": "something-new"}, "complaint", "feedback"),
        # SES did not send: the address complained before (was "userunknown": a crash).
        ({"complaintSubType": "OnAccountSuppressionList"}, "complaint", "feedback"),
        (
            {"complaintSubType": "OnAccountSuppressionList", "complaintFeedbackType": "not-spam"},
            "complaint",
            "feedback",
        ),
    ],
)
def test_complaint_kinds_by_feedback_type(fields: dict[str, Any], kind: str, reason: str) -> None:
    found = one(complaint(**fields))
    assert (found.kind, found.reason) == (kind, reason)


def test_without_its_own_time_an_event_takes_the_envelopes() -> None:
    sns_time = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert one(complaint()).occurred_at == sns_time
    assert one(complaint()).diagnostic == ""
    assert one(bounce()).occurred_at == sns_time
    assert one(bounce(timestamp="2026-11-19T08:00:00Z")).occurred_at == datetime(
        2026, 11, 19, 8, 0, tzinfo=UTC
    )


def test_a_bounce_carries_its_status_and_diagnostic_per_recipient() -> None:
    event = bounce(
        bouncedRecipients=[
            {"emailAddress": "bob@example.com", "status": "5.1.1", "diagnosticCode": "smtp; 550"},
            {"emailAddress": "cy@example.com"},
        ]
    )
    first, second = ses.parse_notification(envelope(event))
    assert (first.recipient, first.kind, first.reason) == ("bob@example.com", "hard", "userunknown")
    assert (first.status, first.diagnostic) == ("5.1.1", "smtp; 550")
    assert (second.recipient, second.status, second.diagnostic) == ("cy@example.com", None, "")
    assert second.event_id == "sns-1:cy@example.com"


@pytest.mark.parametrize(
    ("bounce_type", "sub_type", "expected"),
    [
        ("Permanent", "NoEmail", ("hard", "userunknown", False)),
        ("Transient", "MailboxFull", ("soft", "mailboxfull", False)),
        ("Permanent", "SomethingNew", ("soft", "onhold", True)),
        ("Transient", None, ("soft", "undefined", True)),
        ("Mystery", "Thing", ("soft", "undefined", True)),
        (None, None, ("soft", "undefined", True)),
    ],
)
def test_bounce_types_and_their_fallbacks(
    bounce_type: str | None, sub_type: str | None, expected: tuple[str, str, bool]
) -> None:
    assert ses.bounce_class(bounce_type, sub_type) == expected


def test_the_subtype_is_read_from_the_event() -> None:
    assert one(bounce(bounceType="Transient", bounceSubType="MailboxFull")).reason == "mailboxfull"


@pytest.mark.parametrize(
    ("mail", "message_id"),
    [
        ({"commonHeaders": {"messageId": "<d1.2026-W48@news.example.com>"}}, None),
        ({"commonHeaders": {"messageId": " d1.2026-W48@news.example.com "}}, None),
        ({"headers": [{"name": "Message-ID", "value": "<d1.2026-W48@news.example.com>"}]}, None),
        ({"headers": [{"name": "message-id", "value": "d1.2026-W48@news.example.com"}]}, None),
        (
            {
                "commonHeaders": {"subject": "x"},
                "headers": [
                    {"name": "Subject", "value": "x"},
                    {"name": "Message-Id", "value": "<d1.2026-W48@news.example.com>"},
                ],
            },
            None,
        ),
        ({"headers": [{"name": "Message-ID", "value": 7}], "messageId": "ses-id"}, "ses-id"),
        ({"headers": None, "messageId": "ses-id"}, "ses-id"),
        ({"messageId": "ses-id"}, "ses-id"),
        ({}, None),
    ],
)
def test_our_message_id_is_found_where_ses_echoes_it(
    mail: dict[str, Any], message_id: str | None
) -> None:
    event = {**complaint(), "mail": mail}
    expected = (
        message_id if mail.get("messageId") or mail == {} else "<d1.2026-W48@news.example.com>"
    )
    assert one(event).message_id == expected


def test_an_event_without_mail_has_no_message_id() -> None:
    assert one({**complaint(), "mail": "?"}).message_id is None


def test_events_that_say_nothing_of_an_address_yield_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for event_type in ("Delivery", "Send", "Open", "DeliveryDelay"):
        assert ses.parse_notification(envelope({"eventType": event_type})) == []
    with caplog.at_level(logging.INFO, logger="worker.bounces.ses"):
        assert ses.parse_notification(envelope({"eventType": "Teleport"})) == []
    assert "ignoring unknown SES event type 'Teleport'" in caplog.text


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "ses: SNS Message is not JSON"),
        ("[1]", "ses: SNS Message is not a JSON object"),
        (json.dumps({"eventType": "Bounce"}), "ses: bounce is missing or not an object"),
        (
            json.dumps({"eventType": "Bounce", "bounce": {"bouncedRecipients": []}}),
            "ses: bouncedRecipients is missing or empty",
        ),
        (
            json.dumps({"eventType": "Complaint", "complaint": {"complainedRecipients": [{}]}}),
            "ses: an entry of complainedRecipients has no emailAddress",
        ),
    ],
)
def test_a_message_that_is_not_an_ses_event_says_why(message: str, error: str) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        ses.parse_notification(envelope(message))
    assert str(info.value) == error


def test_an_unsubscribe_confirmation_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.bounces.ses"):
        result = ses.parse({**envelope("x"), "Type": "UnsubscribeConfirmation"})
    assert result == ses.SnsResult()
    assert "SNS subscription to arn:aws:sns:eu-west-1:123:ses was removed" in caplog.text
