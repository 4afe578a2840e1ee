"""Classify a delivery failure: a sisimai reason from everything the server said, then the kind.

One classifier serves bounce mail (a DSN's ``Action``, ``Status`` and ``Diagnostic-Code``, or the
text next to an address in an MTA's own format), SMTP refusals at send time and the providers'
webhooks. The evidence is read in this order, the first that names a reason deciding:

1. the action: a delivery or relay notice is ``delivered`` (complaints and auto-replies are
   recognised before any of this, by the message's shape);
2. the server's words, first the mailbox provider's own wording (Gmail, Yahoo, Outlook, AOL,
   iCloud...: unambiguous), then what the MTA wrote (Postfix, Exim, Sendmail, qmail, Exchange,
   Domino...): ``550 5.1.1 ... Sender verify failed`` is our sender refused whatever the code,
   and ``550 5.7.1 No such user`` an unknown user;
3. the enhanced status code (RFC 3463, the IANA registry, provider extensions);
4. the SMTP reply code (RFC 5321) where it means one thing (551 moved, 552 full...);
5. what is left: a delay notice that says nothing more is ``expired`` (it is on its way to it),
   a failure with words nobody recognised ``onhold``, one with no words ``undefined``.

Two refinements after that: an "unknown user" refused after ``DATA`` is the recipient's filter
(``filtered``), not a dead address; and a transient (4xx) failure is never ``hard``.

The kind comes from the reason by one table (``reasons.kind_of``).
"""

from __future__ import annotations

import re
from typing import Final

from worker.bounces import Classification, Kind
from worker.bounces.reasons import kind_of
from worker.bounces.texts import DATA_STAGE, phrase_reason, provider_reason

# Long diagnostics are server prose or a pasted transcript; the reason is always near the start,
# and capping keeps a hostile 10 MB "diagnostic" from costing anything.
MAX_DIAGNOSTIC_CHARS: Final = 4096

ENHANCED_REASONS: Final[dict[str, str]] = {
    # Keys are "subject.detail"; the class (4 or 5) is read apart.
    "1.0": "userunknown",
    "1.1": "userunknown",
    "1.2": "hostunknown",
    "1.3": "userunknown",  # bad destination mailbox syntax
    "1.4": "userunknown",  # ambiguous destination
    "1.6": "hasmoved",
    "1.7": "rejected",  # bad sender mailbox syntax
    "1.8": "rejected",  # bad sender system address
    "1.9": "systemerror",  # message relayed to a non-compliant mailer
    "1.10": "notaccept",  # RFC 7505: the recipient's domain has a null MX
    "2.0": "filtered",
    "2.1": "filtered",  # mailbox disabled, not accepting messages
    "2.2": "mailboxfull",
    "2.3": "exceedlimit",  # message length exceeds an administrative limit
    "2.4": "systemerror",  # mailing list expansion problem
    "3.0": "systemerror",
    "3.1": "systemfull",
    "3.2": "notaccept",  # system not accepting network messages
    "3.3": "systemerror",
    "3.4": "mesgtoobig",
    "3.5": "systemerror",
    "4.0": "networkerror",
    "4.1": "networkerror",  # no answer from host
    "4.2": "networkerror",  # bad connection
    "4.3": "systemerror",  # directory server failure
    "4.4": "hostunknown",  # unable to route
    "4.5": "networkerror",  # mail system congestion
    "4.6": "networkerror",  # routing loop
    "4.7": "expired",  # delivery time expired
    "5.0": "syntaxerror",
    "5.1": "syntaxerror",
    "5.2": "syntaxerror",
    "5.3": "exceedlimit",  # too many recipients
    "5.4": "syntaxerror",
    "5.5": "syntaxerror",
    "5.6": "syntaxerror",
    "6.0": "contenterror",
    "7.0": "securityerror",
    "7.1": "securityerror",
    "7.2": "securityerror",
    "7.3": "securityerror",
    "7.4": "securityerror",
    "7.5": "securityerror",
    "7.6": "securityerror",
    "7.7": "securityerror",
    "7.8": "authfailure",  # our credentials (submission)
    "7.9": "securityerror",
    "7.13": "suspend",  # RFC 7372: user account disabled
    "7.14": "securityerror",
    "7.15": "securityerror",
    "7.16": "mailboxfull",  # RFC 7372 (draft): mailbox full
    "7.17": "hasmoved",  # RFC 7372: mailbox owner has changed
    "7.18": "hasmoved",  # domain owner has changed
    "7.20": "authfailure",  # RFC 7372: no passing DKIM signature
    "7.21": "authfailure",
    "7.22": "authfailure",
    "7.23": "authfailure",  # SPF validation failed
    "7.24": "authfailure",  # SPF validation error
    "7.25": "requireptr",  # reverse DNS validation failed
    "7.26": "authfailure",  # multiple authentication checks failed (Gmail: DMARC)
    "7.27": "rejected",  # RFC 7505: the sender's domain has a null MX
    "7.28": "blocked",  # Gmail: an unusual rate of unsolicited mail from our IP
    "7.29": "authfailure",  # ARC validation failed
    "7.30": "failedstarttls",  # REQUIRETLS
    "7.509": "authfailure",  # Office 365: DMARC reject
    **{f"7.{n}": "blocked" for n in range(510, 512)},  # Office 365: our domain or IP refused
    **{f"7.{n}": "blocked" for n in range(606, 651)},  # Office 365: banned sending IP
    **{f"7.{n}": "blocked" for n in range(700, 751)},  # Office 365: tenant blocked
}
"""Enhanced status codes (RFC 3463, the IANA registry and well-known extensions) → reason."""

