"""Transactional mail (confirmations): sent when it still applies, and a refusal at RCPT is a
bounce like any other."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import SmtpHandler
from tests.factories import subscribe
from worker.models import BounceEvent, Subscriber
from worker.runtime import Runtime
from worker.sending import transactional
from worker.subscribers import queries as subscribers
from worker.subscribers import service as readers


def _pending(rt: Runtime, email: str) -> Subscriber:
    subscribe(rt, (email, "Pat", ()), confirmed=False)
    with rt.session() as session:
        found = subscribers.get_subscriber_by_email(session, email)
    assert found is not None and found.id is not None
    return found


def _events(rt: Runtime) -> list[tuple[str | None, str, str, str, str | None]]:
    with rt.session() as session:
        return [
            (e.recipient, e.kind, e.reason, e.source, e.status_code)
            for e in session.execute(select(BounceEvent)).scalars()
        ]


def test_a_confirmation_goes_to_a_pending_reader(rt: Runtime, smtp: SmtpHandler) -> None:
    pat = _pending(rt, "pat@example.com")
    assert transactional.send(rt, readers.MAIL_CONFIRM, pat.id or 0) == "sent"
    [mail] = smtp.to("pat@example.com")
    assert mail.message["Subject"] == "Confirm your subscription to Weekly AI Tool Verdicts"
    assert mail.mail_from == rt.settings.bounce_address
    assert _events(rt) == []


def test_a_5xx_at_rcpt_becomes_a_hard_bounce_and_suppresses_the_reader(
    rt: Runtime, smtp: SmtpHandler
) -> None:
    pat = _pending(rt, "gone@example.com")
    smtp.replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: Recipient address rejected"
    outcome = transactional.send(rt, readers.MAIL_CONFIRM, pat.id or 0)
    assert outcome.startswith("refused: ")
    assert smtp.received == []
    assert _events(rt) == [("gone@example.com", "hard", "userunknown", "smtp", "550")]
    with rt.session() as session:
        again = subscribers.get_subscriber_by_email(session, "gone@example.com")
    assert again is not None and again.status == "bounced"
    # Bounced: the next confirmation for this reader is moot.
    assert transactional.send(rt, readers.MAIL_CONFIRM, pat.id or 0).startswith("skipped")


def test_a_full_mailbox_at_rcpt_is_a_soft_bounce(rt: Runtime, smtp: SmtpHandler) -> None:
    pat = _pending(rt, "full@example.com")
    smtp.replies["full@example.com"] = "552 5.2.2 Mailbox full"
    assert transactional.send(rt, readers.MAIL_CONFIRM, pat.id or 0).startswith("refused: ")
    assert _events(rt) == [("full@example.com", "soft", "mailboxfull", "smtp", "552")]
    with rt.session() as session:
        again = subscribers.get_subscriber_by_email(session, "full@example.com")
    assert again is not None and again.status == "pending"


@pytest.mark.parametrize(
    ("kind", "confirmed", "expected"),
    [
        (readers.MAIL_CONFIRM, True, "skipped: subscriber is active"),
        (readers.MAIL_ALREADY, False, "skipped: subscriber is pending"),
    ],
)
def test_a_mail_that_no_longer_applies_is_skipped(
    rt: Runtime, smtp: SmtpHandler, kind: str, confirmed: bool, expected: str
) -> None:
    subscribe(rt, ("ann@example.com", "", ()), confirmed=confirmed)
    with rt.session() as session:
        ann = subscribers.get_subscriber_by_email(session, "ann@example.com")
    assert ann is not None and ann.id is not None
    assert transactional.send(rt, kind, ann.id) == expected
    assert smtp.received == []
