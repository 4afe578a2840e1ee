"""Bounce mail from real MTAs parses into findings; garbage is refused with a reason, quickly."""

from __future__ import annotations

import base64
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from worker.bounces import KINDS, BounceFinding
from worker.bounces.dsn import parse_bounce
from worker.errors import BounceParseError

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "bounces"
BAD = DATA / "bounces_bad"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text())

OPTIONAL_FIELDS = ("original_message_id", "original_delivery_token", "verp_addresses", "message_id")


def _findings(path: Path) -> list[dict[str, Any]]:
    parsed = parse_bounce(path.read_bytes())
    return [{"recipient": f.recipient, "kind": f.kind, "reason": f.reason} for f in parsed.findings]


def test_the_corpus_has_at_least_25_messages_and_each_has_an_expectation() -> None:
    files = sorted(p.name for p in CORPUS.glob("*.eml"))
    assert len(files) >= 25
    assert files == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bounce_in_the_corpus_gives_the_expected_findings(name: str) -> None:
    expected = EXPECTED[name]
    assert _findings(CORPUS / name) == expected["findings"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bounce_in_the_corpus_names_the_original_message(name: str) -> None:
    expected = EXPECTED[name]
    parsed = parse_bounce((CORPUS / name).read_bytes())
    for field in OPTIONAL_FIELDS:
        if field in expected:
            value = getattr(parsed, field)
            assert (list(value) if isinstance(value, tuple) else value) == expected[field], field


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_finding_has_a_known_kind_and_a_diagnostic_string(name: str) -> None:
    for finding in parse_bounce((CORPUS / name).read_bytes()).findings:
        assert finding.kind in KINDS
        assert isinstance(finding.diagnostic, str)


def test_postfix_user_unknown_is_hard_with_status_and_diagnostic() -> None:
    (finding,) = parse_bounce((CORPUS / "postfix_user_unknown.eml").read_bytes()).findings
    assert (finding.kind, finding.status) == ("hard", "5.1.1")
    assert "User unknown in virtual mailbox table" in finding.diagnostic


def test_a_dsn_with_two_recipients_gives_one_hard_and_one_soft() -> None:
    parsed = parse_bounce((CORPUS / "dsn_two_recipients_hard_and_soft.eml").read_bytes())
    assert [f.kind for f in parsed.findings] == ["hard", "soft"]


def test_an_exim_bounce_reads_the_reason_next_to_the_address() -> None:
    (finding,) = parse_bounce((CORPUS / "exim_user_unknown.eml").read_bytes()).findings
    assert finding.status == "5.1.1"
    assert "User unknown" in finding.diagnostic


def test_a_complaint_with_a_redacted_recipient_still_names_our_delivery() -> None:
    parsed = parse_bounce((CORPUS / "arf_yahoo_complaint.eml").read_bytes())
    assert parsed.findings[0].recipient is None
    assert parsed.original_delivery_token == "d42.5f3a9c1e2b"


def test_an_out_of_office_reply_is_ignored_never_counted() -> None:
    (finding,) = parse_bounce((CORPUS / "auto_reply_out_of_office.eml").read_bytes()).findings
    assert (finding.kind, finding.reason) == ("ignored", "vacation")


@pytest.mark.parametrize("name", sorted(p.name for p in BAD.glob("*.eml")))
def test_garbage_is_refused_with_a_reason(name: str) -> None:
    with pytest.raises(BounceParseError) as caught:
        parse_bounce((BAD / name).read_bytes())
    assert str(caught.value).strip()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("empty.eml", "empty"),
        ("binary_junk.eml", "not an RFC 5322 message"),
        ("plain_message.eml", "not a bounce"),
        ("truncated_mime.eml", "truncated"),
        ("wrong_charset.eml", "charset"),
    ],
)
def test_the_refusal_says_what_is_wrong(name: str, words: str) -> None:
    with pytest.raises(BounceParseError, match=words):
        parse_bounce((BAD / name).read_bytes())


