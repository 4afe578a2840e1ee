"""The classifier reads the status code, the reply code and the server's words together."""

from __future__ import annotations

import pytest

from worker.bounces import KINDS
from worker.bounces.classify import classify, find_reply_code, find_status_code, refine
from worker.bounces.reasons import REASON_KINDS, REASONS, kind_of

# (status, smtp_code, diagnostic) → (kind, reason). Replies are quoted as the servers send them.
# fmt: off
CASES: list[tuple[str | None, int | None, str, str, str]] = [
    # --- the address is dead ---------------------------------------------------------------
    ("5.1.1", None, "smtp; 550 5.1.1 <x@example.com>: Recipient address rejected: User unknown "
     "in virtual mailbox table", "hard", "userunknown"),
    (None, 550, "5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual "
     "mailbox table", "hard", "userunknown"),
    (None, 550, "5.1.1 The email account that you tried to reach does not exist. Please try "
     "double-checking the recipient's email address for typos or unnecessary spaces. "
     "https://support.google.com/mail/?p=NoSuchUser", "hard", "userunknown"),
    (None, 550, "5.2.1 The email account that you tried to reach is disabled.",
     "soft", "suspend"),
    (None, 550, "5.5.0 Requested action not taken: mailbox unavailable (S2017062302) "
     "[AM4EUR05FT012.eop-eur05.prod.protection.outlook.com]", "hard", "userunknown"),
    ("5.1.10", None, "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by "
     "SMTP address lookup", "hard", "userunknown"),
    (None, 550, "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
     "[DB5EUR03FT005.eop-EUR03.prod.protection.outlook.com]", "hard", "userunknown"),
    (None, 554, "delivery error: dd This user doesn't have a yahoo.com account "
     "(x@yahoo.com) [0] - mta1047.mail.ne1.yahoo.com", "hard", "userunknown"),
    (None, 554, "delivery error: dd Sorry your message to x@yahoo.com cannot be delivered. "
     "This mailbox is disabled (554.30). - mta1168.mail.bf1.yahoo.com", "soft", "suspend"),
    (None, None, "Sorry, no mailbox here by that name. (#5.1.1)", "hard", "userunknown"),
    ("5.0.0", None, "550 No such user (x@example.com)", "hard", "userunknown"),
    (None, 550, "5.7.1 Unknown recipient", "hard", "userunknown"),
    (None, 550, "Unrouteable address", "hard", "hostunknown"),
    ("5.4.4", None, "X-Postfix; Host or domain name not found. Name service error for "
     "name=example.net type=A: Host not found", "hard", "hostunknown"),
    (None, None, "Sorry, I couldn't find any host named example.net. (#5.1.2)",
     "hard", "hostunknown"),
    ("5.1.2", None, "", "hard", "hostunknown"),
    ("5.1.6", None, "smtp; 551 5.1.6 Recipient no longer on server: x@example.com",
     "hard", "hasmoved"),
    (None, 551, "User not local; please try <y@example.org>", "hard", "hasmoved"),
    # At RCPT, "mailbox not available" is no such mailbox, whatever 5.2.1 (disabled) says.
    ("5.2.1", None, "smtp; 550 5.2.1 Mailbox not available", "hard", "userunknown"),
    ("5.1.10", None, "smtp; 550 5.1.10 Recipient address has null MX", "hard", "notaccept"),
    # --- try again later ---------------------------------------------------------------------
    (None, 452, "4.2.2 The email account that you tried to reach is over quota. Please direct "
     "the recipient to https://support.google.com/mail/?p=OverQuotaTemp", "soft", "mailboxfull"),
    (None, 550, "Mailbox full", "soft", "mailboxfull"),
    (None, 552, "5.2.2 Quota exceeded (mailbox for user is full)", "soft", "mailboxfull"),
    ("5.2.2", None, "smtp; 552 5.2.2 <x@example.com>: Recipient address rejected: Mailbox full",
     "soft", "mailboxfull"),
    (None, 522, "The recipient has exceeded their mailbox limit", "soft", "mailboxfull"),
    (None, 552, "5.3.4 Message size exceeds fixed maximum message size", "soft",
     "mesgtoobig"),
    ("4.4.1", None, "X-Postfix; connect to mx.example.com[192.0.2.10]:25: Connection timed out",
     "soft", "networkerror"),
    ("4.4.3", None, "X-Postfix; Host or domain name not found. Name service error for "
     "name=example.com type=MX: Host not found, try again", "soft", "networkerror"),
    (None, 450, "4.2.0 <x@example.com>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/example.com.html", "sender", "blocked"),
    (None, 451, "Temporary local problem - please try later", "sender", "systemerror"),
    (None, 550, 'unrouteable mail domain "example.net"', "soft", "networkerror"),
    (None, 554, "5.4.6 Too many hops", "soft", "networkerror"),
    ("4.4.7", None, "retry timeout exceeded", "soft", "expired"),
    ("5.4.7", None, "smtp; 550 4.4.7 QUEUE.Expired; message expired", "soft", "expired"),
    (None, 450, "4.1.1 <x@example.com>: Recipient address rejected: User unknown in local "
     "recipient table", "soft", "userunknown"),
    ("4.0.0", None, "", "soft", "undefined"),
    # --- our side is blocked -------------------------------------------------------------------
    (None, 554, "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
     "zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1", "sender", "blocked"),
    (None, 550, "5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact "
     "your Internet service provider since part of their network is on our block list (S3150).",
     "sender", "blocked"),
    (None, 550, "5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal from "
     "this list please visit https://sender.office.com/", "sender", "blocked"),
    (None, 553, "5.7.2 [TSS09] All messages from 192.0.2.1 will be permanently deferred; "
     "Retrying will NOT succeed.", "sender", "blocked"),
    (None, 550, "5.7.26 This mail is unauthenticated, which poses a security risk to the "
     "sender and Gmail users, and has been blocked. The sender must authenticate with at least "
     "one of SPF or DKIM.", "sender", "authfailure"),
    (None, 550, "5.7.509 Access denied, sending domain example.com does not pass DMARC "
     "verification and has a DMARC policy of reject.", "sender", "authfailure"),
    ("5.7.23", None, "smtp; 550 5.7.23 SPF validation failed", "sender", "authfailure"),
    (None, 550, "5.7.1 [192.0.2.1] Our system has detected that this message is likely "
     "unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been "
     "blocked.", "sender", "spamdetected"),
    (None, 554, "5.7.1 Message rejected as spam by Content Filtering.", "sender", "spamdetected"),
    (None, 552, "5.7.0 This message was blocked because its content presents a potential "
     "security issue.", "sender", "securityerror"),
    (None, 550, "5.7.1 Virus detected: Win.Test.EICAR_HDB-1", "sender", "virusdetected"),
    (None, 554, "5.7.9 Message not accepted for policy reasons. See "
     "https://help.yahoo.com/kb/postmaster/SLN7253.html", "sender", "policyviolation"),
    (None, 554, "5.7.1 <x@example.org>: Relay access denied", "sender", "norelaying"),
    ("5.7.1", None, "", "sender", "securityerror"),
    (None, 550, "administrative prohibition", "sender", "rejected"),  # Exim: an ACL refused us
    (None, 421, "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
     "volume or user complaints", "sender", "ratelimited"),
    (None, 421, "4.7.28 Gmail has detected an unusual rate of unsolicited mail originating "
     "from your IP address.", "sender", "ratelimited"),
    (None, 451, "4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)",
     "sender", "ratelimited"),
    (None, 553, "5.1.8 <bounces+d42@news.example.com>: Sender address rejected: Domain not "
     "found", "sender", "rejected"),
    (None, 535, "5.7.8 Username and Password not accepted.", "sender", "authfailure"),
    (None, 550, "5.7.25 The IP address sending this message does not have a PTR record setup",
     "sender", "requireptr"),
    (None, 550, "5.7.1 Our system has detected that this message is likely suspicious due to the "
     "very low reputation of the sending IP address.", "sender", "badreputation"),
    (None, 550, "5.7.1 This message is not RFC 5322 compliant. There are multiple From headers.",
     "sender", "notcompliantrfc"),
    (None, 554, "5.7.1 Message rejected: Email address is not verified. Mailer program exited "
     "with status 1. Command output: procmail: Unable to treat", "sender", "mailererror"),
    (None, 550, "Sender verify failed", "sender", "rejected"),
    (None, 421, "4.7.0 Too many connections from your host.", "sender", "toomanyconn"),
    (None, 552, "5.7.0 This message was blocked because it has a potentially executable "
     "attachment", "sender", "virusdetected"),
    (None, 554, "5.6.0 This message contains invalid MIME headers.", "sender", "contenterror"),
    (None, 550, "5.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]",
     "sender", "requireptr"),
    (None, 550, "5.7.1 Email rejected per DMARC policy for example.com", "sender",
     "authfailure"),
    # --- nothing to act on ---------------------------------------------------------------------
    ("2.0.0", None, "smtp; 250 2.0.0 OK 1700000000 a1-20020a05", "ignored", "delivered"),
    ("2.0.0", None, "relayed to non-DSN-aware mailer", "ignored", "delivered"),
    # --- no evidence, or a permanent failure of no known kind ---------------------------------
    (None, None, "", "soft", "undefined"),
    (None, None, "something went wrong", "soft", "onhold"),
    ("5.0.0", None, "", "soft", "undefined"),
    (None, 550, "Requested action not taken", "soft", "onhold"),
    (None, 554, "Transaction failed", "soft", "onhold"),
]
# fmt: on