TRANSIENT_ENHANCED_REASONS: Final[dict[str, str]] = {
    # The same code means something else when it is transient.
    "2.1": "suspend",  # mailbox disabled for now
    "4.1": "expired",  # no answer from the host, for long enough to give up
    "4.4": "networkerror",  # unable to route, for now
    "7.0": "securityerror",
    "7.1": "blocked",  # greylisting or a temporary block of our IP
    "7.28": "ratelimited",
    **{f"7.{n}": "ratelimited" for n in range(500, 700)},  # Office 365: new-IP throttling
}

SMTP_REASONS: Final[dict[int, str]] = {
    421: "toomanyconn",
    450: "onhold",
    452: "mailboxfull",
    521: "notaccept",  # RFC 7504: this host does not accept mail
    530: "authfailure",
    535: "authfailure",
    551: "hasmoved",
    552: "mailboxfull",
    553: "userunknown",
    556: "notaccept",  # RFC 7504: the domain does not accept mail
}
"""Basic reply codes (RFC 5321) that mean one thing; 550 and 554 mean anything and are absent."""

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_BASIC = re.compile(r"(?:^|[\s;:#(\[<])([245][0-5]\d)(?=[\s\-\])>]|$)")
# In free text only failure codes are evidence: a transcript's "220 mx ESMTP" says nothing.
_FAILURE_ENHANCED = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_FAILURE_BASIC = re.compile(r"(?:^|[\s;:#(\[<])([45][0-5]\d)(?=[\s\-\])>]|$)")


def _enhanced(text: str | None) -> tuple[str, str, str] | None:
    """The first enhanced status code in ``text`` as (class, subject, detail)."""
    if not text:
        return None
    found = _ENHANCED.search(text)
    return (found.group(1), found.group(2), found.group(3)) if found else None


def find_status_code(text: str | None) -> str | None:
    """The first enhanced status code ("5.1.1") in a text, or None."""
    found = _enhanced(text[:MAX_DIAGNOSTIC_CHARS] if text else None)
    return ".".join(found) if found else None