def _ten_megabytes_of(kind: str) -> bytes:
    rng = random.Random(42)
    size = 10 * 1024 * 1024
    if kind == "random":
        return rng.randbytes(size)
    header = (
        b"From: MAILER-DAEMON@mx.example.com\nTo: bounces+d42.5f3a9c1e2b@news.example.com\n"
        b"Subject: Undelivered Mail Returned to Sender\n\n"
    )
    if kind == "headers then random":
        return header + rng.randbytes(size)
    if kind == "one long line":
        return header + b"a" * size
    # A genuine bounce that returned a huge original: the report at the top must still be read.
    bounce = (CORPUS / "postfix_user_unknown.eml").read_bytes()
    head, tail = bounce.rsplit(b"\n--4Z1xYq0d3Kz9sQ", 1)
    return head + b"\n" + b"A" * 76 * (size // 77) + b"\n--4Z1xYq0d3Kz9sQ" + tail


@pytest.mark.parametrize("kind", ["random", "headers then random", "one long line"])
def test_ten_megabytes_of_junk_is_refused_without_hanging(kind: str) -> None:
    raw = _ten_megabytes_of(kind)
    started = time.monotonic()
    with pytest.raises(BounceParseError):
        parse_bounce(raw)
    assert time.monotonic() - started < 5


def test_a_ten_megabyte_bounce_still_parses_quickly() -> None:
    raw = _ten_megabytes_of("bounce")
    started = time.monotonic()
    parsed = parse_bounce(raw)
    assert time.monotonic() - started < 5
    assert [(f.recipient, f.kind) for f in parsed.findings] == [("alice@example.com", "hard")]


# --- shapes and fields the corpus does not reach -------------------------------------------------
# Written for these tests in the shapes MTAs send; each row names the rule it pins.

HUMAN = (
    "This is the mail system at host mx.example.net.\n\n"
    "I'm sorry to have to inform you that your message could not\n"
    "be delivered to one or more recipients.\n"
)
RETURNED = (
    "From: news@news.example.com\nTo: ann@example.com\n"
    "Message-ID: <d1.x@news.example.com>\nX-Newsletter-Delivery: d1.x\nSubject: This week\n"
)


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def _report(blocks: str, human: str = HUMAN, per_message: str = "", boundary: str = "B") -> str:
    """A multipart/report DSN (RFC 3464) as Postfix lays it out, with the recipient ``blocks``."""
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        "To: bounces+d1.x@news.example.com\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Message-ID: <n1@mx.example.net>\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n{human}\n"
        f"--{boundary}\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mx.example.net\n{per_message}\n{blocks}\n"
        f"--{boundary}\nContent-Type: text/rfc822-headers\n\n{RETURNED}\n"
        f"--{boundary}--\n"
    )


def _loose(body: str) -> str:
    """A gateway's DSN sent as one text/plain body: the human text, then the DSN fields."""
    return (
        "From: postmaster@gw.example.org\n"
        "To: bounces+d2.y@news.example.com\n"
        "Subject: Delivery Status Notification (Failure)\n"
        "Message-ID: <n2@gw.example.org>\n"
        "Content-Type: text/plain; charset=us-ascii\n\n"
        "This is an automatically generated Delivery Status Notification.\n\n"
        f"{body}\nReporting-MTA: dns; gw.example.org\n"
        "Arrival-Date: Mon, 30 Nov 2026 09:12:01 +0000\n\n"
    )


def _forwarded(*attachments: str) -> str:
    """A helpdesk forwarding what reached the shared inbox, each message attached whole."""
    parts = "".join(f"--F\nContent-Type: message/rfc822\n\n{a}\n" for a in attachments)
    return (
        "From: Helpdesk <help@news.example.com>\n"
        "To: bounces@news.example.com\n"
        "Subject: Fwd: Undelivered Mail Returned to Sender\n"
        "Message-ID: <f1@news.example.com>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="F"\n\n'
        "--F\nContent-Type: text/plain\n\nForwarding this from the shared inbox.\n\n"
        f"{parts}--F--\n"
    )