@pytest.mark.parametrize(("status", "code", "diagnostic", "kind", "reason"), CASES)
def test_a_reply_is_classified_by_its_reason(
    status: str | None, code: int | None, diagnostic: str, kind: str, reason: str
) -> None:
    result = classify(status, diagnostic, code)
    assert (result.kind, result.reason) == (kind, reason)


def test_the_table_has_at_least_forty_rows() -> None:
    assert len(CASES) >= 40


def test_every_reason_maps_to_a_known_kind() -> None:
    assert set(REASON_KINDS.values()) <= set(KINDS)
    assert "undefined" in REASONS


def test_the_code_is_read_from_the_reply_when_no_code_is_given() -> None:
    assert classify(None, "550 5.1.1 <x@example.com>... User unknown").kind == "hard"
    assert classify(None, "450 4.1.1 <x@example.com>... User unknown").kind == "soft"


def test_an_ip_address_is_not_taken_for_a_status_code() -> None:
    result = classify(None, "connection from 5.1.1.7 closed")
    assert result == classify(None, "connection closed")


def test_a_huge_diagnostic_is_classified_quickly() -> None:
    assert classify(None, "x" * 10_000_000 + " user unknown", 550).reason == "onhold"


@pytest.mark.parametrize(
    ("status", "diagnostic", "reason"),
    [
        ("4.4.1", "", "expired"),  # a delay that says nothing more is on its way to expiring
        ("4.4.7", "", "expired"),
        ("4.2.2", "smtp; 452 4.2.2 Mailbox full", "mailboxfull"),  # a delay keeps its reason
        ("4.0.0", "no MX or A for domain", "networkerror"),
    ],
)
def test_a_delay_notice_keeps_its_reason_and_is_never_hard(
    status: str, diagnostic: str, reason: str
) -> None:
    result = classify(status, diagnostic, delayed=True)
    assert (result.kind, result.reason) == ("soft", reason)


