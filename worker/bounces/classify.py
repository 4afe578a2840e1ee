"""Classify a delivery failure by its reason, from the status code and the server's words together.

One classifier serves both bounce mail (the ``Status`` and ``Diagnostic-Code`` of a DSN, or the text
near an address in an MTA's own format) and SMTP replies at send time (``550`` and the reply text).

Why the text is read at all: real servers answer ``550`` for an unknown user, a full mailbox, a spam
block and a blacklisted sender alike, and many bounces carry no enhanced status code. So the order
of evidence is:

1. text patterns (most specific first), because ``550 5.7.1 ... blocked using zen.spamhaus.org``
   says more than ``5.7.1`` and ``550 Mailbox full`` more than ``550``;
2. the enhanced status code (RFC 3463, the IANA registry and well-known provider extensions);
3. the basic SMTP reply code (RFC 5321);
4. the subject of the enhanced code (``5.1.x`` is about the address, ``5.7.x`` about policy);
5. the class alone (``2``, ``4`` or ``5``).

Decisions worth knowing:

- A permanent failure (class 5) whose reason is not recognised is ``hard`` with reason ``unknown``:
  SPEC 6 says a 5xx at RCPT is a hard bounce, and a server that says "permanent" means it.
- ``5.1.x`` is about the recipient's address (hard). ``5.7.x`` is security or policy, which blames
  the sender (kind ``sender``) unless the text says the user is unknown.
- A transient failure (class 4) is never ``hard``: "450 4.1.1 user unknown" is soft, with reason
  ``user_unknown`` kept so that the policy can see it. Sender-side reasons keep kind ``sender``
  whatever the class, because a rate limit or a block is not the subscriber's fault.
- A full mailbox and a message too big are ``soft``: neither says the address is dead.
- With no code at all and no recognised text the answer is ``soft``/``unknown``: without evidence
  an address is not retired at once, only after repeated soft bounces.
"""

from __future__ import annotations

import re
from typing import Final

from worker.bounces import Classification, Kind

# Long diagnostics are server prose or a pasted transcript; the reason is always near the start,
# and capping keeps a hostile 10 MB "diagnostic" from costing anything.
MAX_DIAGNOSTIC_CHARS: Final = 4096

REASON_KINDS: Final[dict[str, Kind]] = {
    "user_unknown": "hard",
    "host_unknown": "hard",
    "moved": "hard",
    "mailbox_full": "soft",
    "message_too_big": "soft",
    "delayed": "soft",
    "expired": "soft",
    "network": "soft",
    "filtered": "sender",
    "rejected_sender": "sender",
    "blocked": "sender",
    "spam": "sender",
    "policy": "sender",
    "auth_failure": "sender",
    "rate_limited": "sender",
    "complaint": "complaint",
    "auto_reply": "ignored",
    "relayed": "ignored",
    "delivered": "ignored",
}
"""Kind of each reason; ``unknown`` is absent on purpose: its kind comes from the status class."""

REASONS: Final[tuple[str, ...]] = (*REASON_KINDS, "unknown")

