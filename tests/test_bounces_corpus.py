"""Real bounce mail from other projects: our findings agree with the reviewed labels.

The table is ``tests/data/bounces/corpus/expected.tsv``. A row whose ``ours`` column is set is a
known disagreement (its ``note`` says why it stands); every other row must agree exactly, so the
test fails on a new disagreement and on a known one that went away.
"""

from __future__ import annotations

import pytest

from tests.bounce_corpus import (
    CORPUS,
    NO_FINDING,
    SUPPRESSING,
    Outcome,
    Row,
    files,
    findings_of,
    load_rows,
    outcomes,
)
from worker.bounces.dsn import parse_bounce
from worker.bounces.reasons import REASONS, kind_of

ROWS = load_rows()
OUTCOMES = list(outcomes(ROWS))
ACTIONS = {"failed", "delayed", "delivered", "relayed", "complaint", "autoreply", "none"}


def _row_id(outcome: Outcome) -> str:
    return f"{outcome.row.file}:{outcome.row.recipient or '-'}"


def test_the_corpus_has_at_least_300_messages_and_every_one_is_labelled() -> None:
    assert len(files()) >= 300
    assert sorted({row.file for row in ROWS}) == files()


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.file}:{r.recipient or '-'}")
def test_every_label_is_a_sisimai_reason_with_the_kind_its_table_gives(row: Row) -> None:
    assert row.action in ACTIONS
    if row.reason == NO_FINDING:
        assert (row.kind, row.action) == (NO_FINDING, "none")
        return
    assert row.reason in REASONS
    expected_kind = kind_of(row.reason, row.status or None)
    if row.action == "delayed" and expected_kind == "hard":
        expected_kind = "soft"
    assert row.kind == expected_kind
    if row.ours or row.note.startswith("sisimai 4.25: filtered"):
        assert row.note  # every departure from sisimai or from us is explained


@pytest.mark.parametrize("outcome", OUTCOMES, ids=_row_id)
def test_each_recipient_gets_its_labelled_reason_kind_and_action(outcome: Outcome) -> None:
    if outcome.row.ours:
        # A known disagreement: we still say what the table says we say.
        assert outcome.ours == outcome.row.ours, outcome.row.note
        return
    assert outcome.row.reason != NO_FINDING or outcome.reason == NO_FINDING, (
        f"{outcome.row.file}: we report {outcome.row.recipient!r}, which the table does not name"
    )
    assert (outcome.reason, outcome.kind) == (outcome.row.reason, outcome.row.kind)
    assert outcome.action == outcome.row.action


def test_we_agree_with_the_labels_on_at_least_97_percent_of_rows() -> None:
    agree = sum(o.agrees for o in OUTCOMES)
    assert agree / len(OUTCOMES) >= 0.97, f"{agree}/{len(OUTCOMES)}"


def test_we_agree_on_whether_to_suppress_at_once_for_at_least_99_percent_of_rows() -> None:
    agree = sum(o.suppress_agrees for o in OUTCOMES)
    assert agree / len(OUTCOMES) >= 0.99, f"{agree}/{len(OUTCOMES)}"


# --- the defects this corpus was built to catch -------------------------------------------------


def test_a_yahoo_notice_naming_six_disabled_accounts_gives_six_findings() -> None:
    found = findings_of("flufl/yahoo_08.eml")
    assert sorted(f.recipient or "" for f in found) == [f"user{c}@example.com" for c in "abcdef"]
    assert {(f.reason, f.kind, f.action) for f in found} == {("suspend", "soft", "failed")}


def test_a_dsn_naming_four_recipients_gives_four_findings() -> None:
    found = findings_of("bounceparser/iis-multiple-bounce.eml")
    assert sorted(f.recipient or "" for f in found) == [
        f"bounced{n}@example.net" for n in range(1, 5)
    ]


def test_disabled_or_discontinued_is_the_same_verdict_in_every_sample() -> None:
    verdicts = {
        (f.reason, f.kind)
        for file in files()
        for f in findings_of(file)
        if "disabled or discontinued" in f.diagnostic
    }
    assert verdicts == {("suspend", "soft")}


def test_a_final_failure_with_a_transient_status_is_an_expiry() -> None:
    (finding,) = findings_of("bounceparser/long-smtp.eml")
    assert (finding.status, finding.action) == ("4.4.7", "failed")
    assert (finding.reason, finding.kind) == ("expired", "soft")


def test_a_delay_notice_is_marked_as_a_delay_and_keeps_its_reason() -> None:
    (finding,) = findings_of("flanker/no-mx.eml")
    assert finding.delayed
    assert (finding.reason, finding.kind) == ("networkerror", "soft")


def test_a_delay_then_the_expiry_of_the_same_message_read_as_delay_then_expired() -> None:
    delay = (CORPUS / "flanker/no-mx.eml").read_bytes()
    # The same MTA's final word on that message, days later: it gave up.
    expiry = delay.replace(b"Action: delayed", b"Action: failed").replace(
        b"Status: 4.4.4", b"Status: 4.4.7"
    )
    (first,) = parse_bounce(delay).findings
    (last,) = parse_bounce(expiry).findings
    assert (first.recipient, first.action, first.reason) == (
        "user@example.com",
        "delayed",
        "networkerror",
    )
    assert (last.recipient, last.action, last.reason, last.kind) == (
        "user@example.com",
        "failed",
        "expired",
        "soft",
    )


def test_a_complaint_always_suppresses_and_a_sender_problem_never_does() -> None:
    for outcome in OUTCOMES:
        if outcome.reason == "feedback" and outcome.kind != "ignored":
            assert outcome.kind in SUPPRESSING
        if outcome.kind == "sender":
            assert outcome.row.kind not in SUPPRESSING, _row_id(outcome)
