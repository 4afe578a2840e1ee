"""MTAs' own bounce formats (Exim, qmail, old Postfix, Exchange, Yahoo, IMail...): no DSN part.

``flufl.bounce`` finds the failed addresses (and whether the MTA will still retry); the reason is
read from the text next to each address. Also used for a DSN whose fields say too little: the
human-readable part often quotes the server's reply that the fields left out. Pure.
"""

from __future__ import annotations

import logging
import re
from email.message import Message
from itertools import islice
from typing import Final

import flufl.bounce

from worker.bounces import BounceFinding, Classification
from worker.bounces.classify import classify, find_reply_code, find_status_code, text_reason
from worker.bounces.mime import MAX_DIAGNOSTIC_CHARS, Notes, address, header, paragraphs_near
from worker.bounces.reasons import kind_of

log = logging.getLogger(__name__)

_PERMANENT = re.compile(
    r"permanent (error|failure|fatal)|failed permanently|permanently (failed|rejected)|"
    r"fatal error|hard bounce|PERM_FAILURE",
    re.IGNORECASE,
)
_WARNING = re.compile(
    r"THIS IS A WARNING ONLY|has not yet been delivered|will (continue|keep) (trying|to try)|"
    r"will be retried|still being retried|Delivery attempts will continue|"
    r"has been delayed|delivery is delayed",
    re.IGNORECASE,
)
MAX_PARAGRAPHS: Final = 20
MAX_NOTICE_ADDRESSES: Final = 3
_NOTICE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery|mail system", re.IGNORECASE)
_NOTICE_SUBJECT = re.compile(
    r"undeliver|not (be )?delivered|delivery (status|failure|problem|report)|failure notice|"
    r"returned mail|non-?delivery|message status",
    re.IGNORECASE,
)
_ORIGINAL_MARK = re.compile(
    r"^[ >-]*(original message|the first \d+ lines|this is a copy|below this line|"
    r"received: )",
    re.IGNORECASE | re.MULTILINE,
)
_ADDRESS = re.compile(
    r"[A-Za-z0-9.+'=_-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{1,24}\b"
)
MAX_SCAN_CHARS: Final = 20_000
"""Free-text scans look at the notice, which comes first; the rest is the returned original."""
_EXPANDED = re.compile(
    # "final@host", any "(reason: ...)" remarks (one level of nesting), "(expanded from: ours)".
    r"<?([^\s<>()@]{1,64}@[\w.-]{1,255})>?"
    r"(?:\s*\((?!expanded)[^()]{0,300}(?:\([^()]{0,100}\)[^()]{0,300})*\)){0,3}"
    r"\s*\(expanded from:?\s*<?([^\s<>()@]{1,64}@[\w.-]{1,255})>?\)",
    re.IGNORECASE,
)


def status_of(text: str) -> str | None:
    """The enhanced status code in a text, else its basic reply code, else None."""
    code = find_status_code(text)
    if code:
        return code
    reply = find_reply_code(text)
    return str(reply) if reply else None


def text_near(texts: list[str], recipient: str) -> str:
    """The text next to ``recipient`` that gives a reason, else one with a code, else the first.

    An address is often named first in a "To:" line or an intro sentence, and a session
    transcript ("220 mx ESMTP") carries codes that say nothing: the reason sits beside a later
    mention.
    """
    paragraphs = list(islice(paragraphs_near(texts, recipient), MAX_PARAGRAPHS))
    return (
        next((p for p in paragraphs if text_reason(p) is not None), None)
        or next((p for p in paragraphs if _failure_code(p)), None)
        or (paragraphs[0] if paragraphs else "")
    )


def _failure_code(text: str) -> str | None:
    """A 4xx or 5xx code in a text; success codes in a transcript are no evidence."""
    code = status_of(text)
    return code if code and code[0] in "45" else None


def expansions(texts: list[str]) -> dict[str, str]:
    """Final address → the address we mailed, from "x (expanded from y)" (Sendmail, Postfix)."""
    found: dict[str, str] = {}
    for text in texts:
        for final, mailed in _EXPANDED.findall(text[:MAX_SCAN_CHARS]):
            found[final.lower()] = mailed
    return found


