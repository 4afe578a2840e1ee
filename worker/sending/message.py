"""A rendered mail + one recipient → the bytes of an RFC 5322 message (SPEC §5).

The MIME structure is written by hand: the same two quoted-printable parts every time, so a
message costs one slot fill and one C-level encode per part instead of a walk through
``email.message``. Tests parse the output with the standard library to prove it is well formed.
"""

from __future__ import annotations

import binascii
import functools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr

from worker.sending.dkim import Signer
from worker.sending.render import RenderedMail, Spliced
from worker.sending.tokens import keyed_digest


@dataclass(frozen=True)
class Recipient:
    """Who one message is for and the links that are theirs."""

    email: str
    name: str
    unsubscribe_url: str
    preferences_url: str


@dataclass(frozen=True)
class Identity:
    """The sender's side of every message, fixed per process: who it is from, the list, the
    sender id of Gmail's feedback loop and, when DKIM is configured, the signer."""

    mail_from: str
    list_id: str
    sender_id: str = "verdicts"
    signer: Signer | None = field(default=None, compare=False)

    def feedback_id(self, campaign: str, kind: str) -> str:
        """Gmail's ``Feedback-ID: a:b:c:SenderId``: campaign, kind of mail, the stream and us.

        Complaint rates are reported per field, so every field names a group of mails
        (an edition, "digest" or "alert"), never a reader.
        """
        fields = (campaign, kind, "newsletter", self.sender_id)
        return ":".join(value.replace(":", "-") for value in fields)

    def sign(self, message: bytes, date: datetime) -> bytes:
        """``message`` with a DKIM signature in front when a signer is configured."""
        if self.signer is None:
            return message
        return self.signer.sign_message(message, int(date.timestamp()))


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        # Input validation refuses these; this is the last line of defence against injection.
        raise ValueError("line break in a header value")
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def _address(name: str, email: str) -> str:
    if "\r" in name or "\n" in name or "\r" in email or "\n" in email:
        raise ValueError("line break in an address")
    return formataddr((name, email), charset="utf-8") if name else email


@functools.lru_cache(maxsize=8)
def _from_header(mail_from: str) -> str:
    return _address(*parseaddr(mail_from))


@functools.lru_cache(maxsize=4)
def _date_header(date: datetime) -> str:
    # The same second for every message a worker sends in it: formatted once.
    return format_datetime(date)