# Ordered: the first pattern that matches wins, so the more specific ones come first: a sender
# rejection before "domain not found", a full mailbox before "mailbox unavailable", a DMARC or
# blocklist rejection before the generic word "blocked" that such replies also use.
TEXT_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    (
        r"sender address rejected|sender verify failed|sender (address )?(is )?"
        r"(invalid|unknown|not allowed|rejected|blocked|denied)|"
        r"sender domain (must|does not|doesn't) (exist|resolve)|"
        r"domain of sender address .{0,80} does not (exist|resolve)|"
        r"bad sender|sender (has|with) (a )?null mx",
        "rejected_sender",
    ),
    (
        r"(sending|daily|hourly|message rate|connection rate) (quota|limit)|rate limit|"
        r"rate[- ]limited|too many (messages|connections|emails|mails|recipients|concurrent)|"
        r"throttl|unusual rate|unexpected volume|temporarily deferred due to|"
        r"exceeded the (sending|connection|message) (rate|limit)|\[ts0[1-4]\]|\btss0[1-4]\b|"
        r"please slow down|receiving mail too quickly from",
        "rate_limited",
    ),
    (
        r"receiving mail (too quickly|at a rate)|greylist|graylist|grey-list|gray-list|"
        r"temporarily (rejected|unavailable|deferred|blocked)|resources temporarily unavailable",
        "delayed",
    ),
    (
        r"host not found, try again|temporary failure in name resolution|"
        r"connection (refused|timed out|reset|dropped)|no route to host|"
        r"network is unreachable|lost connection with|conversation with .* timed out|"
        r"unable to connect|could not connect|couldn't connect|wasn't able to establish|"
        r"timeout (while|waiting)|tls (handshake|negotiation) failed|dns (timeout|error)",
        "network",
    ),
    (
        r"mailbox (has |is )?moved|user has moved|no longer (with|at|employed|works)|"
        r"changed (his|her|their) (e-?mail )?address|address has changed|"
        r"please (re)?send (it |your message )?to <?[^\s@>]+@|\bforwarding address\b",
        "moved",
    ),
    (
        r"mailbox size limit|mail ?box (is |was )?full|full mailbox|over ?quota|quota exceeded|"
        r"exceeded (the |their |his |her )?(storage|quota|mailbox)|"
        r"exceeds? (the |their |his |her )?(storage|quota|mailbox)|insufficient (disk )?"
        r"(space|storage)|not enough (disk )?(space|storage)|out of (storage|disk space)|"
        r"storage (space )?(allocation )?(is )?(full|exceeded)|mailfolder is full|"
        r"exceeded storage allocation|mailbox (is )?over",
        "mailbox_full",
    ),
    (
        r"host or domain name not found|domain (name )?not found|no such domain|"
        r"domain (does not|doesn't) exist|domain .{0,80} (does not|doesn't) exist|"
        r"\bnxdomain\b|no (valid )?(mx|mail exchanger)|null mx|unrouteable|unroutable|"
        r"couldn't find any host|could not find any host|name or service not known|"
        r"mx records point to non-existent hosts|no address associated with hostname|"
        r"(unable|failed) to (route|resolve)|host unknown|unknown host|"
        r"name service error .* host not found|domain (is )?(invalid|unknown)",
        "host_unknown",
    ),
    (
        r"user unknown|unknown user|no such (user|recipient|mailbox|address|person|account)|"
        r"(user|recipient|address|mailbox|account) (was )?not found|recipientnotfound|"
        r"(recipient|user|mailbox|account|address) (does not|doesn't|did not) exist|"
        r"(does not|doesn't) have an? \S+ account|does not exist|doesn't exist|"
        r"invalid (recipient|mailbox|address|user)|unknown (recipient|mailbox|local[- ]part|alias)|"
        r"(account|mailbox|user|address) (is |has been )?(disabled|inactive|deactivated|"
        r"suspended|expired|closed|terminated|locked|unavailable)|inactive (user|account)|"
        r"not a valid (mailbox|recipient|user|address)|no mailbox here|"
        r"mailbox unavailable|bad destination mailbox|recipient address rejected: access denied|"
        r"(user|mailbox) (is )?(invalid|unknown)|"
        r"no such local user|undeliverable address|addressee unknown|"
        r"(recipient|user) name is not recognized",
        "user_unknown",
    ),
    (
        r"message (size )?(exceeds|is larger than|too (big|large|long))|message length exceeds|"
        r"size limit|exceeds (the )?(maximum|fixed|size)|too large|message too big",
        "message_too_big",
    ),
    (
        r"\bspf\b|\bdkim\b|\bdmarc\b|\barc (validation|fail)|unauthenticated|"
        r"not authenticated|authentication (failed|failure|required|credentials)|"
        r"sender (is )?not authori[sz]ed|senderid|sender id",
        "auth_failure",
    ),
    (
        r"blocked using|spamhaus|spamcop|\bsorbs\b|barracuda|\bsurbl\b|\buribl\b|\brbl\b|"
        r"\bdnsbl\b|black ?list|block ?list|deny ?list|\blisted (at|on|in|by)\b|"
        r"poor (sending )?reputation|reputation|banned sending ip|"
        r"traffic not accepted from this ip|client host .{0,80} blocked|"
        r"\bip (address )?.{0,40}(blocked|banned|rejected)|\b(your|sender|sending) ip\b|"
        r"\btss09\b|permanently deferred",
        "blocked",
    ),
    (
        r"\bspam\b|unsolicited|bulk mail|\bjunk\b|spam score|spamassassin|looks like spam|"
        r"\buce\b|detected as spam",
        "spam",
    ),
    (
        r"virus|malware|infected|phishing|attachment|content (filter|rejected|policy|blocked)|"
        r"message content rejected|rejected (due to|because of) (its )?content|filtered|"
        r"content restrictions|banned (file|content)|because (of )?its content|content presents",
        "filtered",
    ),
    (
        r"\bblocked\b|\bbanned\b|\bdenylisted\b",
        "blocked",
    ),
    (
        r"delivery time expired|retry time(out)? (was )?(exceeded|expired)|"
        r"message expired|queue\.expired|delivery (has )?expired|in the queue too long|"
        r"could not be delivered (for|within|after) \d+|delayed too long|\bexpired\b",
        "expired",
    ),
    (
        r"relay(ing)? (access )?(denied|not permitted|prohibited)|not permitted to relay|"
        r"\bpolicy\b|policies|administrative prohibition|administratively denied|"
        r"reverse dns|\bptr\b|client host rejected|helo command rejected|"
        r"not authori[sz]ed|access denied|prohibited|refused by local policy",
        "policy",
    ),
    (
        r"out of (the )?office|auto(matic)?[- ]?(reply|response)|autoreply|\bvacation\b",
        "auto_reply",
    ),
    (r"\brelayed\b", "relayed"),
    (
        r"successfully delivered|delivery (was )?successful|(was|has been) delivered|"
        r"delivered to (the )?mailbox",
        "delivered",
    ),
)

