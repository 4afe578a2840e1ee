"""The only SMTP code: send bytes to a server (or to the outbox folder), map replies to errors.

4xx replies, timeouts and dropped connections → TemporaryFailure; 421 (at the greeting, EHLO or
any later command) → ConnectionThrottled: the connection is closed and this transport waits
``throttle_pause_s`` before opening another; 5xx at RCPT → RecipientRefused; any other 5xx →
PermanentFailure. Once the final dot went out, a dropped connection or a reply that never came
is UncertainDelivery: the server may have the message, so it is never sent again here and now
(the caller's backoff decides). A server that offers PIPELINING gets MAIL, RCPT and DATA in one
write.

Timeouts follow RFC 5321 §4.5.3.2: 5 minutes for the greeting and each command, 3 for each
write of the message, and ``data_timeout_s`` (10 minutes by default,
``NEWSLETTER_SMTP_DATA_TIMEOUT_S``) for the reply to the final dot, which content filters take
their time over.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from worker.errors import (
    ConfigError,
    ConnectionThrottled,
    PermanentFailure,
    RecipientRefused,
    TemporaryFailure,
    UncertainDelivery,
)

CONNECT_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 300.0
DATA_BLOCK_TIMEOUT_S = 180.0
DATA_TIMEOUT_S = 600.0
THROTTLE_PAUSE_S = 30.0
_EXPECTED = ((250,), (250, 251), (354,))
"""The replies that let a message go on, to MAIL, RCPT and DATA."""


class Transport(Protocol):
    """Something that takes a finished message and delivers it."""

    def send(self, envelope_from: str, recipient: str, data: bytes) -> str:
        """Deliver ``data``; return the server's reply (or where it was written)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect, parsed from ``NEWSLETTER_SMTP_URL``."""

    host: str
    port: int
    tls: bool
    starttls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        """Parse ``smtp://[user:pass@]host:port[?starttls=true]`` or ``smtps://…``."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError("NEWSLETTER_SMTP_URL", "must look like smtp://host:port")
        query = parse_qs(parts.query)
        starttls = query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls else 25),
            tls=tls,
            starttls=starttls and not tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def _reply(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())


def _raise_for(code: int, resp: bytes | str, recipient: str, at_rcpt: bool) -> None:
    text = _reply(resp)
    if code == 421:
        raise ConnectionThrottled(recipient, code, text)
    if 400 <= code < 500:
        raise TemporaryFailure(recipient, code, text)
    if at_rcpt:
        raise RecipientRefused(recipient, code, text)
    raise PermanentFailure(recipient, code, text)


class _NoFinalReply(Exception):
    """The final dot went out and its reply did not come back."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause = cause


class _ConnectTimeout:
    """smtplib applies one timeout to connecting and to the greeting; ours are apart."""

    timeout: float

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, CONNECT_TIMEOUT_S)  # type: ignore[misc]
        sock.settimeout(timeout)
        return sock


class _Client(_ConnectTimeout, smtplib.SMTP):
    pass


class _SslClient(_ConnectTimeout, smtplib.SMTP_SSL):
    pass