BOB_UNKNOWN = (
    "Final-Recipient: rfc822; bob@example.org\nAction: failed\nStatus: 5.1.1\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>... User unknown\n"
)
BOB = BounceFinding(
    "bob@example.org", "hard", "userunknown", "5.1.1", "550 5.1.1 <bob@example.org>... User unknown"
)
ANN = "Final-Recipient: rfc822; ann@example.com\n"
EVE = "Final-Recipient: rfc822; eve@example.org"
READER_NOTE = (
    "From: Ann <ann@example.com>\nTo: help@news.example.com\nSubject: unsubscribe me\n\nPlease.\n"
)

SHAPES: list[tuple[str, str, list[BounceFinding]]] = [
    (
        "loose: a text/plain body with DSN fields, a repeated block counted once",
        _loose(
            "Delivery to the following recipients failed.\n\n       bob@example.org\n\n"
            f"\n{BOB_UNKNOWN}\nFinal-Recipient: rfc822; cy@example.org\nAction: delayed\n"
            "Status: 4.2.2\nDiagnostic-Code: smtp; 452 4.2.2 Mailbox full\n\n"
            f"{BOB_UNKNOWN}"
        ),
        [
            BOB,
            BounceFinding(
                "cy@example.org",
                "soft",
                "mailboxfull",
                "4.2.2",
                "452 4.2.2 Mailbox full",
                "delayed",
            ),
        ],
    ),
    (
        "loose: no action and no code in a notice that still retries is a delay",
        _loose(
            "Your message has not yet been delivered. Delivery attempts will continue.\n\n"
            "Final-Recipient: rfc822; eve@example.org\n"
        ),
        # The human text is the whole body here: the text beside the address is its block.
        [BounceFinding("eve@example.org", "soft", "expired", None, EVE, "delayed")],
    ),
    (
        "loose: no Action, the status class says failed",
        _loose("Delivery has failed.\n\nFinal-Recipient: rfc822; eve@example.org\nStatus: 5.1.1\n"),
        [BounceFinding("eve@example.org", "hard", "userunknown", "5.1.1", f"{EVE} Status: 5.1.1")],
    ),
    (
        "loose: no action and no code in a final notice is a failure",
        _loose("Delivery has failed.\n\nFinal-Recipient: rfc822; eve@example.org\n"),
        [BounceFinding("eve@example.org", "soft", "undefined", None, EVE, "failed")],
    ),
    (
        "forwarded: the report inside a forwarded message",
        _forwarded(_report(BOB_UNKNOWN)),
        [BOB],
    ),
    (
        "forwarded: the report is the second attachment, after a reader's note",
        _forwarded(READER_NOTE, _report(BOB_UNKNOWN)),
        [BOB],
    ),
    (
        "forwarded: a first report that names nobody, then one that does",
        _forwarded(_report(""), _report(BOB_UNKNOWN)),
        [BOB],
    ),
    (
        "forwarded: a report whose text is in a charset nobody knows",
        _forwarded(_report(BOB_UNKNOWN).replace("charset=us-ascii", "charset=x-no-such-charset")),
        [BOB],
    ),
    (
        "forwarded: a report whose delivery-status part is base64",
        _forwarded(
            _report(BOB_UNKNOWN).replace(
                f"message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n{BOB_UNKNOWN}",
                "message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
                + base64.encodebytes(
                    f"Reporting-MTA: dns; mx.example.net\n\n{BOB_UNKNOWN}".encode()
                ).decode(),
            )
        ),
        [BOB],
    ),
    (
        "a mail system's notice in prose, no format any detector knows",
        "From: MAILER-DAEMON@mx.example.net\nTo: bounces+d1.x@news.example.com\n"
        "Subject: Returned mail\n\n"
        "I could not deliver your message to dora@example.net.\nThe mailbox is full.\n",
        [
            BounceFinding(
                "dora@example.net",
                "soft",
                "mailboxfull",
                None,
                "I could not deliver your message to dora@example.net. The mailbox is full.",
            )
        ],
    ),
    (
        "no Action: a 2.x.x status is a delivery",
        _report(ANN + "Status: 2.0.0\n"),
        [BounceFinding("ann@example.com", "ignored", "delivered", "2.0.0", "", "delivered")],
    ),
    (
        "no Action: a 4.x.x status is a delay, though the text names no retry",
        _report(ANN + "Status: 4.2.2\nDiagnostic-Code: smtp; 452 4.2.2 Mailbox full\n"),
        [
            BounceFinding(
                "ann@example.com",
                "soft",
                "mailboxfull",
                "4.2.2",
                "452 4.2.2 Mailbox full",
                "delayed",
            )
        ],
    ),
    (
        "Action: delivered stays delivered",
        _report(ANN + "Action: delivered\nStatus: 2.0.0\n"),
        [BounceFinding("ann@example.com", "ignored", "delivered", "2.0.0", "", "delivered")],
    ),
    (
        "words nobody recognises in the diagnostic: the text beside the address decides",
        _report(
            ANN
            + "Action: failed\nStatus: 5.9.9\nDiagnostic-Code: smtp; 550 5.9.9 computer says no\n",
            human="<ann@example.com>: mailbox full\n",
        ),
        [
            BounceFinding(
                "ann@example.com", "soft", "mailboxfull", "5.9.9", "550 5.9.9 computer says no"
            )
        ],
    ),
    (
        "a delay notice saying nothing more takes its reason from the text beside the address",
        _report(
            ANN + "Action: delayed\nStatus: 4.0.0\n", human="<ann@example.com>: mailbox full\n"
        ),
        [
            BounceFinding(
                "ann@example.com",
                "soft",
                "mailboxfull",
                "4.0.0",
                "<ann@example.com>: mailbox full",
                "delayed",
            )
        ],
    ),
    (
        "Status x.0.0: the diagnostic's code of the same class is the real one",
        _report(
            ANN + "Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n"
        ),
        [
            BounceFinding(
                "ann@example.com", "hard", "userunknown", "5.1.1", "550 5.1.1 no such user"
            )
        ],
    ),
    (
        "Status x.0.0: a diagnostic code of another class does not replace it",
        _report(
            ANN + "Action: delayed\nStatus: 4.0.0\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n"
        ),
        [
            BounceFinding(
                "ann@example.com",
                "soft",
                "userunknown",
                "4.0.0",
                "550 5.1.1 no such user",
                "delayed",
            )
        ],
    ),
    (
        "no Status: the diagnostic's basic reply code stands in",
        _report(ANN + "Action: failed\nDiagnostic-Code: smtp; 550 no such user here\n"),
        [BounceFinding("ann@example.com", "hard", "userunknown", "550", "550 no such user here")],
    ),
    (
        "Action: Failed (capitalised) with a 4.4.7 status: retried until it gave up",
        _report(ANN + "Action: Failed\nStatus: 4.4.7\nDiagnostic-Code: smtp; 421 timed out\n"),
        [BounceFinding("ann@example.com", "soft", "expired", "4.4.7", "421 timed out", "failed")],
    ),
    (
        "Action: expanded (to a list) is reported as relayed, never a failure",
        _report(ANN + "Action: expanded\nStatus: 2.0.0\n"),
        [BounceFinding("ann@example.com", "ignored", "delivered", "2.0.0", "", "relayed")],
    ),
    (
        "Action: Relayed (capitalised) to a host that sends no DSN",
        _report(ANN + "Action: Relayed\nStatus: 2.0.0\n"),
        [BounceFinding("ann@example.com", "ignored", "delivered", "2.0.0", "", "relayed")],
    ),
    (
        "no Action and no code: a warning notice is a delay",
        _report(ANN, human="This is a warning only: your message has been delayed.\n"),
        [BounceFinding("ann@example.com", "soft", "expired", None, "", "delayed")],
    ),
    (
        "an Action in the per-message block holds for every recipient (Boxbe)",
        _report(ANN + "Status: 4.4.1\n", per_message="Action: failed\n"),
        [BounceFinding("ann@example.com", "soft", "expired", "4.4.1", "", "failed")],
    ),
    (
        "a status no table knows: the text beside the address gives the reason",
        _report(
            ANN + "Action: failed\nStatus: 5.9.9\n",
            human="<ann@example.com>: the mailbox is full\n",
        ),
        [
            BounceFinding(
                "ann@example.com",
                "soft",
                "mailboxfull",
                "5.9.9",
                "<ann@example.com>: the mailbox is full",
            )
        ],
    ),
    (
        "words after the status code are evidence and shown",
        _report(ANN + "Action: failed\nStatus: 5.0.0 (permanent failure)\n"),
        [BounceFinding("ann@example.com", "soft", "onhold", "5.0.0", "permanent failure")],
    ),
    (
        "the diagnostic is shown before the status words",
        _report(
            ANN + "Action: failed\nStatus: 5.2.0 (mailbox problem)\n"
            "Diagnostic-Code: X-Postfix; mailbox quota exceeded\n"
        ),
        [
            BounceFinding(
                "ann@example.com", "soft", "mailboxfull", "5.2.0", "mailbox quota exceeded"
            )
        ],
    ),
    (
        "a final failure with a transient status keeps a reason that is not giving up",
        _report(ANN + "Action: failed\nStatus: 4.2.2\nDiagnostic-Code: smtp; 452 4.2.2 full\n"),
        [BounceFinding("ann@example.com", "soft", "mailboxfull", "4.2.2", "452 4.2.2 full")],
    ),
    (
        "a final failure after retrying an unknown host is expired",
        _report(ANN + "Action: failed\nStatus: 4.1.2\n"),
        [BounceFinding("ann@example.com", "soft", "expired", "4.1.2", "")],
    ),
    (
        "an unknown status and nothing said about the address is undefined",
        _report(ANN + "Action: failed\nStatus: 5.9.9\n"),
        [BounceFinding("ann@example.com", "soft", "undefined", "5.9.9", "")],
    ),
    (
        "a bare 5.0.0: the text beside the address gives the reason",
        _report(ANN + "Action: failed\nStatus: 5.0.0\n", human="<ann@example.com>: user unknown\n"),
        [
            BounceFinding(
                "ann@example.com", "hard", "userunknown", "5.0.0", "<ann@example.com>: user unknown"
            )
        ],
    ),
    (
        "a bare 5.0.0 and text that names no reason stays undefined",
        _report(
            ANN + "Action: failed\nStatus: 5.0.0\n", human="<ann@example.com>: could not deliver\n"
        ),
        [
            BounceFinding(
                "ann@example.com",
                "soft",
                "undefined",
                "5.0.0",
                "<ann@example.com>: could not deliver",
            )
        ],
    ),
    (
        "Original-Recipient is named before Final-Recipient",
        _report(
            "Original-Recipient: rfc822; ann@example.com\n"
            "Final-Recipient: rfc822; ann.smith@mail.example.com\nAction: failed\nStatus: 5.1.1\n"
        ),
        [BounceFinding("ann@example.com", "hard", "userunknown", "5.1.1", "")],
    ),
    (
        "X-Actual-Recipient when the standard fields are missing",
        _report("X-Actual-Recipient: rfc822; ann@example.com\nAction: failed\nStatus: 5.1.1\n"),
        [BounceFinding("ann@example.com", "hard", "userunknown", "5.1.1", "")],
    ),
    (
        "field names in capitals",
        _report(
            "FINAL-RECIPIENT: rfc822; ann@example.com\nACTION: failed\nSTATUS: 5.2.2\n"
            "DIAGNOSTIC-CODE: smtp; 552 5.2.2 over quota\n"
        ),
        [BounceFinding("ann@example.com", "soft", "mailboxfull", "5.2.2", "552 5.2.2 over quota")],
    ),
    (
        "field names in lower case",
        _report(
            "final-recipient: rfc822; ann@example.com\naction: failed\nstatus: 5.2.2\n"
            "diagnostic-code: smtp; 552 5.2.2 over quota\n"
        ),
        [BounceFinding("ann@example.com", "soft", "mailboxfull", "5.2.2", "552 5.2.2 over quota")],
    ),
]