WEAK_TEXT_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    (r"try (again )?later|please retry|retry later|\btemporar", "delayed"),
)
"""Words so generic that a registered status code says more than they do."""

_TEXT_RULES: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in TEXT_PATTERNS
)
_WEAK_TEXT_RULES: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in WEAK_TEXT_PATTERNS
)

ENHANCED_REASONS: Final[dict[str, str]] = {
    # Keys are "subject.detail"; the class (2, 4, 5) is read separately.
    "1.0": "user_unknown",
    "1.1": "user_unknown",
    "1.2": "host_unknown",
    "1.3": "user_unknown",  # bad destination address syntax
    "1.4": "user_unknown",  # ambiguous destination
    "1.5": "delivered",  # destination address valid
    "1.6": "moved",
    "1.7": "rejected_sender",
    "1.8": "rejected_sender",
    "1.10": "user_unknown",  # Office 365 RecipientNotFound; RFC 7505 null MX is caught by text
    "2.1": "user_unknown",  # mailbox disabled (Gmail: "account ... is disabled")
    "2.2": "mailbox_full",
    "2.3": "message_too_big",
    "3.1": "mailbox_full",  # mail system full
    "3.2": "network",  # system not accepting network messages
    "3.4": "message_too_big",
    "3.5": "network",
    "4.0": "network",
    "4.1": "network",
    "4.2": "network",
    "4.3": "network",
    "4.4": "host_unknown",  # unable to route
    "4.5": "network",
    "4.6": "network",
    "4.7": "expired",
    "5.3": "rate_limited",  # too many recipients
    "7.0": "policy",
    "7.1": "policy",
    "7.2": "policy",
    "7.3": "policy",
    "7.7": "filtered",
    "7.8": "auth_failure",
    "7.9": "auth_failure",
    "7.13": "user_unknown",  # RFC 7372: user account disabled
    "7.14": "policy",
    "7.17": "moved",  # RFC 7372: mailbox owner has changed
    "7.18": "moved",  # domain owner has changed
    "7.20": "auth_failure",
    "7.21": "auth_failure",
    "7.22": "auth_failure",
    "7.23": "auth_failure",
    "7.24": "auth_failure",
    "7.25": "policy",  # reverse DNS
    "7.26": "auth_failure",
    "7.27": "rejected_sender",
    "7.28": "rate_limited",  # Gmail: unusual rate of unsolicited mail
    "7.29": "auth_failure",
    "7.30": "policy",
    "7.57": "auth_failure",  # Office 365: client not authenticated
    "7.64": "policy",  # Office 365: relay denied
    "7.133": "policy",  # Office 365: sender not authenticated for group
    "7.134": "policy",
    "7.135": "policy",
    "7.136": "policy",
    "7.509": "auth_failure",  # Office 365: DMARC reject
    "7.511": "blocked",
    "7.512": "filtered",
    **{f"7.{n}": "blocked" for n in range(606, 650)},  # Office 365: banned sending IP
    **{f"7.{n}": "blocked" for n in range(700, 751)},  # Office 365: tenant blocked
}
"""Enhanced status codes (RFC 3463 and the IANA registry, plus Office 365's) → reason."""

TRANSIENT_ENHANCED_REASONS: Final[dict[str, str]] = {
    # The same code means something else when it is transient.
    **{f"7.{n}": "rate_limited" for n in range(500, 700)},  # Office 365: new-IP throttling
    "7.0": "rate_limited",
    "7.1": "delayed",  # usually greylisting
    "2.1": "rate_limited",  # Gmail: user receiving mail too fast
}

SUBJECT_REASONS: Final[dict[str, str]] = {
    "1": "user_unknown",
    "4": "network",
    "6": "filtered",
    "7": "policy",
}
"""When the detail is unregistered, the subject still says what the failure is about."""

SMTP_REASONS: Final[dict[int, str]] = {
    421: "network",
    450: "delayed",
    451: "delayed",
    452: "mailbox_full",
    530: "auth_failure",
    535: "auth_failure",
    551: "moved",
    552: "mailbox_full",
    553: "user_unknown",
}
"""Basic reply codes (RFC 5321) that mean one thing; 550 and 554 mean anything and are absent."""

