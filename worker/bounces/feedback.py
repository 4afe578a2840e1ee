"""Complaints: ARF feedback reports (RFC 5965) and Hotmail's older JMRP forwards.

A complaint's recipient is often redacted, so the returned original's ids (our VERP token,
Message-ID) matter more than the address. Pure: no I/O, no settings.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import Final

from worker.bounces import BounceFinding, Classification
from worker.bounces.mime import Notes, address, attached_messages, field_blocks, header, walk

FEEDBACK_REPORT_TYPES: Final = frozenset({"message/feedback-report", "text/feedback-report"})
JMRP_RECIPIENT_HEADER: Final = "X-HmXmrOriginalRecipient"

FEEDBACK_CLASSIFICATIONS: Final[dict[str, Classification]] = {
    "abuse": Classification("complaint", "feedback"),
    "fraud": Classification("complaint", "feedback"),
    "virus": Classification("complaint", "feedback"),
    "other": Classification("complaint", "feedback"),
    "not-spam": Classification("ignored", "feedback"),
    # A DMARC failure report is about our authentication, not the reader's wish.
    "auth-failure": Classification("sender", "authfailure"),
}
COMPLAINT: Final = Classification("complaint", "feedback")

_REDACTED = re.compile(r"redacted|^[x*#.]+$|^\W*$", re.IGNORECASE)


def feedback_fields(msg: Message, notes: Notes) -> Message | None:
    """The fields of an ARF report part, or None when the message carries none."""
    report = next((p for p in walk(msg) if p.get_content_type() in FEEDBACK_REPORT_TYPES), None)
    if report is None:
        return None
    found = Message()
    for block in field_blocks(report, notes):
        for key, value in block.items():
            found[key] = value
    return found


def feedback_findings(fields: Message | None, original: Message | None) -> list[BounceFinding]:
    """One complaint finding per reported recipient (one with no recipient when redacted)."""
    if fields is None:
        return []
    feedback_type = (header(fields, "Feedback-Type") or "abuse").lower()
    classification = FEEDBACK_CLASSIFICATIONS.get(feedback_type, COMPLAINT)
    agent = header(fields, "User-Agent")
    diagnostic = f"Feedback-Type: {feedback_type}" + (f"; User-Agent: {agent}" if agent else "")
    recipients = [address(str(v)) for v in fields.get_all("Original-Rcpt-To", [])]
    found = [r for r in recipients if r]
    if not found and original is not None:
        to = address(header(original, "To"))
        if to and not _REDACTED.search(to.split("@", 1)[0]):
            found = [to]
    recipients_or_none: list[str | None] = list(found) or [None]
    return [
        BounceFinding(
            r, classification.kind, classification.reason, None, diagnostic, action="complaint"
        )
        for r in recipients_or_none
    ]


def jmrp_findings(msg: Message) -> list[BounceFinding]:
    """Hotmail's JMRP: the complained-of message forwarded whole, the reader in a header."""
    for attached in attached_messages(msg):
        recipient = address(header(attached, JMRP_RECIPIENT_HEADER))
        if recipient is not None:
            return [
                BounceFinding(
                    recipient,
                    COMPLAINT.kind,
                    COMPLAINT.reason,
                    None,
                    "Hotmail JMRP complaint",
                    action="complaint",
                )
            ]
    return []