@pytest.mark.parametrize(("raw", "expected"), [r[1:] for r in SHAPES], ids=[r[0] for r in SHAPES])
def test_each_dsn_shape_and_field_spelling_gives_its_findings(
    raw: str, expected: list[BounceFinding]
) -> None:
    assert list(parse_bounce(_crlf(raw)).findings) == expected


def test_a_forwarded_report_names_the_message_it_returned_not_itself() -> None:
    parsed = parse_bounce(_crlf(_forwarded(READER_NOTE, _report(BOB_UNKNOWN))))
    assert parsed.original_message_id == "<d1.x@news.example.com>"
    assert parsed.original_delivery_token == "d1.x"
    assert parsed.message_id == "<f1@news.example.com>"


def _complaint(original_to: str, rcpt_to: str = "") -> bytes:
    """An ARF report (RFC 5965) that leaves Original-Rcpt-To out unless given."""
    return _crlf(
        "From: feedback@fbl.example.net\n"
        "To: bounces+d1.x@news.example.com\n"
        "Subject: Abuse report\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\n\n'
        "--A\nContent-Type: text/plain\n\nA reader marked this message as spam.\n\n"
        "--A\nContent-Type: message/feedback-report\n\n"
        "Feedback-Type: abuse\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n"
        "Original-Mail-From: <bounces+d7.k@news.example.com>\n"
        f"{rcpt_to}\n"
        "--A\nContent-Type: message/rfc822\n\n"
        f"From: news@news.example.com\nTo: {original_to}\n"
        "Message-ID: <d1.x@news.example.com>\nSubject: This week\n\nHello.\n\n"
        "--A--\n"
    )


