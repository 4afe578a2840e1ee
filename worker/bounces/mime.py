"""Reading bounce mail: the MIME tree, its text, its field blocks and its addresses.

Real bounces are often broken (bogus charsets, encoded report parts, truncated boundaries); every
helper here degrades to "less text" rather than an exception. Pure: no I/O, no settings.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from email import errors as email_errors
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from email.utils import parseaddr
from typing import Final

MAX_DIAGNOSTIC_CHARS: Final = 1000
ORIGINAL_TYPES: Final = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers"}
)
BOUNDARY_DEFECTS: Final = (
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.CloseBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.InvalidMultipartContentTransferEncodingDefect,
)
_TAGS = re.compile(r"<[^<>]{0,2000}>")


class Notes:
    """What went wrong on the way, to explain a refusal better than "not a bounce"."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, note: str) -> None:
        """Remember one note, once."""
        if note not in self.items:
            self.items.append(note)

    def suffix(self) -> str:
        """The notes as a parenthesised suffix, or nothing."""
        return f" ({'; '.join(self.items)})" if self.items else ""


def walk(msg: Message) -> Iterator[Message]:
    """Every part, without descending into returned originals or DSN field blocks."""
    yield msg
    if msg.get_content_maintype() == "multipart" and isinstance(msg.get_payload(), list):
        for part in msg.get_payload():
            if isinstance(part, Message):
                yield from walk(part)


def decode(part: Message, notes: Notes) -> str:
    """A leaf part's text, whatever its transfer encoding and (possibly bogus) charset."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset)
    except UnicodeError:
        notes.add(f"text not in its declared charset {charset!r}")
    except (LookupError, ValueError):  # ValueError: a NUL inside the charset name
        notes.add(f"unknown charset {charset!r}")
    try:
        return payload.decode("utf-8")
    except UnicodeError:
        return payload.decode("latin-1")  # never fails: every byte is a character


def part_text(part: Message, notes: Notes) -> str:
    """The text of a message/* part, whether the parser split it into blocks or not."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(flatten(p) for p in payload if isinstance(p, Message))
    return decode(part, notes)


def flatten(part: Message) -> str:
    """A parsed part back to text; the stdlib generator chokes on the broken ones we meet."""
    head = "\n".join(f"{key}: {value}" for key, value in part.items())
    payload = part.get_payload()
    if isinstance(payload, list):
        body = "\n\n".join(flatten(p) for p in payload if isinstance(p, Message))
    else:
        body = payload if isinstance(payload, str) else ""
    return f"{head}\n\n{body}" if head else body


def human_texts(msg: Message, notes: Notes) -> list[str]:
    """The human-readable text parts (plain preferred over HTML), originals excluded."""
    plain, markup = [], []
    for part in walk(msg):
        if part.get_content_type() == "text/plain":
            plain.append(decode(part, notes))
        elif part.get_content_type() == "text/html":
            markup.append(html.unescape(_TAGS.sub(" ", decode(part, notes))))
    return plain or markup


def original(msg: Message, notes: Notes) -> Message | None:
    """The headers of the returned original message, when the bounce attached them."""
    for part in walk(msg):
        if part.get_content_type() not in ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        return HeaderParser(policy=compat32).parsestr(decode(part, notes), headersonly=True)
    return None


def attached_messages(msg: Message) -> Iterator[Message]:
    """Whole messages attached as message/rfc822 parts (a forwarded bounce, a JMRP report)."""
    for part in walk(msg):
        if part.get_content_type() != "message/rfc822":
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            yield payload[0]


def header(msg: Message, name: str) -> str | None:
    """A header's value on one line, or None."""
    value = msg.get(name)
    if value is None:
        return None
    # compat32 hands back a Header object for 8-bit values; str() makes it text either way.
    return " ".join(str(value).split()) or None


def decoded_header(msg: Message, name: str) -> str:
    """A header's value with RFC 2047 words decoded, as far as they decode."""
    value = header(msg, name) or ""
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, email_errors.MessageError):
        return value


def fields(blocks_text: str) -> list[Message]:
    """Header blocks separated by blank lines, as in a delivery-status or feedback-report part."""
    parser = HeaderParser(policy=compat32)
    text = blocks_text.replace("\r\n", "\n")
    return [parser.parsestr(block.strip("\n") + "\n") for block in re.split(r"\n[ \t]*\n", text)]


def field_blocks(part: Message, notes: Notes) -> list[Message]:
    """The field blocks of a delivery-status or feedback-report part, decoded when encoded."""
    payload = part.get_payload()
    encoded = (header(part, "Content-Transfer-Encoding") or "").lower() in (
        "base64",
        "quoted-printable",
    )
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        if not encoded:
            return [block for block in payload if isinstance(block, Message)]
        # The parser split the encoded text into nonsense blocks; decode and split again.
        text = "\n".join(flatten(block) for block in payload if isinstance(block, Message))
        notes.add("encoded delivery-status part")
        return fields(_decode_text(text, part))
    return fields(part_text(part, notes))


def _decode_text(text: str, part: Message) -> str:
    clone = Message()
    clone["Content-Transfer-Encoding"] = header(part, "Content-Transfer-Encoding") or "7bit"
    clone.set_payload(text)
    data = clone.get_payload(decode=True)
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else text


def address(value: str | None) -> str | None:
    """The address in an address field: ``rfc822; a@b``, bare ``a@b``, ``<a@b>``, comments."""
    if not value:
        return None
    value = " ".join(value.split())
    if ";" in value:
        value = value.split(";", 1)[1]
    found = parseaddr(value.strip())[1].strip()
    if "@" not in found or any(c in found for c in "\r\n\x00 "):
        return None
    return found


def paragraphs_near(texts: list[str], needle_address: str) -> Iterator[str]:
    """Each paragraph that names the address (with the next one when it is only the address)."""
    needle = needle_address.lower()
    for text in texts:
        lines = text.replace("\r\n", "\n").split("\n")
        for index, line in enumerate(lines):
            if needle not in line.lower():
                continue
            paragraph: list[str] = []
            for following in lines[index : index + 40]:
                if not following.strip():
                    rest = " ".join(paragraph).replace(needle_address, "").strip(" <>:")
                    if len(rest) >= 20:
                        break
                    continue
                paragraph.append(following.strip())
                if sum(len(p) for p in paragraph) > MAX_DIAGNOSTIC_CHARS:
                    break
            yield " ".join(paragraph)[:MAX_DIAGNOSTIC_CHARS]