def test_a_delayed_unknown_user_is_soft_not_hard() -> None:
    assert classify("4.1.1", "450 4.1.1 User unknown", delayed=True).kind == "soft"


@pytest.mark.parametrize(
    ("reason", "status", "kind"),
    [
        ("userunknown", "5.1.1", "hard"),
        ("hostunknown", "5.1.2", "hard"),
        ("hasmoved", "5.1.6", "hard"),
        ("notaccept", "5.3.2", "hard"),
        ("notaccept", "4.3.2", "soft"),
        ("feedback", None, "complaint"),
        ("vacation", None, "ignored"),
        ("delivered", "2.0.0", "ignored"),
        ("blocked", "5.7.1", "sender"),
        ("ratelimited", "4.7.0", "sender"),
        ("mailboxfull", "5.2.2", "soft"),
        ("suspend", "5.2.1", "soft"),
        ("expired", "4.4.7", "soft"),
        ("undefined", None, "soft"),
    ],
)
def test_the_kind_follows_from_the_reason_by_one_table(
    reason: str, status: str | None, kind: str
) -> None:
    assert kind_of(reason, status) == kind


def test_every_reason_in_the_table_is_one_of_sisimai() -> None:
    sisimai = set(
        "userunknown hostunknown hasmoved mailboxfull mesgtoobig exceedlimit filtered blocked "
        "spamdetected policyviolation rejected suspend expired networkerror systemerror "
        "systemfull norelaying notaccept securityerror contenterror syntaxerror toomanyconn "
        "ratelimited requireptr notcompliantrfc authfailure virusdetected onhold undefined "
        "mailererror feedback vacation delivered badreputation failedstarttls".split()
    )
    assert set(REASONS) == sisimai