_SUCCESS_REASONS: Final = frozenset({"delivered", "relayed", "auto_reply"})

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_BASIC = re.compile(r"(?:^|[\s;:#(\[])([245][0-5]\d)(?=[\s\-]|$)")


def _enhanced(text: str | None) -> tuple[str, str, str] | None:
    """The first enhanced status code in ``text`` as (class, subject, detail)."""
    if not text:
        return None
    found = _ENHANCED.search(text)
    return (found.group(1), found.group(2), found.group(3)) if found else None


def _basic(text: str) -> int | None:
    found = _BASIC.search(text)
    return int(found.group(1)) if found else None


def find_status_code(text: str | None) -> str | None:
    """The first enhanced status code ("5.1.1") in a text, or None."""
    found = _enhanced(text[:MAX_DIAGNOSTIC_CHARS] if text else None)
    return ".".join(found) if found else None


def find_reply_code(text: str) -> int | None:
    """The first basic SMTP reply code (550) in a text, or None."""
    return _basic(text[:MAX_DIAGNOSTIC_CHARS])


def _first_match(rules: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str | None:
    for pattern, reason in rules:
        if pattern.search(text):
            return reason
    return None


def text_reason(diagnostic: str) -> str | None:
    """The reason the words of a diagnostic give, or None when no pattern matches."""
    text = " ".join(diagnostic[:MAX_DIAGNOSTIC_CHARS].split())
    return _first_match(_TEXT_RULES, text) or _first_match(_WEAK_TEXT_RULES, text)


def _enhanced_reason(enhanced: tuple[str, str, str] | None) -> str | None:
    if enhanced is None:
        return None
    klass, subject, detail = enhanced
    key = f"{subject}.{detail}"
    if klass == "4" and key in TRANSIENT_ENHANCED_REASONS:
        return TRANSIENT_ENHANCED_REASONS[key]
    return ENHANCED_REASONS.get(key)


def _reason(
    diagnostic: str, enhanced: tuple[str, str, str] | None, smtp_code: int | None, klass: str | None
) -> str:
    """Strong words, then a registered code, then weak words, then the reply code and subject."""
    text = " ".join(diagnostic.split())
    candidates = (
        _first_match(_TEXT_RULES, text),
        _enhanced_reason(enhanced),
        _first_match(_WEAK_TEXT_RULES, text),
        SMTP_REASONS.get(smtp_code) if smtp_code is not None else None,
        SUBJECT_REASONS.get(enhanced[1]) if enhanced is not None else None,
    )
    for reason in candidates:
        if reason is None or (reason in _SUCCESS_REASONS and klass in ("4", "5")):
            continue  # a failure that mentions relaying is still a failure
        return reason
    return "unknown"


def _kind(reason: str, klass: str | None) -> Kind:
    if klass == "2":
        return "ignored"
    kind = REASON_KINDS.get(reason)
    if kind is None:  # unknown: the class decides, and no class means no evidence
        return "hard" if klass == "5" else "soft"
    if kind == "hard" and klass == "4":
        return "soft"
    return kind


def classify(status: str | None, diagnostic: str, smtp_code: int | None = None) -> Classification:
    """Classify a failure from its enhanced status, its diagnostic text and its SMTP reply code."""
    diagnostic = diagnostic[:MAX_DIAGNOSTIC_CHARS]
    enhanced = _enhanced(status) or _enhanced(diagnostic)
    if smtp_code is None:
        smtp_code = _basic(diagnostic)
    klass = enhanced[0] if enhanced else (str(smtp_code)[0] if smtp_code else None)
    if klass == "2":
        # A success notice: only the flavour of success is worth reading.
        relayed = text_reason(diagnostic) == "relayed"
        return Classification("ignored", "relayed" if relayed else "delivered")
    reason = _reason(diagnostic, enhanced, smtp_code, klass)
    return Classification(_kind(reason, klass), reason)


_LEADING_REPLY = re.compile(r"\A\s*(?:smtp;\s*)?([245]\d\d)\b", re.IGNORECASE)


def refine(
    kind: Kind, reason: str, status: str | None, diagnostic: str, smtp_code: int | None = None
) -> tuple[Kind, str]:
    """A provider's own bounce class, refined by its diagnostic text.

    The text may name a more specific reason, or put the blame on us (``sender``); it never
    turns a provider's hard bounce into a soft one or back.
    """
    if not diagnostic:
        return kind, reason
    if smtp_code is None:
        match = _LEADING_REPLY.match(diagnostic)
        smtp_code = int(match.group(1)) if match else None
    found = classify(status, diagnostic, smtp_code)
    if found.kind in (kind, "sender"):
        return found.kind, found.reason
    return kind, reason
