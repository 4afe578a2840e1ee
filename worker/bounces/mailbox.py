"""Bounce mail from an IMAP mailbox (``NEWSLETTER_BOUNCE_MAILBOX=imaps://user:pass@host/INBOX``).

Each message is handed to the intake, then moved (``?move_to=Folder``) or deleted, so it is
processed once; the intake's own memory of Message-ID + hash covers a crash in between.
"""

from __future__ import annotations

import imaplib
import logging
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from worker.bounces.intake import Intake
from worker.errors import NewsletterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailboxUrl:
    """Where the bounce mailbox is."""

    host: str
    port: int
    tls: bool
    username: str
    password: str
    folder: str
    move_to: str | None

    @classmethod
    def parse(cls, url: str) -> MailboxUrl:
        """Parse ``imaps://user:pass@host[:port]/FOLDER[?move_to=Processed]``."""
        parts = urlsplit(url)
        tls = parts.scheme == "imaps"
        query = parse_qs(parts.query)
        return cls(
            host=parts.hostname or "",
            port=parts.port or (993 if tls else 143),
            tls=tls,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
            move_to=query.get("move_to", [None])[0],
        )


def poll(url: str, intake: Intake, timeout_s: float = 30.0) -> int:
    """Process every message in the mailbox folder once; returns how many were handled."""
    where = MailboxUrl.parse(url)
    try:
        conn: imaplib.IMAP4 = (
            imaplib.IMAP4_SSL(where.host, where.port, timeout=timeout_s)
            if where.tls
            else imaplib.IMAP4(where.host, where.port, timeout=timeout_s)
        )
    except OSError as exc:
        raise NewsletterError(
            f"cannot reach the bounce mailbox {where.host}:{where.port}: {exc}"
        ) from exc
    handled = 0
    try:
        conn.login(where.username, where.password)
        typ, _ = conn.select(where.folder)
        if typ != "OK":
            raise NewsletterError(f"bounce mailbox: no folder {where.folder!r}")
        _typ, data = conn.uid("SEARCH", "ALL")
        for uid in (data[0] or b"").decode().split():
            _typ, fetched = conn.uid("FETCH", uid, "(RFC822)")
            raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
            if raw is None:
                continue
            result = intake.process(raw, f"imap:{where.folder}/{uid}")
            log.info("bounce mailbox %s: %s %s", uid, result.outcome, result.reason)
            if where.move_to:
                conn.uid("COPY", uid, where.move_to)
            conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
            handled += 1
        conn.expunge()
    except imaplib.IMAP4.error as exc:
        raise NewsletterError(f"bounce mailbox: {exc}") from exc
    finally:
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    return handled