@pytest.mark.parametrize(
    ("status", "diagnostic", "delayed", "kind", "reason"),
    [
        # No code given: the reply's own code counts, class and all.
        (None, "421 closing connection", False, "sender", "toomanyconn"),
        (None, "450 user unknown", False, "soft", "userunknown"),  # a 4xx is worth a retry
        (None, "556 domain does not accept mail", False, "hard", "notaccept"),
        # A delay notice: its words count; a dead-address reason is never hard while waiting.
        (None, "user unknown", True, "soft", "userunknown"),
        (None, "client host blocked using Spamhaus", True, "sender", "blocked"),
        # Refused after the message was sent: content filtering, not a dead address.
        ("5.1.1", "550 5.1.1 user unknown (in reply to end of DATA command)", False, "soft",
         "filtered"),
        ("5.2.2", "550 5.2.2 mailbox full after end of DATA", False, "soft", "mailboxfull"),
    ],
)  # fmt: skip
def test_codes_words_and_delays_together(
    status: str | None, diagnostic: str, delayed: bool, kind: str, reason: str
) -> None:
    found = classify(status, diagnostic, delayed=delayed)
    assert (found.kind, found.reason) == (kind, reason)


@pytest.mark.parametrize(
    ("text", "status", "reply"),
    [
        ("smtp; 550 5.1.1 <x@example.com>: user unknown", "5.1.1", 550),
        ("421 4.7.0 try again later", "4.7.0", 421),
        ("no code here", None, None),
        ("", None, None),
        ("host 10.1.1.5 said: hello", None, None),  # an address is no status code
        ("x" * 20_000 + " 550 5.1.1 late", None, None),  # past what is read
    ],
)
def test_status_and_reply_codes_are_found_in_text(
    text: str, status: str | None, reply: int | None
) -> None:
    assert find_status_code(text) == status
    assert find_reply_code(text) == reply


def test_no_text_has_no_status_code() -> None:
    assert find_status_code(None) is None


@pytest.mark.parametrize(
    ("given", "status", "diagnostic", "refined"),
    [
        (("hard", "userunknown"), None, "", ("hard", "userunknown")),  # nothing to read
        (("soft", "onhold"), None, "blah", ("soft", "onhold")),  # the text names nothing
        (("soft", "onhold"), None, "550 5.1.1 user unknown", ("hard", "userunknown")),
        (("soft", "undefined"), None, "smtp; 552 sorry", ("soft", "mailboxfull")),  # its code
        (("soft", "undefined"), "5.2.2", "x", ("soft", "mailboxfull")),
        # A precise reason keeps its kind, unless the text blames us.
        (("hard", "userunknown"), None, "mailbox full", ("hard", "userunknown")),
        (
            ("hard", "userunknown"),
            None,
            "client host blocked using spamhaus",
            ("sender", "blocked"),
        ),
        (("soft", "mailboxfull"), None, "421 too many connections", ("sender", "toomanyconn")),
        (("soft", "mailboxfull"), None, "452 4.2.2 over quota", ("soft", "mailboxfull")),
    ],
)
def test_a_providers_class_is_refined_by_its_text(
    given: tuple[str, str], status: str | None, diagnostic: str, refined: tuple[str, str]
) -> None:
    assert refine(given[0], given[1], status, diagnostic) == refined  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reason", "status", "kind"),
    [
        ("notaccept", None, "hard"),  # no status: taken as permanent
        ("notaccept", "5.1.10", "hard"),
        ("notaccept", "4.0.0", "soft"),
        ("not-a-reason", None, "soft"),  # unknown: worth another try, never a suppression
        ("userunknown", "4.0.0", "hard"),  # the table decides; the class only for notaccept
    ],
)
def test_kind_of_a_reason(reason: str, status: str | None, kind: str) -> None:
    assert kind_of(reason, status) == kind
