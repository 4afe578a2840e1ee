"""Parse a bounce message: what came back, for whom, why, and for which message of ours.

Four shapes of mail come back to the envelope sender, tried in this order:

1. ARF / RFC 5965 feedback reports (``multipart/report; report-type=feedback-report``): complaints;
2. RFC 3464 delivery status notifications, with the deviations real MTAs make;
3. the MTAs' own formats (Exim, qmail, old Postfix, Exchange, Yahoo...), recognised by
   ``flufl.bounce``; it finds the addresses, and the reason is read from the text next to them;
4. RFC 3834 auto-replies (out of office, vacation): one ``ignored`` finding, never counted.

Bounces come before auto-replies because Postfix and Exim mark their bounces
``Auto-Submitted: auto-replied`` too. Anything else is refused with :class:`BounceParseError`.

Pure: bytes in, :class:`ParsedBounce` out, no I/O and no settings.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from email import errors as email_errors
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Final

import flufl.bounce

from worker.bounces import BounceFinding, Classification, ParsedBounce
from worker.bounces.classify import classify, find_reply_code, find_status_code, text_reason
from worker.errors import BounceParseError

log = logging.getLogger(__name__)

MAX_READ_BYTES: Final = 512 * 1024
"""Only the head of a message is read: the report always comes before the returned original, and
flufl.bounce's heuristics take seconds per megabyte."""

MAX_DIAGNOSTIC_CHARS: Final = 1000

VERP_HEADERS: Final = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
DSN_TYPES: Final = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "text/delivery-status"}
)
FEEDBACK_REPORT_TYPES: Final = frozenset({"message/feedback-report", "text/feedback-report"})
ORIGINAL_TYPES: Final = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers"}
)
DELIVERY_TOKEN_HEADER: Final = "X-Newsletter-Delivery"

ACTIONS: Final[dict[str, str]] = {
    "failed": "failed",
    "failure": "failed",
    "fail": "failed",
    "error": "failed",  # OpenSMTPD
    "delayed": "delayed",
    "delay": "delayed",
    "delivered": "delivered",
    "relayed": "relayed",
    "expanded": "expanded",
}
"""Action values seen in the wild → the RFC 3464 value they mean."""

ACTION_CLASSIFICATIONS: Final[dict[str, Classification]] = {
    "delayed": Classification("soft", "delayed"),
    "delivered": Classification("ignored", "delivered"),
    "expanded": Classification("ignored", "delivered"),
    "relayed": Classification("ignored", "relayed"),
}
"""Actions whose meaning does not depend on the status: only ``failed`` needs reading further."""

STATUS_CLASS_ACTIONS: Final[dict[str, str]] = {"5": "failed", "4": "delayed", "2": "delivered"}
"""For blocks with no Action field: the status class says what happened."""

FEEDBACK_CLASSIFICATIONS: Final[dict[str, Classification]] = {
    "abuse": Classification("complaint", "complaint"),
    "fraud": Classification("complaint", "complaint"),
    "virus": Classification("complaint", "complaint"),
    "other": Classification("complaint", "complaint"),
    "not-spam": Classification("ignored", "unknown"),
    "auth-failure": Classification("sender", "auth_failure"),
}
COMPLAINT: Final = Classification("complaint", "complaint")
AUTO_REPLY: Final = Classification("ignored", "auto_reply")

_PERMANENT = re.compile(
    r"permanent (error|failure|fatal)|failed permanently|permanently (failed|rejected)|"
    r"fatal error|hard bounce",
    re.IGNORECASE,
)
_AUTO_REPLY_SUBJECT = re.compile(
    r"out of (the )?office|\booo\b|auto(matic)?[- ]?(reply|response|antwort)|autoreply|"
    r"\bvacation\b|\babsence\b|abwesenheit|réponse automatique|fuera de la oficina|"
    r"away from (my|the) (desk|office)|on leave\b",
    re.IGNORECASE,
)
_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.M)
_QUOTED_TOKEN = re.compile(
    rf"^[ \t>]*{DELIVERY_TOKEN_HEADER}:[ \t]*([!-~]{{1,200}})", re.IGNORECASE | re.M
)
_DIAGNOSTIC_TYPE = re.compile(r"^\s*[A-Za-z][\w.-]*\s*;\s*")
_TAGS = re.compile(r"<[^<>]{0,2000}>")
_REDACTED = re.compile(r"redacted|^[x*#.]+$|^\W*$", re.IGNORECASE)
_BOUNDARY_DEFECTS: Final = (
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.CloseBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.InvalidMultipartContentTransferEncodingDefect,
)


