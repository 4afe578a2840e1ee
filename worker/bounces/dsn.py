"""Parse a bounce message: what came back, for whom, why, and for which message of ours.

Five shapes of mail come back to the envelope sender, tried in this order:

1. ARF / RFC 5965 feedback reports and Hotmail's JMRP forwards: complaints (``feedback``);
2. RFC 3464 delivery status notifications, with the deviations real MTAs make;
3. the MTAs' own formats (Exim, qmail, old Postfix, Exchange, Yahoo...), see ``mta``;
4. a DSN forwarded inside a message/rfc822 part (by a list or a helpdesk);
5. RFC 3834 auto-replies (out of office): one ``ignored``/``vacation`` finding, never counted.

Every recipient a report names is a finding, with a reason (sisimai's names), the kind that
reason implies, and the action: a delay notice (``Action: delayed``) is ``delayed`` and keeps its
reason; a failure after retries (``Action: failed`` with a 4.x.x status) is ``expired``.
Anything else is refused with :class:`BounceParseError`.

Pure: bytes in, :class:`ParsedBounce` out, no I/O and no settings.
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Final

from worker.bounces import BounceFinding, Classification, ParsedBounce
from worker.bounces.autoreply import auto_reply_findings
from worker.bounces.classify import classify, find_status_code
from worker.bounces.feedback import feedback_fields, feedback_findings, jmrp_findings
from worker.bounces.mime import (
    BOUNDARY_DEFECTS,
    MAX_DIAGNOSTIC_CHARS,
    Notes,
    address,
    attached_messages,
    field_blocks,
    fields,
    header,
    human_texts,
    original,
    walk,
)
from worker.bounces.mta import is_warning, mta_findings, notice_findings, status_of, text_near
from worker.errors import BounceParseError

MAX_READ_BYTES: Final = 512 * 1024
"""Only the head of a message is read: the report always comes before the returned original, and
flufl.bounce's heuristics take seconds per megabyte."""

VERP_HEADERS: Final = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
DSN_TYPES: Final = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "text/delivery-status",
        "message/xdelivery-status",  # XWall
    }
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
    "deliverable": "delivered",
    "relayed": "relayed",
    "expanded": "expanded",
}
"""Action values seen in the wild → the RFC 3464 value they mean."""

SUCCESS_ACTIONS: Final = frozenset({"delivered", "relayed", "expanded"})
STATUS_CLASS_ACTIONS: Final[dict[str, str]] = {"5": "failed", "4": "delayed", "2": "delivered"}
"""For blocks with no Action field: the status class says what happened."""

GAVE_UP_REASONS: Final = frozenset({"networkerror", "toomanyconn", "hostunknown"})
"""Transient troubles that, reported as a final failure, mean the MTA gave up retrying."""

_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.M)
_QUOTED_TOKEN = re.compile(
    rf"^[ \t>]*{DELIVERY_TOKEN_HEADER}:[ \t]*([!-~]{{1,200}})", re.IGNORECASE | re.M
)
_DIAGNOSTIC_TYPE = re.compile(r"^\s*[A-Za-z][\w.-]*\s*;\s*")


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
    notes = Notes()
    if len(raw) > MAX_READ_BYTES:
        raw = raw[:MAX_READ_BYTES]
        notes.add(f"only the first {MAX_READ_BYTES // 1024} KiB were read")
    msg = BytesParser(policy=compat32).parsebytes(raw)
    if not msg.keys():
        raise BounceParseError("no header section: not an RFC 5322 message (binary data?)")

    returned = _returned(msg, notes)
    feedback = feedback_fields(msg, notes)
    findings = _findings(msg, feedback, returned, notes)
    if not findings:
        raise BounceParseError(_refusal(raw, msg) + notes.suffix())
    body = "\n".join(human_texts(msg, notes))
    message_id = header(returned, "Message-ID") if returned is not None else None
    token = header(returned, DELIVERY_TOKEN_HEADER) if returned is not None else None
    return ParsedBounce(
        findings=tuple(findings),
        verp_addresses=_verp_addresses(msg, feedback),
        original_message_id=(
            _clean_message_id(message_id)
            or _quoted(_QUOTED_MESSAGE_ID, body)
            # Auto-replies and some NDRs return nothing but do answer our message.
            or _clean_message_id(header(msg, "In-Reply-To"))
        ),
        original_delivery_token=_clean_token(token) or _quoted(_QUOTED_TOKEN, body),
        message_id=_clean_message_id(header(msg, "Message-ID")),
    )


def _returned(msg: Message, notes: Notes) -> Message | None:
    """The returned original; for a forwarded report, the one that report returned (the first
    attached message may be anything else, and the report itself is not ours)."""
    if not any(part.get_content_type() in DSN_TYPES for part in walk(msg)):
        for attached in attached_messages(msg):
            if attached.get_content_type() == "multipart/report":
                inner = original(attached, notes)
                if inner is not None:
                    return inner
    return original(msg, notes)


def _findings(
    msg: Message, feedback: Message | None, returned: Message | None, notes: Notes
) -> list[BounceFinding]:
    texts = human_texts(msg, notes)
    return (
        feedback_findings(feedback, returned)
        or _dsn_findings(msg, texts, notes)
        or jmrp_findings(msg)
        or _forwarded_findings(msg, notes)
        or _loose_dsn_findings(msg, texts)
        or mta_findings(msg, texts, notes)
        or notice_findings(msg, texts)
        or auto_reply_findings(msg)
    )