@pytest.mark.parametrize(
    ("original_to", "rcpt_to", "recipient"),
    [
        ("ann@example.com", "", "ann@example.com"),
        ("redacted@example.com", "", None),
        ("xxxxxxxx@example.com", "", None),
        ("ann@example.com", "Original-Rcpt-To: bob@example.org\n", "bob@example.org"),
    ],
)
def test_a_complaint_without_original_rcpt_to_names_the_returned_messages_reader(
    original_to: str, rcpt_to: str, recipient: str | None
) -> None:
    parsed = parse_bounce(_complaint(original_to, rcpt_to))
    (finding,) = parsed.findings
    assert (finding.recipient, finding.kind, finding.action) == (
        recipient,
        "complaint",
        "complaint",
    )
    assert finding.diagnostic == "Feedback-Type: abuse; User-Agent: ExampleFBL/1.0"
    # Where the report was sent, then the envelope sender it reports.
    assert parsed.verp_addresses == (
        "bounces+d1.x@news.example.com",
        "bounces+d7.k@news.example.com",
    )


@pytest.mark.parametrize(
    ("headers", "verp"),
    [
        ("To: bounces+d1.x@news.example.com\n", ["bounces+d1.x@news.example.com"]),
        # The first spelling of an address is kept; one name without a domain is no address.
        (
            "To: Bounces+D1.x@news.example.com\nDelivered-To: bounces+d1.x@news.example.com\n"
            "X-Original-To: postmaster\nEnvelope-To: b2@news.example.com\n",
            ["Bounces+D1.x@news.example.com", "b2@news.example.com"],
        ),
        ("To: undisclosed-recipients:;\n", []),
    ],
)
def test_the_verp_addresses_are_where_the_bounce_was_sent_each_once(
    headers: str, verp: list[str]
) -> None:
    raw = _report(BOB_UNKNOWN).replace("To: bounces+d1.x@news.example.com\n", headers, 1)
    assert list(parse_bounce(_crlf(raw)).verp_addresses) == verp