def _send_body(conn: smtplib.SMTP, data: bytes) -> None:
    """Send a message and its final dot after DATA.

    smtplib's ``data()`` dot-stuffs with a multi-line regex that costs milliseconds on a
    100 KB message; our own messages never start a line with a dot (see ``message._qp``), so a
    C-level search proves there is nothing to stuff and the bytes go out as they are. A write
    that fails has not sent the final dot (it is the last thing written): the server drops the
    incomplete message.
    """
    if data.startswith(b".") or b"\n." in data:
        data = (b"." + data if data.startswith(b".") else data).replace(b"\n.", b"\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    conn.send(data + b".\r\n")


def _final_reply(conn: smtplib.SMTP, timeout_s: float) -> tuple[int, bytes]:
    """Wait up to ``timeout_s`` for the reply to the final dot."""
    assert conn.sock is not None
    conn.sock.settimeout(timeout_s)
    try:
        return conn.getreply()
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise _NoFinalReply(exc) from exc


class SmtpTransport:
    """SMTP with one connection per worker thread, reused from message to message."""

    def __init__(
        self,
        target: SmtpTarget,
        data_timeout_s: float = DATA_TIMEOUT_S,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        throttle_pause_s: float = THROTTLE_PAUSE_S,
    ) -> None:
        self.target = target
        self.data_timeout_s = data_timeout_s
        self.command_timeout_s = command_timeout_s
        self.throttle_pause_s = throttle_pause_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._all: list[smtplib.SMTP] = []

    def _open(self, recipient: str) -> smtplib.SMTP:
        t = self.target
        # Loading the CA bundle costs milliseconds: only for connections that use TLS.
        context = ssl.create_default_context() if t.tls or t.starttls else None
        conn: smtplib.SMTP
        if t.tls:
            conn = _SslClient(t.host, t.port, timeout=self.command_timeout_s, context=context)
        else:
            conn = _Client(t.host, t.port, timeout=self.command_timeout_s)
        code, resp = conn.ehlo()
        if code == 421:
            conn.close()
            _raise_for(code, resp, recipient, at_rcpt=False)
        if not 200 <= code <= 299:
            code, resp = conn.helo()
            if not 200 <= code <= 299:
                conn.close()
                _raise_for(code, resp, recipient, at_rcpt=False)
        if t.starttls:
            conn.starttls(context=context)
            conn.ehlo()
        if t.username:
            conn.login(t.username, t.password or "")
        with self._lock:
            self._all.append(conn)
        return conn

    def _connection(self, recipient: str) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        wait_s = self._paused_until - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)
        try:
            conn = self._open(recipient)
        except smtplib.SMTPResponseException as exc:
            _raise_for(exc.smtp_code, exc.smtp_error, recipient, at_rcpt=False)
            raise  # pragma: no cover - _raise_for always raises
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(
                recipient, None, f"cannot connect to {self.target.host}:{self.target.port}: {exc}"
            ) from exc
        self._local.conn = conn
        return conn

    def _pause(self) -> None:
        """Open no connection for ``throttle_pause_s``: the server asked us to back off."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + self.throttle_pause_s)

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)

    def send(self, envelope_from: str, recipient: str, data: bytes) -> str:
        """Send one message over this thread's connection.

        A reused connection the server closed while idle is opened again once, as long as
        nothing of the message went out; after the final dot, never.
        """
        for attempt in (1, 2):
            fresh = getattr(self._local, "conn", None) is None
            try:
                conn = self._connection(recipient)
                return self._transaction(conn, envelope_from, recipient, data)
            except _NoFinalReply as exc:
                self._drop()
                raise UncertainDelivery(
                    recipient, None, f"no reply after the message was sent: {exc}"
                ) from exc.cause
            except ConnectionThrottled:
                self._drop()
                self._pause()
                raise
            except TemporaryFailure:
                self._drop()
                raise
            except smtplib.SMTPServerDisconnected as exc:
                self._drop()
                if fresh or attempt == 2:
                    raise TemporaryFailure(recipient, None, f"connection lost: {exc}") from exc
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise TemporaryFailure(recipient, None, f"SMTP error: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _transaction(
        self, conn: smtplib.SMTP, envelope_from: str, recipient: str, data: bytes
    ) -> str:
        utf8 = not recipient.isascii()
        if utf8 and not conn.has_extn("smtputf8"):
            raise PermanentFailure(
                recipient, None, "the server does not take non-ASCII addresses (no SMTPUTF8)"
            )
        assert conn.sock is not None
        conn.sock.settimeout(self.command_timeout_s)
        if conn.has_extn("pipelining"):
            # RFC 2920: MAIL, RCPT and DATA in one write, their three replies read together.
            options = " SMTPUTF8" if utf8 else ""
            conn.send(
                f"MAIL FROM:{smtplib.quoteaddr(envelope_from)}{options}\r\n"
                f"RCPT TO:{smtplib.quoteaddr(recipient)}\r\nDATA\r\n".encode()
            )
            replies: list[tuple[int, bytes]] = []
            while len(replies) < 3 and (not replies or replies[-1][0] != 421):
                replies.append(conn.getreply())  # after a 421 the server hangs up
        else:
            replies = [conn.mail(envelope_from, ["SMTPUTF8"] if utf8 else [])]
            if replies[-1][0] in _EXPECTED[0]:
                replies.append(conn.rcpt(recipient))
            if replies[-1][0] in _EXPECTED[1]:
                replies.append(conn.docmd("DATA"))
        for step, (code, resp) in enumerate(replies):
            if code not in _EXPECTED[step]:
                if len(replies) == 3 and replies[2][0] == 354:
                    # The server took DATA although an earlier command failed (RFC 2920 §3.1
                    # allows it): an empty message ends it, and the failure is what counts.
                    conn.send(b".\r\n")
                    conn.getreply()
                self._reset(conn)
                _raise_for(code, resp, recipient, at_rcpt=step == 1)
        conn.sock.settimeout(DATA_BLOCK_TIMEOUT_S)
        _send_body(conn, data)
        code, resp = _final_reply(conn, self.data_timeout_s)
        conn.sock.settimeout(self.command_timeout_s)
        if code != 250:
            self._reset(conn)
            _raise_for(code, resp, recipient, at_rcpt=False)
        return _reply(resp)

    def _reset(self, conn: smtplib.SMTP) -> None:
        """End a failed transaction; a connection that does not survive RSET is dropped, so
        the next message opens another instead of finding it closed."""
        try:
            conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def close(self) -> None:
        """Quit every connection this transport opened."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class OutboxTransport:
    """Writes each message as an ``.eml`` file: the default when no SMTP server is set.

    The file is named after the Message-ID, so sending the same delivery twice leaves one file.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def send(self, envelope_from: str, recipient: str, data: bytes) -> str:
        """Write the message, with the Return-Path an MTA would add, to the outbox folder."""
        match = re.search(rb"^Message-ID: <([^>]*)>", data, re.MULTILINE | re.IGNORECASE)
        stem = match.group(1).decode() if match else f"{time.time_ns()}.{recipient}"
        path = self.folder / (_UNSAFE.sub("_", stem) + ".eml")
        temp = path.with_suffix(f".tmp{threading.get_ident()}")
        temp.write_bytes(f"Return-Path: <{envelope_from}>\r\n".encode() + data)
        os.replace(temp, path)
        return f"written to {path.name}"

    def close(self) -> None:
        """Nothing to release."""


def make_transport(
    smtp_url: str | None, outbox: Path, data_timeout_s: float = DATA_TIMEOUT_S
) -> Transport:
    """SMTP when a URL is set, else the outbox folder."""
    if smtp_url:
        return SmtpTransport(SmtpTarget.from_url(smtp_url), data_timeout_s=data_timeout_s)
    return OutboxTransport(outbox)
