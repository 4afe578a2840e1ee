"""What the SMTP transport does with what a server offers or demands, against real aiosmtpd
servers: TLS from the first byte (``smtps://``), STARTTLS (``?starttls=true``), AUTH with the
URL's credentials, and SMTPUTF8 for addresses that are not ASCII.

Each TLS server has a certificate from a private CA made for the test; the transport uses the
default context, so the test trusts that CA the way an operator would, with ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.conftest import free_port
from tests.imap_server import TlsFiles, issue_certificates
from worker.errors import PermanentFailure, RecipientRefused, TemporaryFailure
from worker.sending.transport import SmtpTarget, SmtpTransport

MESSAGE = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


@dataclass
class Seen:
    """One message as the server got it, with how the session that carried it was secured."""

    mail_from: str
    rcpt_tos: list[str]
    smtp_utf8: bool
    data: bytes
    encrypted: bool
    login: str | None


@dataclass
class Recorder:
    """An aiosmtpd handler and authenticator that remembers messages and login attempts."""

    pipelining: bool = True
    users: dict[str, str] = field(default_factory=lambda: {"news": "s3cret:pw"})
    messages: list[Seen] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content
        assert isinstance(data, bytes)
        login = session.auth_data if session.authenticated else None
        assert server.transport is not None
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        with self.lock:
            self.messages.append(
                Seen(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    envelope.smtp_utf8,
                    data,
                    encrypted,
                    login.decode() if isinstance(login, bytes) else login,
                )
            )
        return "250 2.0.0 Ok: queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        with self.lock:
            self.logins.append((user, password))
        if self.users.get(user) != password:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=data.login)


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TlsFiles:
    """A private CA and a certificate it issued for 127.0.0.1; the CA is trusted."""
    files = issue_certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(files.ca))
    return files


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[Recorder, int]]]:
    """Start an aiosmtpd server: ``implicit`` TLS context, else SMTP options (``tls_context``
    for STARTTLS, ``auth_require_tls``, ``enable_SMTPUTF8``)."""
    controllers: list[Controller] = []

    def start(
        implicit: ssl.SSLContext | None = None, pipelining: bool = True, **options: Any
    ) -> tuple[Recorder, int]:
        options.setdefault("enable_SMTPUTF8", False)  # the Controller turns it on by default
        recorder = Recorder(pipelining=pipelining)
        port = free_port()
        controller = Controller(
            recorder,
            hostname="127.0.0.1",
            port=port,
            decode_data=False,
            ready_timeout=10,
            ssl_context=implicit,
            authenticator=recorder.authenticate,
            **options,
        )
        controller.start()
        controllers.append(controller)
        return recorder, port

    yield start
    for controller in controllers:
        controller.stop()


def _send(url: str, recipient: str = "r@example.com") -> str:
    transport = SmtpTransport(SmtpTarget.from_url(url), command_timeout_s=5)
    try:
        return transport.send("bounces@news.example.com", recipient, MESSAGE)
    finally:
        transport.close()


# --- TLS ---------------------------------------------------------------------------------------


def test_smtps_speaks_tls_from_the_first_byte_to_a_trusted_server(
    tls: TlsFiles, serve: Callable[..., tuple[Recorder, int]]
) -> None:
    server, port = serve(implicit=tls.server_context())
    assert _send(f"smtps://127.0.0.1:{port}") == "2.0.0 Ok: queued"
    [seen] = server.messages
    assert seen.data == MESSAGE


def test_starttls_upgrades_the_connection_before_the_message(
    tls: TlsFiles, serve: Callable[..., tuple[Recorder, int]]
) -> None:
    server, port = serve(tls_context=tls.server_context(), require_starttls=True)
    _send(f"smtp://127.0.0.1:{port}?starttls=true")
    [seen] = server.messages
    assert seen.encrypted  # the server would refuse MAIL before STARTTLS anyway
    assert seen.data == MESSAGE


@pytest.mark.parametrize("how", ["smtps", "starttls"])
def test_a_server_whose_certificate_nobody_trusts_gets_no_message(
    tmp_path: Path, serve: Callable[..., tuple[Recorder, int]], how: str
) -> None:
    untrusted = issue_certificates(tmp_path, name="stranger")  # SSL_CERT_FILE left as it is
    if how == "smtps":
        server, port = serve(implicit=untrusted.server_context())
        url = f"smtps://127.0.0.1:{port}"
    else:
        server, port = serve(tls_context=untrusted.server_context())
        url = f"smtp://127.0.0.1:{port}?starttls=true"
    with pytest.raises(TemporaryFailure) as info:
        _send(url)
    assert info.value.code is None
    assert info.value.text.startswith(f"cannot connect to 127.0.0.1:{port}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.text
    assert server.messages == []


# --- AUTH --------------------------------------------------------------------------------------


def test_auth_logs_in_with_the_urls_decoded_user_and_password_over_starttls(
    tls: TlsFiles, serve: Callable[..., tuple[Recorder, int]]
) -> None:
    server, port = serve(tls_context=tls.server_context(), auth_required=True)
    _send(f"smtp://news:s3cret%3Apw@127.0.0.1:{port}?starttls=true")
    assert server.logins == [("news", "s3cret:pw")]
    [seen] = server.messages
    assert (seen.encrypted, seen.login) == (True, "news")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_over_smtps(tls: TlsFiles, serve: Callable[..., tuple[Recorder, int]]) -> None:
    # aiosmtpd counts only STARTTLS as TLS for AUTH: told not to insist, it offers AUTH here.
    server, port = serve(implicit=tls.server_context(), auth_required=True, auth_require_tls=False)
    _send(f"smtps://news:s3cret%3Apw@127.0.0.1:{port}")
    [seen] = server.messages
    assert (seen.encrypted, seen.login) == (True, "news")


def test_a_wrong_password_is_a_permanent_failure_with_the_servers_reply(
    tls: TlsFiles, serve: Callable[..., tuple[Recorder, int]]
) -> None:
    server, port = serve(tls_context=tls.server_context(), auth_required=True)
    with pytest.raises(PermanentFailure) as info:
        _send(f"smtp://news:guess@127.0.0.1:{port}?starttls=true")
    assert not isinstance(info.value, RecipientRefused)  # not the address's fault
    assert (info.value.recipient, info.value.code, info.value.text) == (
        "r@example.com",
        535,
        "5.7.8 Authentication credentials invalid",
    )
    assert server.logins[-1] == ("news", "guess")
    assert server.messages == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_user_without_a_password_logs_in_with_an_empty_one(
    serve: Callable[..., tuple[Recorder, int]],
) -> None:
    server, port = serve(auth_required=True, auth_require_tls=False)
    server.users["relay"] = ""
    _send(f"smtp://relay@127.0.0.1:{port}")
    assert server.logins == [("relay", "")]
    assert [m.login for m in server.messages] == ["relay"]


# --- SMTPUTF8 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one at a time"])
def test_a_non_ascii_address_goes_with_smtputf8_to_a_server_that_offers_it(
    serve: Callable[..., tuple[Recorder, int]], pipelining: bool
) -> None:
    server, port = serve(pipelining=pipelining, enable_SMTPUTF8=True)
    _send(f"smtp://127.0.0.1:{port}", recipient="jörg@exämple.de")
    [seen] = server.messages
    assert (seen.rcpt_tos, seen.smtp_utf8) == (["jörg@exämple.de"], True)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one at a time"])
def test_an_ascii_address_goes_without_smtputf8(
    serve: Callable[..., tuple[Recorder, int]], pipelining: bool
) -> None:
    server, port = serve(pipelining=pipelining, enable_SMTPUTF8=True)
    _send(f"smtp://127.0.0.1:{port}")
    [seen] = server.messages
    assert (seen.rcpt_tos, seen.smtp_utf8) == (["r@example.com"], False)


def test_a_non_ascii_address_is_refused_before_sending_when_the_server_lacks_smtputf8(
    serve: Callable[..., tuple[Recorder, int]],
) -> None:
    server, port = serve()  # aiosmtpd offers no SMTPUTF8 unless told to
    transport = SmtpTransport(SmtpTarget.from_url(f"smtp://127.0.0.1:{port}"))
    with pytest.raises(PermanentFailure) as info:
        transport.send("bounces@news.example.com", "jörg@exämple.de", MESSAGE)
    assert not isinstance(info.value, RecipientRefused)
    assert (info.value.recipient, info.value.code, info.value.text) == (
        "jörg@exämple.de",
        None,
        "the server does not take non-ASCII addresses (no SMTPUTF8)",
    )
    transport.send("bounces@news.example.com", "r@example.com", MESSAGE)  # the next one goes
    transport.close()
    assert [m.rcpt_tos for m in server.messages] == [["r@example.com"]]