def test_a_message_that_is_no_bounce_is_refused_with_every_shape_named() -> None:
    with pytest.raises(BounceParseError) as caught:
        parse_bounce(_crlf(READER_NOTE))
    assert str(caught.value) == (
        "not a bounce: no delivery-status part, no feedback report, no recognised MTA format "
        "and no auto-reply headers"
    )


NOT_A_BOUNCE = (
    "not a bounce: no delivery-status part, no feedback report, no recognised MTA format "
    "and no auto-reply headers"
)


@pytest.mark.parametrize(
    ("name", "refusal"),
    [
        ("binary_junk.eml", "no header section: not an RFC 5322 message (binary data?)"),
        ("blank_lines.eml", "empty message"),
        ("empty.eml", "empty message"),
        ("headers_only.eml", NOT_A_BOUNCE),
        ("headers_then_binary.eml", "binary data (NUL bytes) where mail text was expected"),
        ("plain_message.eml", NOT_A_BOUNCE),
        ("text_codec_charset.eml", f"{NOT_A_BOUNCE} (unknown charset 'rot13')"),
        (
            "truncated_mime.eml",
            "truncated or malformed MIME (MultipartInvariantViolationDefect, "
            "StartBoundaryNotFoundDefect): no bounce report found",
        ),
        ("wrong_charset.eml", f"{NOT_A_BOUNCE} (unknown charset 'x-no-such-charset')"),
    ],
)
def test_each_refusal_reads_in_full(name: str, refusal: str) -> None:
    with pytest.raises(BounceParseError) as caught:
        parse_bounce((BAD / name).read_bytes())
    assert str(caught.value) == refusal


