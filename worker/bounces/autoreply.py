"""Auto-replies (RFC 3834 and their non-standard cousins): noted as ``vacation``, never counted.

Bounces are tried before auto-replies because Postfix and Exim mark their bounces
``Auto-Submitted: auto-replied`` too. Pure: no I/O, no settings.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import Final

from worker.bounces import BounceFinding
from worker.bounces.mime import MAX_DIAGNOSTIC_CHARS, address, decoded_header, header

AUTO_REPLY_HEADERS: Final = ("X-Autoreply", "X-Autorespond", "X-Autoresponse")

_MAILER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailer)@", re.IGNORECASE)
_AUTO_REPLY_SUBJECT = re.compile(
    r"out of (the )?office|\booo\b|auto(matic)?[- ]?(reply|response|antwort)|autoreply|"
    r"\bvacation\b|\babsence\b|abwesenheit|réponse automatique|fuera de la oficina|"
    r"away from (my|the) (desk|office)|on leave\b|automatyczna|automatiska atbilde|"
    r"atvaļinājums|atvalinajums|thank you for your (e-?mail|message)",
    re.IGNORECASE,
)


def auto_reply_findings(msg: Message) -> list[BounceFinding]:
    """One ``ignored``/``vacation`` finding for the sender of an auto-reply, else none."""
    auto_submitted = (header(msg, "Auto-Submitted") or "no").lower()
    precedence = (header(msg, "Precedence") or "").lower()
    subject = decoded_header(msg, "Subject")
    flagged = (
        auto_submitted.startswith("auto-")
        or any(
            (header(msg, name) or "no").lower() not in ("no", "false", "0")
            for name in AUTO_REPLY_HEADERS
        )
        or precedence == "auto_reply"
        or bool(_AUTO_REPLY_SUBJECT.search(subject))
    )
    sender = address(header(msg, "From"))
    if not flagged or _is_mailer(sender, auto_submitted):
        return []
    return [
        BounceFinding(
            sender,
            "ignored",
            "vacation",
            None,
            subject[:MAX_DIAGNOSTIC_CHARS],
            action="autoreply",
        )
    ]


def _is_mailer(sender: str | None, auto_submitted: str) -> bool:
    """A mail system's own notice (a failure report it could not word as one) is no auto-reply."""
    return bool(sender and _MAILER.match(sender)) or "failure" in auto_submitted
