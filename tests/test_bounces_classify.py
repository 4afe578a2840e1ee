"""The classifier reads the status code, the reply code and the server's words together."""

from __future__ import annotations

import pytest

from worker.bounces import KINDS
from worker.bounces.classify import REASON_KINDS, REASONS, classify

# (status, smtp_code, diagnostic) → (kind, reason). Replies are quoted as the servers send them.
# fmt: off
CASES: list[tuple[str | None, int | None, str, str, str]] = [
    # --- the address is dead ---------------------------------------------------------------
    ("5.1.1", None, "smtp; 550 5.1.1 <x@example.com>: Recipient address rejected: User unknown "
     "in virtual mailbox table", "hard", "user_unknown"),
    (None, 550, "5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual "
     "mailbox table", "hard", "user_unknown"),
    (None, 550, "5.1.1 The email account that you tried to reach does not exist. Please try "
     "double-checking the recipient's email address for typos or unnecessary spaces. "
     "https://support.google.com/mail/?p=NoSuchUser", "hard", "user_unknown"),
    (None, 550, "5.2.1 The email account that you tried to reach is disabled.",
     "hard", "user_unknown"),
    (None, 550, "5.5.0 Requested action not taken: mailbox unavailable (S2017062302) "
     "[AM4EUR05FT012.eop-eur05.prod.protection.outlook.com]", "hard", "user_unknown"),
    ("5.1.10", None, "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by "
     "SMTP address lookup", "hard", "user_unknown"),
    (None, 550, "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
     "[DB5EUR03FT005.eop-EUR03.prod.protection.outlook.com]", "hard", "user_unknown"),
    (None, 554, "delivery error: dd This user doesn't have a yahoo.com account "
     "(x@yahoo.com) [0] - mta1047.mail.ne1.yahoo.com", "hard", "user_unknown"),
    (None, 554, "delivery error: dd Sorry your message to x@yahoo.com cannot be delivered. "
     "This mailbox is disabled (554.30). - mta1168.mail.bf1.yahoo.com", "hard", "user_unknown"),
    (None, None, "Sorry, no mailbox here by that name. (#5.1.1)", "hard", "user_unknown"),
    ("5.0.0", None, "550 No such user (x@example.com)", "hard", "user_unknown"),
    (None, 550, "5.7.1 Unknown recipient", "hard", "user_unknown"),
    (None, 550, "Unrouteable address", "hard", "host_unknown"),
    ("5.4.4", None, "X-Postfix; Host or domain name not found. Name service error for "
     "name=example.net type=A: Host not found", "hard", "host_unknown"),
    (None, None, "Sorry, I couldn't find any host named example.net. (#5.1.2)",
     "hard", "host_unknown"),
    ("5.1.2", None, "", "hard", "host_unknown"),
    ("5.1.6", None, "smtp; 551 5.1.6 Recipient no longer on server: x@example.com",
     "hard", "moved"),
    (None, 551, "User not local; please try <y@example.org>", "hard", "moved"),
    # --- try again later ---------------------------------------------------------------------
    (None, 452, "4.2.2 The email account that you tried to reach is over quota. Please direct "
     "the recipient to https://support.google.com/mail/?p=OverQuotaTemp", "soft", "mailbox_full"),
    (None, 550, "Mailbox full", "soft", "mailbox_full"),
    (None, 552, "5.2.2 Quota exceeded (mailbox for user is full)", "soft", "mailbox_full"),
    ("5.2.2", None, "smtp; 552 5.2.2 <x@example.com>: Recipient address rejected: Mailbox full",
     "soft", "mailbox_full"),
    (None, 522, "The recipient has exceeded their mailbox limit", "soft", "mailbox_full"),
    (None, 552, "5.3.4 Message size exceeds fixed maximum message size", "soft",
     "message_too_big"),
    ("4.4.1", None, "X-Postfix; connect to mx.example.com[192.0.2.10]:25: Connection timed out",
     "soft", "network"),
    ("4.4.3", None, "X-Postfix; Host or domain name not found. Name service error for "
     "name=example.com type=MX: Host not found, try again", "soft", "network"),
    (None, 450, "4.2.0 <x@example.com>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/example.com.html", "soft", "delayed"),
    (None, 451, "Temporary local problem - please try later", "soft", "delayed"),
    ("4.4.7", None, "retry timeout exceeded", "soft", "expired"),
    ("5.4.7", None, "smtp; 550 4.4.7 QUEUE.Expired; message expired", "soft", "expired"),
    (None, 450, "4.1.1 <x@example.com>: Recipient address rejected: User unknown in local "
     "recipient table", "soft", "user_unknown"),
    ("4.0.0", None, "", "soft", "unknown"),
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
     "one of SPF or DKIM.", "sender", "auth_failure"),
    (None, 550, "5.7.509 Access denied, sending domain example.com does not pass DMARC "
     "verification and has a DMARC policy of reject.", "sender", "auth_failure"),
    ("5.7.23", None, "smtp; 550 5.7.23 SPF validation failed", "sender", "auth_failure"),
    (None, 550, "5.7.1 [192.0.2.1] Our system has detected that this message is likely "
     "unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been "
     "blocked.", "sender", "spam"),
    (None, 554, "5.7.1 Message rejected as spam by Content Filtering.", "sender", "spam"),
    (None, 552, "5.7.0 This message was blocked because its content presents a potential "
     "security issue.", "sender", "filtered"),
    (None, 550, "5.7.1 Virus detected: Win.Test.EICAR_HDB-1", "sender", "filtered"),
    (None, 554, "5.7.9 Message not accepted for policy reasons. See "
     "https://help.yahoo.com/kb/postmaster/SLN7253.html", "sender", "policy"),
    (None, 554, "5.7.1 <x@example.org>: Relay access denied", "sender", "policy"),
    ("5.7.1", None, "", "sender", "policy"),
    (None, 550, "administrative prohibition", "sender", "policy"),
    (None, 421, "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
     "volume or user complaints", "sender", "rate_limited"),
    (None, 421, "4.7.28 Gmail has detected an unusual rate of unsolicited mail originating "
     "from your IP address.", "sender", "rate_limited"),
    (None, 451, "4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)",
     "sender", "rate_limited"),
    (None, 553, "5.1.8 <bounces+d42@news.example.com>: Sender address rejected: Domain not "
     "found", "sender", "rejected_sender"),
    (None, 535, "5.7.8 Username and Password not accepted.", "sender", "auth_failure"),
    # --- nothing to act on ---------------------------------------------------------------------
    ("2.0.0", None, "smtp; 250 2.0.0 OK 1700000000 a1-20020a05", "ignored", "delivered"),
    ("2.0.0", None, "relayed to non-DSN-aware mailer", "ignored", "relayed"),
    (None, None, "Out of office: back on Monday", "ignored", "auto_reply"),
    # --- no evidence, or a permanent failure of no known kind ---------------------------------
    (None, None, "", "soft", "unknown"),
    (None, None, "something went wrong", "soft", "unknown"),
    ("5.0.0", None, "", "hard", "unknown"),
    (None, 550, "Requested action not taken", "hard", "unknown"),
    (None, 554, "Transaction failed", "hard", "unknown"),
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
    assert "unknown" in REASONS


def test_the_code_is_read_from_the_reply_when_no_code_is_given() -> None:
    assert classify(None, "550 5.1.1 <x@example.com>... User unknown").kind == "hard"
    assert classify(None, "450 4.1.1 <x@example.com>... User unknown").kind == "soft"


def test_an_ip_address_is_not_taken_for_a_status_code() -> None:
    result = classify(None, "connection from 5.1.1.7 closed")
    assert result == classify(None, "connection closed")


def test_a_huge_diagnostic_is_classified_quickly() -> None:
    assert classify(None, "x" * 10_000_000 + " user unknown", 550).reason == "unknown"