def test_a_long_message_is_read_only_as_far_as_the_report_and_says_so() -> None:
    raw = _crlf(READER_NOTE + "x" * 75 + "\n") * 8000  # 600 KB of a reader's notes
    with pytest.raises(BounceParseError) as caught:
        parse_bounce(raw)
    assert str(caught.value) == f"{NOT_A_BOUNCE} (only the first 512 KiB were read)"


def _with_original(returned: str, human: str = HUMAN, extra_headers: str = "") -> bytes:
    """A Postfix DSN for Bob with ``returned`` as its text/rfc822-headers part (none if empty)."""
    raw = _report(BOB_UNKNOWN, human=human).replace(RETURNED, returned, 1)
    if not returned:
        raw = raw.replace("--B\nContent-Type: text/rfc822-headers\n\n\n", "", 1)
    return _crlf(raw.replace("MIME-Version: 1.0\n", f"MIME-Version: 1.0\n{extra_headers}", 1))


@pytest.mark.parametrize(
    ("raw", "message_id", "token"),
    [
        (_with_original(RETURNED), "<d1.x@news.example.com>", "d1.x"),
        (
            _with_original(
                "Message-ID: (ours) <d9.q@news.example.com> \nX-Newsletter-Delivery: a b\n"
            ),
            "<d9.q@news.example.com>",
            None,  # a token is one word of printable ASCII
        ),
        (
            _with_original(
                "",
                human=f"{HUMAN}\n> Message-ID: <d5.w@news.example.com>\n"
                "> X-Newsletter-Delivery: d5.w\n",
            ),
            "<d5.w@news.example.com>",
            "d5.w",
        ),
        (
            _with_original("", extra_headers="In-Reply-To: <d6.v@news.example.com>\n"),
            "<d6.v@news.example.com>",
            None,
        ),
        (_with_original("Subject: no ids here\n"), None, None),
    ],
    ids=["attached headers", "ids to clean", "quoted in the text", "In-Reply-To", "none"],
)
def test_the_original_message_is_named_from_its_headers_else_the_quoted_text_else_in_reply_to(
    raw: bytes, message_id: str | None, token: str | None
) -> None:
    parsed = parse_bounce(raw)
    assert parsed.findings == (BOB,)
    assert (parsed.original_message_id, parsed.original_delivery_token) == (message_id, token)
    assert parsed.message_id == "<n1@mx.example.net>"


def test_a_long_diagnostic_is_cut_to_its_first_1000_characters() -> None:
    diagnostic = "550 5.1.1 user unknown " + "x" * 5000
    raw = _report(ANN + f"Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; {diagnostic}\n")
    (finding,) = parse_bounce(_crlf(raw)).findings
    assert finding.diagnostic == diagnostic[:1000]
