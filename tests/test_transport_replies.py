"""The SMTP transport against a bare scripted server (tests/bare_smtp.py), for what aiosmtpd will
not say: refusals at HELO, MAIL FROM and the final dot, a greeting that never comes in time, a
connection the server closed while idle, a reply line past smtplib's limit. What each test
checks is what a caller sees (the error's class, recipient, code and text) and what the server
got (its connections, commands and messages)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.bare_smtp import PIPELINING, BareServer, Script
from tests.conftest import SmtpHandler
from tests.imap_server import issue_certificates
from worker.errors import (
    ConnectionThrottled,
    DeliveryError,
    PermanentFailure,
    RecipientRefused,
    TemporaryFailure,
)
from worker.sending.transport import SmtpTarget, SmtpTransport

MESSAGE = b"From: a@example.com\r\nTo: r@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
Bare = Callable[..., BareServer]


def _transport(server: BareServer, **options: float) -> SmtpTransport:
    options.setdefault("command_timeout_s", 2)
    options.setdefault("throttle_pause_s", 0)
    return SmtpTransport(SmtpTarget.from_url(server.url), **options)


def _facts(error: DeliveryError) -> tuple[str, int | None, str]:
    return error.recipient, error.code, error.text


# --- the message as sent -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "arrives"),
    [
        (b".first line is a dot\r\nsecond\r\n", b".first line is a dot\r\nsecond\r\n"),
        (b"no line break at the end", b"no line break at the end\r\n"),
        (b"a\r\n.b", b"a\r\n.b\r\n"),
    ],
    ids=["leading dot", "no final CRLF", "both"],
)
def test_what_the_server_stores_is_what_was_given_with_a_final_line_break(
    smtp_url: str, smtp: SmtpHandler, data: bytes, arrives: bytes
) -> None:
    transport = SmtpTransport(SmtpTarget.from_url(smtp_url))
    transport.send("s@example.com", "r@example.com", data)
    transport.close()
    assert [r.data for r in smtp.received] == [arrives]


def test_the_transport_connects_to_the_host_the_url_names(bare: Bare) -> None:
    script = Script()
    server = bare(script, host="127.0.0.2")  # loopback, but not the default address
    assert _transport(server).send("s@example.com", "r@example.com", MESSAGE) == "ok"
    assert script.messages == [MESSAGE]


# --- the greeting, EHLO and HELO -----------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["smtp", "smtps"])
def test_a_greeting_slower_than_the_command_timeout_is_a_temporary_failure(
    bare: Bare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: bool
) -> None:
    context = None
    if tls:
        files = issue_certificates(tmp_path)
        monkeypatch.setenv("SSL_CERT_FILE", str(files.ca))
        context = files.server_context()
    script = Script(greeting_delay_s=1.5)
    server = bare(script, tls=context)
    with pytest.raises(TemporaryFailure) as info:
        _transport(server, command_timeout_s=0.5).send("s@example.com", "r@example.com", MESSAGE)
    assert info.value.text.startswith(f"cannot connect to 127.0.0.1:{server.port}: ")
    assert info.value.text.endswith("timed out")
    assert script.messages == []


@pytest.mark.parametrize(
    ("ehlo", "helo", "commands"),
    [
        ("200 bare.example.com", None, ["EHLO", "MAIL", "RCPT"]),
        ("299 bare.example.com", None, ["EHLO", "MAIL", "RCPT"]),
        ("500 5.5.1 unrecognized", "250 bare.example.com", ["EHLO", "HELO", "MAIL"]),
        ("502 5.5.2 not here", "200 bare.example.com", ["EHLO", "HELO", "MAIL"]),
        ("502 5.5.2 not here", "299 bare.example.com", ["EHLO", "HELO", "MAIL"]),
    ],
)
def test_any_2xx_to_ehlo_is_taken_and_a_refused_ehlo_falls_back_to_helo(
    bare: Bare, ehlo: str, helo: str | None, commands: list[str]
) -> None:
    script = Script(ehlos=[ehlo], replies={"HELO": [helo]} if helo else {})
    _transport(bare(script)).send("s@example.com", "r@example.com", MESSAGE)
    assert script.commands[:3] == commands
    assert script.messages == [MESSAGE]


@pytest.mark.parametrize(
    ("helo", "error"),
    [("554 5.7.1 go away", PermanentFailure), ("450 4.3.2 not now", TemporaryFailure)],
)
def test_a_refused_helo_carries_the_recipient_code_and_text_and_blames_no_address(
    bare: Bare, helo: str, error: type[DeliveryError]
) -> None:
    script = Script(ehlos=["500 5.5.1 unrecognized"], replies={"HELO": [helo]})
    with pytest.raises(error) as info:
        _transport(bare(script)).send("s@example.com", "r@example.com", MESSAGE)
    assert not isinstance(info.value, RecipientRefused)
    assert _facts(info.value) == ("r@example.com", int(helo[:3]), helo[4:])
    assert "MAIL" not in script.commands


# --- MAIL FROM, RCPT TO and DATA -----------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one at a time"])
def test_a_5xx_at_mail_from_is_a_permanent_failure_and_the_connection_goes_on(
    bare: Bare, pipelining: bool
) -> None:
    replies: dict[str, list[str | None]] = {"MAIL": ["553 5.1.8 sender address rejected"]}
    if pipelining:  # RCPT and DATA went in the same write, and the server answers them too
        replies |= {"RCPT": ["503 5.5.1 need MAIL"], "DATA": ["503 5.5.1 need RCPT"]}
    script = Script(ehlos=[PIPELINING if pipelining else "250 bare.example.com"], replies=replies)
    transport = _transport(bare(script))
    with pytest.raises(PermanentFailure) as info:
        transport.send("s@example.com", "r@example.com", MESSAGE)
    assert not isinstance(info.value, RecipientRefused)  # the sender, not the address
    assert _facts(info.value) == ("r@example.com", 553, "5.1.8 sender address rejected")
    transport.send("s@example.com", "r2@example.com", MESSAGE)
    assert script.messages == [MESSAGE]
    assert len(script.connections) == 1
    assert "RSET" in script.commands


def test_a_refused_recipient_whose_data_was_taken_anyway_ends_with_an_empty_message(
    bare: Bare,
) -> None:
    # RFC 2920 §3.1: a pipelining server may answer DATA with 354 after refusing RCPT.
    script = Script(
        ehlos=[PIPELINING],
        replies={"RCPT": ["550 5.1.1 no such user"]},
        after_dot=[(0.0, "554 5.5.1 no valid recipients")],
    )
    transport = _transport(bare(script))
    with pytest.raises(RecipientRefused) as info:
        transport.send("s@example.com", "gone@example.com", MESSAGE)
    assert _facts(info.value) == ("gone@example.com", 550, "5.1.1 no such user")
    transport.send("s@example.com", "r@example.com", MESSAGE)  # on the same connection
    assert script.messages == [b"", MESSAGE]
    assert script.commands[1:] == ["MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA"]
    assert len(script.connections) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("554 5.7.1 rejected as spam", PermanentFailure),
        ("552 5.3.4 message too big", PermanentFailure),
        ("451 4.3.0 try again later", TemporaryFailure),
    ],
)
def test_a_refusal_after_the_final_dot_carries_its_code_and_text(
    bare: Bare, reply: str, error: type[DeliveryError]
) -> None:
    script = Script(after_dot=[(0.0, reply)])
    transport = _transport(bare(script))
    with pytest.raises(error) as info:
        transport.send("s@example.com", "r@example.com", MESSAGE)
    assert not isinstance(info.value, RecipientRefused)
    assert _facts(info.value) == ("r@example.com", int(reply[:3]), reply[4:])
    assert transport.send("s@example.com", "r@example.com", MESSAGE) == "ok"  # the next goes


# --- lost connections ----------------------------------------------------------------------------


def test_a_connection_dropped_after_a_temporary_failure_is_closed_before_the_next(
    bare: Bare,
) -> None:
    script = Script(replies={"RCPT": ["450 4.2.1 mailbox busy"]})
    transport = _transport(bare(script))
    with pytest.raises(TemporaryFailure):
        transport.send("s@example.com", "r@example.com", MESSAGE)
    # The bare server serves one connection at a time: a connection left open would keep the
    # next one waiting for its greeting.
    transport.send("s@example.com", "r@example.com", MESSAGE)
    assert len(script.connections) == 2
    assert script.ended[0] <= script.connections[1]
    assert script.messages == [MESSAGE]


def test_a_connection_the_server_closed_while_idle_is_opened_again_once(bare: Bare) -> None:
    script = Script(idle_drops=1)
    transport = _transport(bare(script))
    transport.send("s@example.com", "r1@example.com", MESSAGE)
    assert transport.send("s@example.com", "r2@example.com", MESSAGE) == "ok"
    assert len(script.connections) == 2
    assert script.messages == [MESSAGE, MESSAGE]


def test_a_new_connection_lost_before_the_message_is_not_tried_again(bare: Bare) -> None:
    script = Script(replies={"MAIL": [None]})  # hangs up at MAIL FROM
    transport = _transport(bare(script))
    with pytest.raises(TemporaryFailure) as info:
        transport.send("s@example.com", "r@example.com", MESSAGE)
    assert (info.value.recipient, info.value.code) == ("r@example.com", None)
    assert info.value.text.startswith("connection lost: ")
    assert len(script.connections) == 1


def test_a_reused_connection_lost_is_retried_on_one_fresh_connection_only(bare: Bare) -> None:
    # The first connection is closed while idle; the fresh one hangs up at MAIL FROM.
    script = Script(idle_drops=1, replies={"MAIL": ["250 ok", None]})
    transport = _transport(bare(script))
    transport.send("s@example.com", "r1@example.com", MESSAGE)
    with pytest.raises(TemporaryFailure) as info:
        transport.send("s@example.com", "r2@example.com", MESSAGE)
    assert (info.value.recipient, info.value.code) == ("r2@example.com", None)
    assert info.value.text.startswith("connection lost: ")
    assert len(script.connections) == 2
    assert script.messages == [MESSAGE]


def test_a_reply_line_past_smtplibs_limit_is_a_temporary_smtp_error(bare: Bare) -> None:
    script = Script(replies={"MAIL": ["250 " + "x" * 9000]})
    with pytest.raises(TemporaryFailure) as info:
        _transport(bare(script)).send("s@example.com", "r@example.com", MESSAGE)
    assert _facts(info.value) == ("r@example.com", None, "SMTP error: (500, 'Line too long.')")
    assert script.messages == []


def test_a_refusal_is_reported_even_when_the_server_hangs_up_at_rset(bare: Bare) -> None:
    script = Script(replies={"MAIL": ["554 5.7.1 sender blocked"], "RSET": [None]})
    transport = _transport(bare(script))
    with pytest.raises(PermanentFailure) as info:
        transport.send("s@example.com", "r@example.com", MESSAGE)
    assert _facts(info.value) == ("r@example.com", 554, "5.7.1 sender blocked")
    transport.send("s@example.com", "r2@example.com", MESSAGE)  # on a new connection
    assert len(script.connections) == 2
    assert script.messages == [MESSAGE]


def test_closing_after_the_server_hung_up_raises_nothing(bare: Bare) -> None:
    script = Script(idle_drops=1)
    transport = _transport(bare(script))
    transport.send("s@example.com", "r@example.com", MESSAGE)
    transport.close()  # QUIT on a connection the server already closed
    assert script.messages == [MESSAGE]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one at a time"])
@pytest.mark.parametrize(
    ("verb", "reply", "error"),
    [
        ("RCPT", "421 4.7.0 too many errors, closing", ConnectionThrottled),
        ("DATA", "554 5.7.1 relay access denied", PermanentFailure),
        ("DATA", "451 4.3.0 queue full", TemporaryFailure),
    ],
)
def test_a_refusal_at_rcpt_or_data_carries_its_code_and_blames_the_address_only_at_rcpt(
    bare: Bare, pipelining: bool, verb: str, reply: str, error: type[DeliveryError]
) -> None:
    script = Script(ehlos=[PIPELINING if pipelining else "250 bare"], replies={verb: [reply]})
    transport = _transport(bare(script))
    with pytest.raises(error) as info:
        transport.send("s@example.com", "r@example.com", MESSAGE)
    assert type(info.value) is error  # a DATA refusal is not the address's fault
    assert _facts(info.value) == ("r@example.com", int(reply[:3]), reply[4:])
    transport.send("s@example.com", "r@example.com", MESSAGE)
    assert script.messages == [MESSAGE]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one at a time"])
def test_a_251_at_rcpt_will_forward_and_the_message_goes(bare: Bare, pipelining: bool) -> None:
    script = Script(
        ehlos=[PIPELINING if pipelining else "250 bare"],
        replies={"RCPT": ["251 2.1.5 user not local; will forward"]},
    )
    assert _transport(bare(script)).send("s@example.com", "r@example.com", MESSAGE) == "ok"
    assert script.messages == [MESSAGE]


def test_close_says_quit_on_every_connection_it_opened(bare: Bare) -> None:
    script = Script()
    transport = _transport(bare(script))
    transport.send("s@example.com", "r@example.com", MESSAGE)
    transport.close()
    assert script.commands[-1] == "QUIT"
    transport.close()  # nothing left to close
    assert script.commands.count("QUIT") == 1


def test_the_defaults_follow_rfc_5321_and_a_421_pauses_half_a_minute() -> None:
    transport = SmtpTransport(SmtpTarget.from_url("smtp://mx.example.com"))
    assert (transport.command_timeout_s, transport.data_timeout_s) == (300, 600)
    assert transport.throttle_pause_s == 30
