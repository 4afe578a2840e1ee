"""Bounce mail from an IMAP mailbox (``NEWSLETTER_BOUNCE_MAILBOX=imaps://user:pass@host/INBOX``).

Who we talk to: ``imaps://`` and ``imap://…?starttls=true`` check the server's certificate and
host name with the default SSL context (plus ``NEWSLETTER_BOUNCE_MAILBOX_CA_FILE`` for a
private CA) before the password is sent; a server that fails the check, or that does not offer
the STARTTLS we asked for, never sees it. Plain ``imap://`` sends it in the clear: meant for a
server on this machine, and warned about.

What we do to the messages: each is handed to the intake, then moved (``?move_to=Folder``) or
deleted. The ``move_to`` folder is created, if missing, before any message is read; a message
is flagged ``\\Deleted`` only after its COPY succeeded, so a failed COPY leaves it where it was,
to be read again next time. The intake remembers every message (Message-ID + hash), so one read
twice is recorded once.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from worker.bounces.intake import Intake
from worker.errors import NewsletterError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
Security = Literal["tls", "starttls", "none"]
_FLAGS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

_warned: set[tuple[str, int]] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class MailboxUrl:
    """Where the bounce mailbox is, and how we reach it."""

    host: str
    port: int
    security: Security
    username: str
    password: str
    folder: str
    move_to: str | None

    @classmethod
    def parse(cls, url: str) -> MailboxUrl:
        """Parse ``imaps://user:pass@host[:port]/FOLDER[?move_to=Processed]`` (or ``imap://``,
        with ``starttls=true``); NewsletterError for a URL that cannot be meant."""
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        starttls_text = query.get("starttls", ["false"])[0].lower()
        starttls = _FLAGS.get(starttls_text)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname:
            raise _url_error("must look like imaps://user:pass@host/INBOX")
        if starttls is None:
            raise _url_error(f"starttls must be true or false, not {starttls_text!r}")
        if parts.scheme == "imaps" and starttls:
            raise _url_error("imaps:// is TLS from the start; starttls=true is for imap://")
        try:
            port = parts.port
        except ValueError as exc:
            raise _url_error(f"bad port: {exc}") from None
        security: Security = (
            "tls" if parts.scheme == "imaps" else "starttls" if starttls else "none"
        )
        return cls(
            host=parts.hostname,
            port=port or (993 if security == "tls" else 143),
            security=security,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
            move_to=query.get("move_to", [None])[0],
        )


def _url_error(message: str) -> NewsletterError:
    return NewsletterError(f"NEWSLETTER_BOUNCE_MAILBOX: {message}")


def ssl_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The default context (system CAs, host name checked), trusting ``ca_file`` as well."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def connect(
    where: MailboxUrl, ca_file: Path | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> imaplib.IMAP4:
    """An IMAP connection whose server has proved who it is (unless plain ``imap://``)."""
    address = f"{where.host}:{where.port}"
    try:
        if where.security == "tls":
            return imaplib.IMAP4_SSL(
                where.host, where.port, ssl_context=ssl_context(ca_file), timeout=timeout_s
            )
        conn = imaplib.IMAP4(where.host, where.port, timeout=timeout_s)
    except ssl.SSLError as exc:
        raise NewsletterError(
            f"bounce mailbox {address}: TLS failed ({_reason(exc)}); nothing was sent"
        ) from exc
    except (OSError, imaplib.IMAP4.error) as exc:
        raise NewsletterError(f"cannot reach the bounce mailbox {address}: {exc}") from exc
    if where.security == "none":
        _warn_in_the_clear(where)
        return conn
    try:
        # imaplib refuses when the server does not offer STARTTLS: no fallback to plain text.
        conn.starttls(ssl_context=ssl_context(ca_file))
    except ssl.SSLError as exc:
        _close(conn)
        raise NewsletterError(
            f"bounce mailbox {address}: STARTTLS failed ({_reason(exc)}); nothing was sent"
        ) from exc
    except (OSError, imaplib.IMAP4.error) as exc:
        _close(conn)
        raise NewsletterError(
            f"bounce mailbox {address}: STARTTLS refused ({exc}); nothing was sent"
        ) from exc
    return conn


def poll(
    url: str,
    intake: Intake,
    *,
    ca_file: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Process every message in the mailbox folder once; returns how many were handed over."""
    where = MailboxUrl.parse(url)
    conn = connect(where, ca_file, timeout_s)
    try:
        conn.login(where.username, where.password)
        typ, data = conn.select(_quoted(where.folder))
        if typ != "OK":
            raise NewsletterError(f"bounce mailbox: no folder {where.folder!r}: {_text(data)}")
        if where.move_to:
            _ensure_folder(conn, where.move_to)
        return _drain(conn, where, intake)
    except imaplib.IMAP4.error as exc:
        raise NewsletterError(f"bounce mailbox: {exc}") from exc
    except OSError as exc:
        raise NewsletterError(f"bounce mailbox {where.host}:{where.port}: {exc}") from exc
    finally:
        _drop(conn)


def _drain(conn: imaplib.IMAP4, where: MailboxUrl, intake: Intake) -> int:
    # Messages flagged \Deleted by an earlier run that stopped before EXPUNGE are done with.
    _typ, data = conn.uid("SEARCH", "UNDELETED")
    uids = (data[0] or b"").decode().split()
    handled = done = 0
    try:
        for uid in uids:
            # BODY.PEEK leaves \Seen alone: a message we fail to move stays as it was.
            _typ, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
            if raw is None:
                continue
            result = intake.process(raw, f"imap:{where.folder}/{uid}")
            handled += 1
            log.info("bounce mailbox %s: %s %s", uid, result.outcome, result.reason)
            if where.move_to and not _copy(conn, uid, where.move_to):
                continue
            typ, data = conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
            if typ != "OK":
                log.error("bounce mailbox: cannot flag message %s as deleted: %s", uid, _text(data))
                continue
            done += 1
    finally:
        if done:
            conn.expunge()
    return handled


def _copy(conn: imaplib.IMAP4, uid: str, folder: str) -> bool:
    """COPY a message, creating the folder once if the server says TRYCREATE; True if copied."""
    typ, data = conn.uid("COPY", uid, _quoted(folder))
    if typ != "OK" and "[TRYCREATE]" in _text(data).upper():
        conn.create(_quoted(folder))
        typ, data = conn.uid("COPY", uid, _quoted(folder))
    if typ != "OK":
        log.error(
            "bounce mailbox: cannot copy message %s to %r (%s); it stays where it is",
            uid,
            folder,
            _text(data),
        )
        return False
    return True


def _ensure_folder(conn: imaplib.IMAP4, folder: str) -> None:
    """Create the ``move_to`` folder if it is missing, before any message is touched."""
    typ, data = conn.list('""', _quoted(folder))
    if typ == "OK" and any(entry is not None for entry in data):
        return
    typ, data = conn.create(_quoted(folder))
    if typ != "OK":
        raise NewsletterError(
            f"bounce mailbox: the move_to folder {folder!r} does not exist and cannot be "
            f"created ({_text(data)}); create it, or change ?move_to= in "
            "NEWSLETTER_BOUNCE_MAILBOX"
        )
    log.info("bounce mailbox: created the move_to folder %r", folder)


def _warn_in_the_clear(where: MailboxUrl) -> None:
    key = (where.host, where.port)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    elsewhere = "" if where.host.lower() in _LOOPBACK else ", to another machine"
    log.warning(
        "bounce mailbox %s:%s: imap:// sends the password in the clear%s; use imaps:// or "
        "imap://…?starttls=true",
        where.host,
        where.port,
        elsewhere,
    )


def _quoted(name: str) -> str:
    # imaplib sends an argument as it is given; a folder name with a space must be quoted.
    if name.startswith('"') or not any(c in name for c in ' (){%*"\\]'):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(data: Iterable[Any] | None) -> str:
    """A server's reply lines as one string, for a log line or an error."""
    parts = [p.decode(errors="replace") if isinstance(p, bytes) else str(p) for p in data or ()]
    return " ".join(p for p in parts if p and p != "None")


def _reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}"
    return str(exc)


def _drop(conn: imaplib.IMAP4) -> None:
    try:
        conn.logout()
    except (OSError, imaplib.IMAP4.error):
        pass


def _close(conn: imaplib.IMAP4) -> None:
    """Hang up without another word: after a failed handshake there is nothing safe to say."""
    try:
        conn.shutdown()
    except OSError:
        pass
