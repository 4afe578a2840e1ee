"""The SMTP transport against a real aiosmtpd server: replies map to our errors, bytes arrive
exactly as sent, connections are reused."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.bare_smtp import BareServer, Script
from tests.conftest import SmtpHandler
from worker.errors import (
    ConnectionThrottled,
    PermanentFailure,
    RecipientRefused,
    TemporaryFailure,
    UncertainDelivery,
)
from worker.sending.message import _qp
from worker.sending.transport import OutboxTransport, SmtpTarget, SmtpTransport

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
    smtp_url: str,
    smtp: SmtpHandler,
    reply: str,
    error: type[Exception],
) -> None:
    transport = SmtpTransport(SmtpTarget.from_url(smtp_url), throttle_pause_s=1.0)
    smtp.replies["x@example.com"] = reply
    with pytest.raises(error) as info:
        transport.send("s@example.com", "x@example.com", MESSAGE)
    assert info.value.code == int(reply[:3])  # type: ignore[attr-defined]
    assert reply[4:] in info.value.text  # type: ignore[attr-defined]
    started = time.monotonic()
    transport.send("s@example.com", "ok@example.com", MESSAGE)  # the next message still goes
    waited = time.monotonic() - started
    assert smtp.to("ok@example.com")
    # Only a 421 makes the transport wait before it opens another connection.
    assert (waited >= 0.9) == (reply.startswith("421")), waited


# --- what aiosmtpd will not do: a bare server that follows a script ----------------------------


@pytest.mark.parametrize("where", ["greeting", "EHLO"])
def test_a_421_at_the_greeting_or_ehlo_pauses_new_connections(
    bare: Callable[..., BareServer], where: str
) -> None:
    busy = "421 4.7.0 bare.example.com Too many connections, try later"
    script = Script(
        greetings=[busy if where == "greeting" else "220 ready", "220 ready"],
        ehlos=[busy if where == "EHLO" else "250 ok", "250 ok"],
    )
    server = bare(script)
    transport = SmtpTransport(SmtpTarget.from_url(server.url), throttle_pause_s=1.5)

    with pytest.raises(ConnectionThrottled) as info:
        transport.send("s@example.com", "r@example.com", MESSAGE)
    assert info.value.code == 421
    transport.send("s@example.com", "r@example.com", MESSAGE)

    first, second = script.connections
    assert second - first >= 1.5  # backed off instead of knocking again at once
    assert len(script.messages) == 1


def test_a_connection_lost_after_the_final_dot_is_uncertain_and_never_sent_again_here(
    bare: Callable[..., BareServer],
) -> None:
    script = Script(after_dot=[(0.0, "250 ok"), (0.0, None)])
    server = bare(script)
    transport = SmtpTransport(SmtpTarget.from_url(server.url))
    transport.send("s@example.com", "r1@example.com", MESSAGE)  # opens the connection

    with pytest.raises(UncertainDelivery, match="no reply after the message was sent"):
        transport.send("s@example.com", "r2@example.com", MESSAGE)  # on the reused connection

    assert len(script.messages) == 2  # the second went out once, not again on a new connection
    assert len(script.connections) == 1


def test_the_final_reply_has_a_timeout_of_its_own(bare: Callable[..., BareServer]) -> None:
    # A content filter answers the final dot after 2 s: longer than a command may take here,
    # within what the final reply may take (RFC 5321 §4.5.3.2.6 gives it 10 minutes).
    script = Script(after_dot=[(2.0, "250 ok"), (2.0, "250 ok")])
    server = bare(script)
    patient = SmtpTransport(SmtpTarget.from_url(server.url), command_timeout_s=1, data_timeout_s=5)
    assert patient.send("s@example.com", "r@example.com", MESSAGE) == "ok"
    patient.close()  # the bare server talks to one connection at a time

    hasty = SmtpTransport(SmtpTarget.from_url(server.url), command_timeout_s=1, data_timeout_s=1)
    with pytest.raises(UncertainDelivery) as info:
        hasty.send("s@example.com", "r@example.com", MESSAGE)
    assert (info.value.recipient, info.value.code) == ("r@example.com", None)
    assert info.value.text.startswith("no reply after the message was sent: ")
    assert info.value.text.endswith("timed out")  # what went wrong, not only its class
    assert len(script.messages) == 2  # nothing resent after the timeout


def test_the_final_reply_waits_ten_minutes_by_default(smtp_url: str) -> None:
    transport = SmtpTransport(SmtpTarget.from_url(smtp_url))
    assert transport.data_timeout_s == 600


def test_a_server_that_is_not_there_is_a_temporary_failure() -> None:
    transport = SmtpTransport(SmtpTarget.from_url("smtp://127.0.0.1:9"), command_timeout_s=2)
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


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://mx.example.com", SmtpTarget("mx.example.com", 25, False, False, None, None)),
        ("smtp://mx.example.com:2525",
         SmtpTarget("mx.example.com", 2525, False, False, None, None)),
        ("smtps://mx.example.com", SmtpTarget("mx.example.com", 465, True, False, None, None)),
        ("smtp://mx.example.com:587?starttls=true",
         SmtpTarget("mx.example.com", 587, False, True, None, None)),
        ("smtp://mx.example.com?starttls=1",
         SmtpTarget("mx.example.com", 25, False, True, None, None)),
        ("smtp://mx.example.com?starttls=YES",
         SmtpTarget("mx.example.com", 25, False, True, None, None)),
        ("smtp://mx.example.com?starttls=no",
         SmtpTarget("mx.example.com", 25, False, False, None, None)),
        # Implicit TLS already encrypts: STARTTLS on top makes no sense.
        ("smtps://mx.example.com?starttls=true",
         SmtpTarget("mx.example.com", 465, True, False, None, None)),
        ("smtp://us%40er:p%3Ass@mx.example.com",
         SmtpTarget("mx.example.com", 25, False, False, "us@er", "p:ss")),
    ],
)  # fmt: skip
def test_the_smtp_url_names_host_port_security_and_credentials(
    url: str, target: SmtpTarget
) -> None:
    assert SmtpTarget.from_url(url) == target


@pytest.mark.parametrize(
    "url", ["http://mx.example.com", "smtp://", "mx.example.com:25", "SMTPS://", "smtps://"]
)
def test_a_bad_smtp_url_names_the_setting(url: str) -> None:
    from worker.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        SmtpTarget.from_url(url)
    assert str(info.value).startswith("NEWSLETTER_SMTP_URL")
    assert str(info.value) == "NEWSLETTER_SMTP_URL: must look like smtp://host:port"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("400 4.0.0 try later", TemporaryFailure),
        ("499 4.0.0 odd", TemporaryFailure),
        ("500 5.0.0 go away", PermanentFailure),
        ("554 5.7.1 no", PermanentFailure),
    ],
)
def test_a_refusal_at_the_greeting_carries_the_recipient_code_and_text(
    bare: Callable[..., BareServer], reply: str, error: type[Exception]
) -> None:
    server = bare(Script(greetings=[reply, "220 ready"]))
    transport = SmtpTransport(SmtpTarget.from_url(server.url), throttle_pause_s=0)
    with pytest.raises(error) as info:
        transport.send("s@example.com", "r@example.com", MESSAGE)
    assert not isinstance(info.value, RecipientRefused)  # not the address's fault
    assert (
        (info.value.recipient, info.value.code, info.value.text)
        == (  # type: ignore[attr-defined]
            "r@example.com",
            int(reply[:3]),
            reply[4:],
        )
    )


def test_the_outbox_names_each_file_after_its_message_id(tmp_path: Path) -> None:
    from worker.sending.transport import make_transport

    outbox = make_transport(None, tmp_path / "a" / "outbox")
    assert isinstance(outbox, OutboxTransport)
    data = b"Subject: x\r\nmessage-id: <d1.2026-W48@news.example.com>\r\n\r\nbody\r\n"
    said = outbox.send("bounces+d1@news.example.com", "r@example.com", data)
    assert said == "written to d1.2026-W48_news.example.com.eml"
    written = (tmp_path / "a" / "outbox" / "d1.2026-W48_news.example.com.eml").read_bytes()
    assert written == b"Return-Path: <bounces+d1@news.example.com>\r\n" + data
    outbox.send("bounces+d1@news.example.com", "r@example.com", data)  # again: the same file
    assert len(list((tmp_path / "a" / "outbox").iterdir())) == 1


def test_a_url_makes_an_smtp_transport_with_its_data_timeout() -> None:
    from worker.sending.transport import make_transport

    smtp = make_transport("smtp://mx.example.com:2525", Path("unused"), data_timeout_s=42)
    assert isinstance(smtp, SmtpTransport)
    assert smtp.target == SmtpTarget("mx.example.com", 2525, False, False, None, None)
    assert smtp.data_timeout_s == 42


def test_the_outbox_names_a_message_without_a_message_id_after_time_and_recipient(
    tmp_path: Path,
) -> None:
    outbox = OutboxTransport(tmp_path)
    data = b"Subject: no id\r\n\r\nbody\r\n"
    first = outbox.send("s@example.com", "r+x@example.com", data)
    second = outbox.send("s@example.com", "r+x@example.com", data)
    assert first != second  # two files, nothing overwritten
    names = sorted(p.name for p in tmp_path.iterdir())  # and no temporary file left behind
    assert [n.split(".", 1)[1] for n in names] == ["r_x_example.com.eml"] * 2
    assert all(n.split(".", 1)[0].isdigit() for n in names)
