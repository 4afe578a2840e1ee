"""The SMTP transport against a real aiosmtpd server: replies map to our errors, bytes arrive
exactly as sent, connections are reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SmtpHandler
from worker.errors import ConnectionThrottled, RecipientRefused, TemporaryFailure
from worker.message import _qp
from worker.transport import OutboxTransport, SmtpTarget, SmtpTransport

MESSAGE = (
    b"From: a@example.com\r\nTo: b@example.com\r\nSubject: dots\r\n\r\n"
    b".starts with a dot\r\nmiddle\r\n..two dots\r\n.\r\nend\r\n"
)


@pytest.fixture(params=["pipelining", "one command at a time"])
def transport(request: pytest.FixtureRequest, smtp_url: str, smtp: SmtpHandler) -> SmtpTransport:
    """Both ways of talking: MAIL, RCPT and DATA in one write when the server offers
    PIPELINING (Postfix does), else each waiting for its reply."""
    smtp.pipelining = request.param == "pipelining"
    return SmtpTransport(SmtpTarget.from_url(smtp_url))


def test_a_message_arrives_byte_for_byte_even_with_lines_starting_with_dots(
    transport: SmtpTransport,
    smtp: SmtpHandler,
) -> None:
    transport.send("bounces+d1.x@example.com", "b@example.com", MESSAGE)
    [received] = smtp.received
    assert received.data == MESSAGE
    assert received.mail_from == "bounces+d1.x@example.com"


def test_one_connection_carries_many_messages(transport: SmtpTransport, smtp: SmtpHandler) -> None:
    for i in range(5):
        transport.send("s@example.com", f"r{i}@example.com", MESSAGE)
    assert len(transport._all) == 1
    assert len(smtp.received) == 5
    transport.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("450 4.2.1 Mailbox busy, try later", TemporaryFailure),
        ("421 4.7.0 Too many connections, closing", ConnectionThrottled),
        ("550 5.1.1 <x@example.com>: User unknown", RecipientRefused),
    ],
)
def test_replies_map_to_our_errors_with_their_code(
    transport: SmtpTransport,
    smtp: SmtpHandler,
    reply: str,
    error: type[Exception],
) -> None:
    smtp.replies["x@example.com"] = reply
    with pytest.raises(error) as info:
        transport.send("s@example.com", "x@example.com", MESSAGE)
    assert info.value.code == int(reply[:3])  # type: ignore[attr-defined]
    assert reply[4:] in info.value.text  # type: ignore[attr-defined]
    transport._paused_until = 0.0
    transport.send("s@example.com", "ok@example.com", MESSAGE)  # the next message still goes
    assert smtp.to("ok@example.com")


def test_a_server_that_is_not_there_is_a_temporary_failure() -> None:
    transport = SmtpTransport(SmtpTarget.from_url("smtp://127.0.0.1:9"), timeout_s=2)
    with pytest.raises(TemporaryFailure, match="cannot connect"):
        transport.send("s@example.com", "r@example.com", MESSAGE)


def test_quoted_printable_never_starts_a_line_with_a_dot() -> None:
    encoded = _qp(".hidden\n" + "x" * 75 + ".y\n.")
    assert not any(line.startswith(b".") for line in encoded.split(b"\r\n"))
    import quopri

    assert (
        quopri.decodestring(encoded).replace(b"\r\n", b"\n")
        == (".hidden\n" + "x" * 75 + ".y\n.").encode()
    )


def test_the_outbox_writes_one_file_per_message_id(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path)
    data = b"Message-ID: <d7.2026-W48@news.example.com>\r\n\r\nhi\r\n"
    outbox.send("bounces+d7.x@news.example.com", "r@example.com", data)
    outbox.send("bounces+d7.x@news.example.com", "r@example.com", data)
    [path] = tmp_path.glob("*.eml")
    assert path.name == "d7.2026-W48_news.example.com.eml"
    assert path.read_bytes().startswith(b"Return-Path: <bounces+d7.x@news.example.com>\r\n")
