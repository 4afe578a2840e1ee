"""Bounce mail from real MTAs parses into findings; garbage is refused with a reason, quickly."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from worker.bounces import KINDS
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
