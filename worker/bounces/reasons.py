"""Bounce reasons (sisimai's names) and the one table that turns a reason into a kind.

Every finding, whatever its source (bounce mail, SMTP refusal, provider webhook), carries one of
these reasons. What we do about it depends only on the kind:

- ``hard``: the address is dead; the reader is suppressed at once.
- ``soft``: try again later; repeated soft bounces suppress.
- ``complaint``: the reader marked us as spam; suppressed at once.
- ``sender``: our side is at fault (our IP blocked, content filtered, authentication, rate): the
  reader is never suppressed, the operator is shown a sender problem.
- ``ignored``: auto-replies, delivery and relay notices.

Pure: no I/O, no settings.
"""

from __future__ import annotations

from typing import Final

from worker.bounces import Kind

HARD: Final = frozenset({"userunknown", "hostunknown", "hasmoved"})
SENDER: Final = frozenset(
    {
        "blocked",
        "spamdetected",
        "policyviolation",
        "securityerror",
        "authfailure",
        "requireptr",
        "norelaying",
        "toomanyconn",
        "ratelimited",
        "contenterror",
        "virusdetected",
        "systemerror",
        "mailererror",
        "rejected",
        "notcompliantrfc",
        "syntaxerror",
        "badreputation",
        "failedstarttls",
    }
)
SOFT: Final = frozenset(
    {
        "mailboxfull",
        "mesgtoobig",
        "exceedlimit",
        "filtered",
        "suspend",
        "expired",
        "networkerror",
        "systemfull",
        "onhold",
        "undefined",
    }
)
IGNORED: Final = frozenset({"vacation", "delivered"})
PROVIDER_NOTICES: Final = frozenset(
    {
        "not_spam",
        "unsubscribed",
        "subscribed",
        "address_change",
        "challenge",
        "open_relay_test",
        "manually_deactivated",
        "inbound_error",
    }
)
"""What provider webhooks report besides bounces and complaints: recorded nowhere."""

REASONS: Final[tuple[str, ...]] = tuple(
    sorted(HARD | SENDER | SOFT | IGNORED | {"notaccept", "feedback"})
)
"""Every reason a finding may carry."""

REASON_KINDS: Final[dict[str, Kind]] = {
    **{reason: "hard" for reason in HARD},
    **{reason: "sender" for reason in SENDER},
    **{reason: "soft" for reason in SOFT},
    **{reason: "ignored" for reason in IGNORED | PROVIDER_NOTICES},
    "feedback": "complaint",
}
"""The kind of each reason; ``notaccept`` is absent: its kind depends on the status class."""


def kind_of(reason: str, status: str | None = None) -> Kind:
    """The kind a reason implies; ``notaccept`` is hard when permanent (5xx), else soft."""
    if reason == "notaccept":
        return "hard" if (status or "5").startswith("5") else "soft"
    return REASON_KINDS.get(reason, "soft")