def _forwarded_findings(msg: Message, notes: Notes) -> list[BounceFinding]:
    """A DSN someone forwarded as an attachment: its own report, one level deep."""
    for attached in attached_messages(msg):
        if attached.get_content_type() == "multipart/report":
            found = _dsn_findings(attached, human_texts(attached, notes), notes)
            if found:
                return found
    return []


def _loose_dsn_findings(msg: Message, texts: list[str]) -> list[BounceFinding]:
    """DSN fields in a message whose MIME structure is too broken to find the report part."""
    if msg.get_content_maintype() == "multipart" and any(
        part.get_content_type() in DSN_TYPES for part in walk(msg)
    ):
        return []  # the report part is there and said nothing usable
    payload = msg.get_payload()
    body = payload if isinstance(payload, str) else ""
    if "final-recipient:" not in body.lower():
        return []
    warning = is_warning(texts)
    findings: list[BounceFinding] = []
    for block in fields(body):
        finding = _dsn_finding(block, texts, warning)
        if finding is not None and finding not in findings:
            findings.append(finding)
    return findings


def _refusal(raw: bytes, msg: Message) -> str:
    """The most telling reason why nothing was found."""
    if b"\x00" in raw[:65536]:
        return "binary data (NUL bytes) where mail text was expected"
    defects = sorted(
        {
            type(d).__name__
            for part in walk(msg)
            for d in part.defects
            if isinstance(d, BOUNDARY_DEFECTS)
        }
    )
    if defects:
        return f"truncated or malformed MIME ({', '.join(defects)}): no bounce report found"
    return (
        "not a bounce: no delivery-status part, no feedback report, no recognised MTA format "
        "and no auto-reply headers"
    )


# --- RFC 3464 ----------------------------------------------------------------------------------


def _dsn_findings(msg: Message, texts: list[str], notes: Notes) -> list[BounceFinding]:
    """One finding per recipient block of every delivery-status part."""
    findings: list[BounceFinding] = []
    warning = is_warning(texts)
    for part in walk(msg):
        if part.get_content_type() not in DSN_TYPES:
            continue
        blocks = field_blocks(part, notes)
        # Some MTAs (Boxbe) put the Action in the per-message block; it then holds for all.
        shared = next((header(b, "Action") for b in blocks if header(b, "Action")), None)
        for block in blocks:
            finding = _dsn_finding(block, texts, warning, shared)
            if finding is not None and finding not in findings:
                findings.append(finding)
    return findings


def _dsn_finding(
    block: Message, texts: list[str], warning: bool, shared_action: str | None = None
) -> BounceFinding | None:
    recipient = (
        address(header(block, "Original-Recipient"))
        or address(header(block, "Final-Recipient"))
        or address(header(block, "X-Actual-Recipient"))
    )
    if recipient is None:
        return None  # the per-message block, or a block too broken to name anyone
    status_field = header(block, "Status") or ""
    status = find_status_code(status_field)
    diagnostic = _DIAGNOSTIC_TYPE.sub("", header(block, "Diagnostic-Code") or "")
    # Free text after the code in Status ("5.0.0 (permanent failure)") is evidence too.
    status_words = status_field.replace(status or "", "", 1).strip(" ()")
    evidence = " ".join(filter(None, (diagnostic, status_words)))
    in_diagnostic = find_status_code(diagnostic)
    if status is None:
        status = in_diagnostic or status_of(evidence)
    elif status.endswith(".0.0") and in_diagnostic and in_diagnostic[0] == status[0]:
        # Exim and OpenSMTPD write a generic "5.0.0" and leave the real code to the diagnostic.
        status = in_diagnostic
    action_word = re.match(r"\s*([A-Za-z]+)", header(block, "Action") or shared_action or "")
    action = ACTIONS.get(action_word.group(1).lower()) if action_word else None
    if action is None:
        action = STATUS_CLASS_ACTIONS.get((status or "")[:1])
    if action is None:
        # No action, no code: the human-readable part says whether the MTA still retries.
        action = "delayed" if warning else "failed"
    if action in SUCCESS_ACTIONS:
        classification = Classification("ignored", "delivered")
        action = "relayed" if action == "expanded" else action
    else:
        classification = _failure(status, evidence, texts, recipient, action == "delayed")
    shown = diagnostic or status_words or text_near(texts, recipient)
    return BounceFinding(
        recipient,
        classification.kind,
        classification.reason,
        status,
        shown[:MAX_DIAGNOSTIC_CHARS],
        action=action,
    )


def _failure(
    status: str | None, evidence: str, texts: list[str], recipient: str, delayed: bool
) -> Classification:
    """A failed (or delayed) recipient, from its fields, else from the text about it."""
    nearby = text_near(texts, recipient)
    found = classify(status, evidence, delayed=delayed)
    if found.reason in ("onhold", "undefined", "expired") or (
        not delayed and (status or "").endswith(".0.0") and not evidence.strip()
    ):
        # Sendmail, Exchange and Gmail often leave the reason to the human-readable part.
        beside = classify(status, f"{evidence} {nearby}", delayed=delayed)
        if beside.reason not in ("onhold", "undefined"):
            found = beside
    if not delayed and (status or "").startswith("4"):
        # A final failure with a transient status: the MTA retried until it gave up.
        if found.reason in GAVE_UP_REASONS or (status or "").startswith("4.4."):
            return Classification("soft", "expired")
    return found


# --- what the bounce is about ------------------------------------------------------------------


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
        for _, found in getaddresses(values):
            if "@" in found and found.lower() not in seen:
                seen[found.lower()] = found
    return tuple(seen.values())