def is_warning(texts: list[str]) -> bool:
    """True when the human-readable part says the MTA is still retrying (a delay notice)."""
    return any(_WARNING.search(text) for text in texts)


def mta_findings(msg: Message, texts: list[str], notes: Notes) -> list[BounceFinding]:
    """Non-DSN formats: flufl.bounce finds the addresses, the nearby text gives the reason."""
    try:
        temporary, permanent = flufl.bounce.all_failures(msg)
    except Exception as exc:  # noqa: BLE001 - third-party heuristics on hostile input
        # Its detectors index into headers that may be missing; one crash is no verdict.
        notes.add(f"MTA format detectors failed: {type(exc).__name__}")
        log.debug("flufl.bounce failed", exc_info=True)
        return []
    warning = is_warning(texts) and not any(_PERMANENT.search(text) for text in texts)
    whole = " ".join(" ".join(texts).split())[:4000]
    mailed = expansions(texts)
    findings: dict[str, BounceFinding] = {}
    verdicts = [(a, True) for a in temporary] + [(a, False) for a in permanent]
    for address_bytes, transient in verdicts:
        found = address(address_bytes.decode("ascii", "replace"))
        if found is None:
            continue
        nearby = text_near(texts, found)
        # A list or alias expanded our address: the failure is reported for the address we used.
        found = mailed.get(found.lower(), found)
        if found.lower() in findings:
            continue
        evidence = nearby
        if text_reason(nearby) is None and not _failure_code(nearby):
            # The address stands alone; the notice around it is all about this failure.
            evidence = f"{nearby} {whole}"
        status = _failure_code(evidence)
        delayed = transient and warning
        classification = classify(status, evidence, delayed=delayed)
        if classification.reason == "onhold":
            # A notice in an MTA's own words that names no reason gives none at all.
            classification = Classification(classification.kind, "undefined")
        kind = "soft" if transient and classification.kind == "hard" else classification.kind
        findings[found.lower()] = BounceFinding(
            found,
            kind,
            classification.reason,
            status,
            nearby or whole[:MAX_DIAGNOSTIC_CHARS],
            action="delayed" if delayed else "failed",
        )
    return [findings[key] for key in sorted(findings)]


def notice_findings(msg: Message, texts: list[str]) -> list[BounceFinding]:
    """A mail system's notice in free prose: the few addresses it names are the failures.

    The last resort for a failure notice no detector knows: only when the message comes from a
    mail system (or says it is a delivery notice), and only the addresses of the notice's own text
    (not the returned original's), not the bounce's own sender and recipients.
    """
    sender = header(msg, "From") or ""
    null_sender = sender.strip(" <>") == ""
    subject = header(msg, "Subject") or ""
    if not (null_sender or _NOTICE_SENDER.search(sender) or _NOTICE_SUBJECT.search(subject)):
        return []
    notice = _ORIGINAL_MARK.split(texts[0][:MAX_SCAN_CHARS], maxsplit=1)[0] if texts else ""
    unprintable = sum(not c.isprintable() and c not in "\r\n\t" for c in notice)
    if unprintable > len(notice) // 100:
        return []  # binary junk, not prose
    own = {
        found.lower()
        for name in ("From", "To", "Cc", "Reply-To", "Return-Path", "Delivered-To", "Sender")
        for found in _ADDRESS.findall(header(msg, name) or "")
    }
    candidates: dict[str, str] = {}
    for found in _ADDRESS.findall(notice):
        if found.lower() not in own and not _NOTICE_SENDER.match(found):
            candidates.setdefault(found.lower(), found)
    if not 1 <= len(candidates) <= MAX_NOTICE_ADDRESSES:
        return []
    findings = []
    for found in candidates.values():
        nearby = text_near([notice], found)
        classification = classify(_failure_code(nearby), f"{nearby} {notice}")
        reason = "undefined" if classification.reason == "onhold" else classification.reason
        findings.append(
            BounceFinding(found, kind_of(reason), reason, _failure_code(nearby), nearby)
        )
    return findings