class _Notes:
    """What went wrong on the way, to explain a refusal better than "not a bounce"."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, note: str) -> None:
        if note not in self.items:
            self.items.append(note)

    def suffix(self) -> str:
        return f" ({'; '.join(self.items)})" if self.items else ""


def parse_bounce(raw: bytes) -> ParsedBounce:
    """Parse one bounce, complaint or auto-reply message; raise BounceParseError if it is none."""
    try:
        return _parse(raw)
    except BounceParseError:
        raise
    except Exception as exc:  # noqa: BLE001
        # The stdlib email package raises a zoo of exception types on hostile input; callers are
        # promised one, with the cause chained for whoever debugs it.
        raise BounceParseError(f"unreadable message: {type(exc).__name__}: {exc}") from exc


def _parse(raw: bytes) -> ParsedBounce:
    if not raw or not raw.strip():
        raise BounceParseError("empty message")
    notes = _Notes()
    if len(raw) > MAX_READ_BYTES:
        raw = raw[:MAX_READ_BYTES]
        notes.add(f"only the first {MAX_READ_BYTES // 1024} KiB were read")
    msg = BytesParser(policy=compat32).parsebytes(raw)
    if not msg.keys():
        raise BounceParseError("no header section: not an RFC 5322 message (binary data?)")

    original = _original(msg, notes)
    feedback = _feedback_fields(msg, notes)
    texts = _human_texts(msg, notes)
    findings = (
        _feedback_findings(feedback, original)
        or _dsn_findings(msg, texts, notes)
        or _mta_findings(msg, texts, notes)
        or _auto_reply_findings(msg)
    )
    if not findings:
        raise BounceParseError(_refusal(raw, msg) + notes.suffix())
    body = "\n".join(texts)
    message_id = _header(original, "Message-ID") if original is not None else None
    token = _header(original, DELIVERY_TOKEN_HEADER) if original is not None else None
    return ParsedBounce(
        findings=tuple(findings),
        verp_addresses=_verp_addresses(msg, feedback),
        original_message_id=(
            _clean_message_id(message_id)
            or _quoted(_QUOTED_MESSAGE_ID, body)
            # Auto-replies and some NDRs return nothing but do answer our message.
            or _clean_message_id(_header(msg, "In-Reply-To"))
        ),
        original_delivery_token=_clean_token(token) or _quoted(_QUOTED_TOKEN, body),
        message_id=_clean_message_id(_header(msg, "Message-ID")),
    )


# --- reading the MIME tree ---------------------------------------------------------------------


def _walk(msg: Message) -> Iterator[Message]:
    """Every part, without descending into returned originals or DSN field blocks."""
    yield msg
    if msg.get_content_maintype() == "multipart" and isinstance(msg.get_payload(), list):
        for part in msg.get_payload():
            if isinstance(part, Message):
                yield from _walk(part)


def _refusal(raw: bytes, msg: Message) -> str:
    """The most telling reason why nothing was found."""
    if b"\x00" in raw[:65536]:
        return "binary data (NUL bytes) where mail text was expected"
    defects = sorted(
        {
            type(d).__name__
            for part in _walk(msg)
            for d in part.defects
            if isinstance(d, _BOUNDARY_DEFECTS)
        }
    )
    if defects:
        return f"truncated or malformed MIME ({', '.join(defects)}): no bounce report found"
    return (
        "not a bounce: no delivery-status part, no feedback report, no recognised MTA format "
        "and no auto-reply headers"
    )


def _decode(part: Message, notes: _Notes) -> str:
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


def _part_text(part: Message, notes: _Notes) -> str:
    """The text of a message/* part, whether the parser split it into blocks or not."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(_flatten(p) for p in payload if isinstance(p, Message))
    return _decode(part, notes)


def _flatten(part: Message) -> str:
    """A parsed part back to text; the stdlib generator chokes on the broken ones we meet."""
    head = "\n".join(f"{key}: {value}" for key, value in part.items())
    payload = part.get_payload()
    if isinstance(payload, list):
        body = "\n\n".join(_flatten(p) for p in payload if isinstance(p, Message))
    else:
        body = payload if isinstance(payload, str) else ""
    return f"{head}\n\n{body}" if head else body


def _human_texts(msg: Message, notes: _Notes) -> list[str]:
    """The human-readable text parts (plain preferred over HTML), originals excluded."""
    plain, markup = [], []
    for part in _walk(msg):
        if part.get_content_type() == "text/plain":
            plain.append(_decode(part, notes))
        elif part.get_content_type() == "text/html":
            markup.append(html.unescape(_TAGS.sub(" ", _decode(part, notes))))
    return plain or markup


def _original(msg: Message, notes: _Notes) -> Message | None:
    """The headers of the returned original message, when the bounce attached them."""
    for part in _walk(msg):
        if part.get_content_type() not in ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        return HeaderParser(policy=compat32).parsestr(_decode(part, notes), headersonly=True)
    return None


def _header(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    # compat32 hands back a Header object for 8-bit values; str() makes it text either way.
    return " ".join(str(value).split()) or None


def _decoded_header(msg: Message, name: str) -> str:
    value = _header(msg, name) or ""
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, email_errors.MessageError):
        return value


def _fields(blocks_text: str) -> list[Message]:
    """Header blocks separated by blank lines, as in a delivery-status or feedback-report part."""
    parser = HeaderParser(policy=compat32)
    text = blocks_text.replace("\r\n", "\n")
    return [parser.parsestr(block.strip("\n") + "\n") for block in re.split(r"\n[ \t]*\n", text)]


def _field_blocks(part: Message, notes: _Notes) -> list[Message]:
    payload = part.get_payload()
    encoded = (_header(part, "Content-Transfer-Encoding") or "").lower() in (
        "base64",
        "quoted-printable",
    )
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        if not encoded:
            return [block for block in payload if isinstance(block, Message)]
        # The parser split the encoded text into nonsense blocks; decode and split again.
        text = "\n".join(_flatten(block) for block in payload if isinstance(block, Message))
        notes.add("encoded delivery-status part")
        return _fields(_decode_text(text, part))
    return _fields(_part_text(part, notes))


def _decode_text(text: str, part: Message) -> str:
    clone = Message()
    clone["Content-Transfer-Encoding"] = _header(part, "Content-Transfer-Encoding") or "7bit"
    clone.set_payload(text)
    data = clone.get_payload(decode=True)
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else text


def _address(value: str | None) -> str | None:
    """The address in an address field: ``rfc822; a@b``, bare ``a@b``, ``<a@b>``, comments."""
    if not value:
        return None
    value = " ".join(value.split())
    if ";" in value:
        value = value.split(";", 1)[1]
    address = parseaddr(value.strip())[1].strip()
    if "@" not in address or any(c in address for c in "\r\n\x00 "):
        return None
    return address


def _clean_message_id(value: str | None) -> str | None:
    if not value:
        return None
    found = re.search(r"<[^<>\s]+>", value)
    return found.group(0) if found else None


def _clean_token(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    return value if re.fullmatch(r"[!-~]{1,200}", value) else None


def _quoted(pattern: re.Pattern[str], body: str) -> str | None:
    found = pattern.search(body)
    return found.group(1) if found else None


def _verp_addresses(msg: Message, feedback: Message | None) -> tuple[str, ...]:
    """Where the bounce was sent; for a complaint, also the envelope sender it reports."""
    sources = [(msg, name) for name in VERP_HEADERS]
    if feedback is not None:
        sources.append((feedback, "Original-Mail-From"))
    seen: dict[str, str] = {}
    for holder, name in sources:
        values = [str(v) for v in holder.get_all(name, [])]
        for _, address in getaddresses(values):
            if "@" in address and address.lower() not in seen:
                seen[address.lower()] = address
    return tuple(seen.values())


def _paragraphs_near(texts: list[str], address: str) -> Iterator[str]:
    """Each paragraph that names ``address`` (with the next one when it is only the address)."""
    needle = address.lower()
    for text in texts:
        lines = text.replace("\r\n", "\n").split("\n")
        for index, line in enumerate(lines):
            if needle not in line.lower():
                continue
            paragraph: list[str] = []
            for following in lines[index : index + 40]:
                if not following.strip():
                    if len(" ".join(paragraph).replace(address, "").strip(" <>:")) >= 20:
                        break
                    continue
                paragraph.append(following.strip())
                if sum(len(p) for p in paragraph) > MAX_DIAGNOSTIC_CHARS:
                    break
            yield " ".join(paragraph)[:MAX_DIAGNOSTIC_CHARS]


def _text_near(texts: list[str], address: str) -> str:
    """The text next to ``address`` that gives a reason, else the first text next to it."""
    first = ""
    for count, paragraph in enumerate(_paragraphs_near(texts, address)):
        # An address is often named first in a "To:" line or an intro sentence; the reason sits
        # beside a later mention.
        if text_reason(paragraph) is not None or _status_of(paragraph):
            return paragraph
        first = first or paragraph
        if count >= 20:
            break
    return first


def _status_of(text: str) -> str | None:
    code = find_status_code(text)
    if code:
        return code
    reply = find_reply_code(text)
    return str(reply) if reply else None


# --- the four shapes ---------------------------------------------------------------------------


def _feedback_fields(msg: Message, notes: _Notes) -> Message | None:
    """The fields of an ARF report part, or None when the message carries none."""
    report = next((p for p in _walk(msg) if p.get_content_type() in FEEDBACK_REPORT_TYPES), None)
    if report is None:
        return None
    fields = Message()
    for block in _field_blocks(report, notes):
        for key, value in block.items():
            fields[key] = value
    return fields


def _feedback_findings(fields: Message | None, original: Message | None) -> list[BounceFinding]:
    """ARF complaints: the recipient is usually redacted, so the original's ids matter most."""
    if fields is None:
        return []
    feedback_type = (_header(fields, "Feedback-Type") or "abuse").lower()
    classification = FEEDBACK_CLASSIFICATIONS.get(feedback_type, COMPLAINT)
    agent = _header(fields, "User-Agent")
    diagnostic = f"Feedback-Type: {feedback_type}" + (f"; User-Agent: {agent}" if agent else "")
    recipients = [_address(str(v)) for v in fields.get_all("Original-Rcpt-To", [])]
    found = [r for r in recipients if r]
    if not found and original is not None:
        to = _address(_header(original, "To"))
        if to and not _REDACTED.search(to.split("@", 1)[0]):
            found = [to]
    recipients_or_none: list[str | None] = list(found) or [None]
    return [
        BounceFinding(r, classification.kind, classification.reason, None, diagnostic)
        for r in recipients_or_none
    ]


def _dsn_findings(msg: Message, texts: list[str], notes: _Notes) -> list[BounceFinding]:
    """RFC 3464: one finding per recipient block of every delivery-status part."""
    findings: list[BounceFinding] = []
    for part in _walk(msg):
        if part.get_content_type() not in DSN_TYPES:
            continue
        for block in _field_blocks(part, notes):
            finding = _dsn_finding(block, texts)
            if finding is not None and finding not in findings:
                findings.append(finding)
    return findings


def _dsn_finding(block: Message, texts: list[str]) -> BounceFinding | None:
    recipient = (
        _address(_header(block, "Original-Recipient"))
        or _address(_header(block, "Final-Recipient"))
        or _address(_header(block, "X-Actual-Recipient"))
    )
    if recipient is None:
        return None  # the per-message block, or a block too broken to name anyone
    status_field = _header(block, "Status") or ""
    status = find_status_code(status_field)
    diagnostic = _DIAGNOSTIC_TYPE.sub("", _header(block, "Diagnostic-Code") or "")
    # Free text after the code in Status ("5.0.0 (permanent failure)") is evidence too.
    status_words = status_field.replace(status or "", "", 1).strip(" ()")
    evidence = " ".join(filter(None, (diagnostic, status_words)))
    in_diagnostic = find_status_code(diagnostic)
    if status is None:
        status = in_diagnostic or _status_of(evidence)
    elif status.endswith(".0.0") and in_diagnostic and in_diagnostic[0] == status[0]:
        # Exim and OpenSMTPD write a generic "5.0.0" and leave the real code to the diagnostic.
        status = in_diagnostic
    action_word = re.match(r"\s*([A-Za-z]+)", _header(block, "Action") or "")
    action = ACTIONS.get(action_word.group(1).lower()) if action_word else None
    if action is None:
        action = STATUS_CLASS_ACTIONS.get((status or "")[:1])
    if action is None:
        return None
    classification = ACTION_CLASSIFICATIONS.get(action)
    if classification is None:
        classification = _failure(status, evidence, texts, recipient)
    diagnostic = diagnostic or status_words or _text_near(texts, recipient)
    return BounceFinding(
        recipient,
        classification.kind,
        classification.reason,
        status,
        diagnostic[:MAX_DIAGNOSTIC_CHARS],
    )


def _failure(status: str | None, evidence: str, texts: list[str], recipient: str) -> Classification:
    """A failed recipient: an MTA that says "failed" means permanent, even with no code."""
    status = status or "5.0.0"
    classification = classify(status, evidence)
    if classification.reason == "unknown":
        # Sendmail and Exchange often leave the reason to the human-readable part only.
        nearby = classify(status, _text_near(texts, recipient))
        if nearby.reason != "unknown":
            return nearby
    return classification


def _mta_findings(msg: Message, texts: list[str], notes: _Notes) -> list[BounceFinding]:
    """Non-DSN formats: flufl.bounce finds the addresses, the nearby text gives the reason."""
    try:
        temporary, permanent = flufl.bounce.all_failures(msg)
    except Exception as exc:  # noqa: BLE001 - third-party heuristics on hostile input
        # Its detectors index into headers that may be missing; one crash is no verdict.
        notes.add(f"MTA format detectors failed: {type(exc).__name__}")
        log.debug("flufl.bounce failed", exc_info=True)
        return []
    said_permanent = any(_PERMANENT.search(text) for text in texts)
    findings: dict[str, BounceFinding] = {}
    verdicts = [(a, True) for a in temporary] + [(a, False) for a in permanent]
    for address_bytes, transient in verdicts:
        address = _address(address_bytes.decode("ascii", "replace"))
        if address is None or address.lower() in findings:
            continue
        nearby = _text_near(texts, address)
        status = _status_of(nearby)
        # Without a code in the text, flufl.bounce's verdict (or the MTA saying "permanent error")
        # stands in for the status class; without either there is no evidence of permanence.
        implied = "4.0.0" if transient else ("5.0.0" if said_permanent else None)
        classification = classify(status or implied, nearby)
        if transient:
            classification = _as_transient(classification)
        findings[address.lower()] = BounceFinding(
            address, classification.kind, classification.reason, status, nearby
        )
    return [findings[key] for key in sorted(findings)]


def _as_transient(classification: Classification) -> Classification:
    """A warning about a delay is never a hard bounce, whatever words it uses."""
    if classification.reason == "unknown":
        return Classification("soft", "delayed")
    if classification.kind == "hard":
        return Classification("soft", classification.reason)
    return classification


def _auto_reply_findings(msg: Message) -> list[BounceFinding]:
    """RFC 3834 auto-replies and their non-standard cousins: noted, never counted."""
    auto_submitted = (_header(msg, "Auto-Submitted") or "no").lower()
    precedence = (_header(msg, "Precedence") or "").lower()
    subject = _decoded_header(msg, "Subject")
    flagged = (
        auto_submitted.startswith("auto-")
        or any(
            (_header(msg, name) or "no").lower() not in ("no", "false", "0")
            for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse")
        )
        or precedence == "auto_reply"
        or bool(_AUTO_REPLY_SUBJECT.search(subject))
    )
    if not flagged:
        return []
    sender = _address(_header(msg, "From"))
    return [
        BounceFinding(
            sender, AUTO_REPLY.kind, AUTO_REPLY.reason, None, subject[:MAX_DIAGNOSTIC_CHARS]
        )
    ]