def find_reply_code(text: str) -> int | None:
    """The first basic SMTP reply code (550) in a text, or None."""
    found = _BASIC.search(text[:MAX_DIAGNOSTIC_CHARS])
    return int(found.group(1)) if found else None


def text_reason(diagnostic: str) -> str | None:
    """The reason the words of a diagnostic give (provider first, then MTA), or None."""
    text = " ".join(diagnostic[:MAX_DIAGNOSTIC_CHARS].split())
    return provider_reason(text) or phrase_reason(text)


def status_reason(status: str | None) -> str | None:
    """The reason an enhanced status code names, or None when it names none."""
    enhanced = _enhanced(status)
    if enhanced is None:
        return None
    klass, subject, detail = enhanced
    key = f"{subject}.{detail}"
    if klass == "4" and key in TRANSIENT_ENHANCED_REASONS:
        return TRANSIENT_ENHANCED_REASONS[key]
    return ENHANCED_REASONS.get(key)


def classify(
    status: str | None,
    diagnostic: str,
    smtp_code: int | None = None,
    *,
    delayed: bool = False,
) -> Classification:
    """Classify a failure (or a delay notice) from its status, its words and its reply code."""
    diagnostic = diagnostic[:MAX_DIAGNOSTIC_CHARS]
    in_text = _FAILURE_ENHANCED.search(diagnostic)
    enhanced = _enhanced(status) or (
        (in_text.group(1), in_text.group(2), in_text.group(3)) if in_text else None
    )
    if smtp_code is None:
        in_reply = _FAILURE_BASIC.search(diagnostic)
        smtp_code = int(in_reply.group(1)) if in_reply else None
    klass = enhanced[0] if enhanced else (str(smtp_code)[0] if smtp_code else None)
    if klass == "2" and not delayed:
        return Classification("ignored", "delivered")
    code = ".".join(enhanced) if enhanced else None
    if delayed:
        # A delay notice's code says why it waits, not why it will fail: only words count.
        reason = text_reason(diagnostic) or "expired"
        return Classification(_kind(reason, klass, delayed), reason)
    reason = (
        text_reason(diagnostic)
        or status_reason(code)
        or (SMTP_REASONS.get(smtp_code) if smtp_code is not None else None)
        or _fallback(diagnostic, delayed)
    )
    if reason == "userunknown" and DATA_STAGE.search(diagnostic):
        reason = "filtered"
    return Classification(_kind(reason, klass, delayed), reason)


def _fallback(diagnostic: str, delayed: bool) -> str:
    """Nothing named a reason: what the message's shape still says."""
    if delayed:
        return "expired"
    return "onhold" if diagnostic.strip() else "undefined"


def _kind(reason: str, klass: str | None, delayed: bool) -> Kind:
    kind = kind_of(reason, f"{klass}.0.0" if klass else ("4.0.0" if delayed else None))
    if kind == "hard" and (klass == "4" or delayed):
        return "soft"  # "450 4.1.1 user unknown" is worth another try
    return kind


_LEADING_REPLY = re.compile(r"\A\s*(?:smtp;\s*)?([245]\d\d)\b", re.IGNORECASE)


def refine(
    kind: Kind, reason: str, status: str | None, diagnostic: str, smtp_code: int | None = None
) -> tuple[Kind, str]:
    """A provider's own bounce class, refined by its diagnostic text.

    The text may name a more specific reason, or put the blame on us (``sender``). Where the
    provider named a precise reason, the text never turns it into another kind; where it only
    said "a bounce" (``onhold``, ``undefined``), the reason the text names decides, kind too.
    """
    if not diagnostic:
        return kind, reason
    if smtp_code is None:
        match = _LEADING_REPLY.match(diagnostic)
        smtp_code = int(match.group(1)) if match else None
    found = classify(status, diagnostic, smtp_code)
    if found.reason in ("onhold", "undefined"):
        return kind, reason
    if reason in ("onhold", "undefined") or found.kind in (kind, "sender"):
        return found.kind, found.reason
    return kind, reason