def _qp(text: str) -> bytes:
    body = text.replace("\r\n", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(body, istext=True)
    # A line may not start with a dot (SMTP would need to double it): "=2E" is the same dot in
    # quoted-printable, so the transport can skip dot-stuffing a whole message.
    encoded = encoded.replace(b"\n.", b"\n=2E").replace(b"\n", b"\r\n")
    return b"=2E" + encoded[1:] if encoded.startswith(b".") else encoded


@dataclass(frozen=True)
class QpTemplate:
    """A Spliced text with everything but its slot lines quoted-printable encoded already.

    Quoted-printable works line by line, so encoding the fixed lines once and only the lines
    that hold a slot per message gives the same bytes as encoding the whole text each time.
    """

    chunks: tuple[bytes | Spliced, ...]

    @classmethod
    def of(cls, spliced: Spliced) -> QpTemplate:
        """Split ``spliced`` into encoded fixed runs of lines and per-message slot lines."""
        chunks: list[bytes | Spliced] = []
        fixed: list[str] = []
        line_parts: list[str] = [""]
        line_slots: list[str] = []

        def flush_fixed() -> None:
            if fixed:
                chunks.append(_qp("".join(fixed)))
                fixed.clear()

        def end_line(tail: str) -> None:
            line_parts[-1] += tail
            if line_slots:
                flush_fixed()
                chunks.append(Spliced(tuple(line_parts), tuple(line_slots)))
            else:
                fixed.append(line_parts[0])
            line_parts[:] = [""]
            line_slots.clear()

        for index, part in enumerate(spliced.parts):
            *complete, rest = part.split("\n")
            for piece in complete:
                end_line(piece + "\n")
            line_parts[-1] += rest
            if index < len(spliced.slots):
                line_slots.append(spliced.slots[index])
                line_parts.append("")
        if line_slots or line_parts[0]:
            end_line("")
        flush_fixed()
        return cls(tuple(chunks))

    def fill(self, values: Mapping[str, str], escape: bool) -> bytes:
        """The encoded text with the slots filled in."""
        return b"".join(
            chunk if isinstance(chunk, bytes) else _qp(chunk.fill(values, escape))
            for chunk in self.chunks
        )


@dataclass(frozen=True)
class PreparedMail:
    """A rendered mail with its bodies pre-encoded: what a worker keeps per category set."""

    subject: str
    html: QpTemplate
    text: QpTemplate
    # One MIME boundary for every message built from this mail. It starts with "=_", which
    # quoted-printable bodies cannot contain ("=" is always "=3D" there), so no part can
    # hold it whatever the per-recipient values are.
    boundary: str = field(default_factory=lambda: "=_verdicts_" + secrets.token_hex(12))


def prepare(mail: RenderedMail) -> PreparedMail:
    """Pre-encode a rendered mail's bodies (once per edition and category set)."""
    return PreparedMail(mail.subject, QpTemplate.of(mail.html), QpTemplate.of(mail.text))


def message_id_for(
    delivery_id: int, week: str, domain: str, secret_key: str, subscriber_token: str
) -> str:
    """The Message-ID of a delivery: the same for every attempt at it, so a receiver can drop
    a duplicate, and never reused by another install or after a database reset.

    Its last part is keyed by the install's secret and the subscriber's token, a random
    value made with the subscriber row: a new data dir or a new database gives new ones,
    while the delivery id and week alone would repeat.
    """
    mac = keyed_digest(secret_key, "message-id", str(delivery_id), subscriber_token).hex()
    return f"<d{delivery_id}.{week}.{mac[:16]}@{domain}>"


def test_message_id(domain: str) -> str:
    """A fresh Message-ID for a test send, which belongs to no delivery."""
    return f"<test.{secrets.token_hex(8)}@{domain}>"


def build_message(
    mail: RenderedMail | PreparedMail,
    recipient: Recipient,
    identity: Identity,
    message_id: str,
    date: datetime,
    extra_headers: Mapping[str, str] | None = None,
    subject_prefix: str = "",
) -> bytes:
    """The full message for one recipient, CRLF line endings, ready for SMTP or a file;
    DKIM-signed when the identity has a signer."""
    prepared = mail if isinstance(mail, PreparedMail) else prepare(mail)
    values = {
        "name": recipient.name,
        "greeting_name": recipient.name or "there",
        "unsubscribe_url": recipient.unsubscribe_url,
        "preferences_url": recipient.preferences_url,
    }
    boundary = prepared.boundary
    headers = [
        ("From", _from_header(identity.mail_from)),
        ("To", _address(recipient.name, recipient.email)),
        ("Subject", _header_value(subject_prefix + mail.subject)),
        ("Date", _date_header(date.replace(microsecond=0))),
        ("Message-ID", _header_value(message_id)),
        ("MIME-Version", "1.0"),
        ("List-Id", _header_value(identity.list_id)),
        ("List-Unsubscribe", _header_value(f"<{recipient.unsubscribe_url}>")),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Precedence", "bulk"),
        ("Auto-Submitted", "auto-generated"),
    ]
    headers += [(key, _header_value(value)) for key, value in (extra_headers or {}).items()]
    headers.append(("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"'))
    head = "".join(f"{key}: {value}\r\n" for key, value in headers).encode("utf-8")
    sep = f"--{boundary}\r\n".encode()
    part_head = (
        'Content-Type: text/{}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    body = b"".join(
        [
            sep,
            part_head.format("plain").encode(),
            prepared.text.fill(values, escape=False),
            b"\r\n",
            sep,
            part_head.format("html").encode(),
            prepared.html.fill(values, escape=True),
            b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
    )
    if identity.signer is not None:
        head = identity.signer.signature(headers, body, int(date.timestamp())) + head
    return b"".join([head, b"\r\n", body])
