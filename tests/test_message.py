"""Message building: well-formed MIME, pre-encoded bodies equal to encoding every time."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from sqlmodel import select

from tests.conftest import TABLES, SmtpHandler
from tests.factories import FanOutHere, comparison, load, subscribe
from worker.bounces import ParsedBounce
from worker.bounces.intake import match_bounce
from worker.catalog.views import ComparisonView, ReviewView, ToolView
from worker.config import Settings
from worker.db import make_engine
from worker.models import Delivery, utcnow
from worker.runtime import Runtime, open_runtime
from worker.sending import control, delivery
from worker.sending.message import (
    Identity,
    QpTemplate,
    Recipient,
    _qp,
    build_message,
    message_id_for,
    prepare,
)
from worker.sending.planning import week_of
from worker.sending.render import Renderer, Spliced

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
IDENTITY = Identity(
    "Weekly AI Tool Verdicts <verdicts@news.example.com>",
    "Weekly AI Tool Verdicts <verdicts.news.example.com>",
)


def _view(i: int, title: str) -> ComparisonView:
    def tool(name: str) -> ToolView:
        return ToolView(
            name=name,
            version="1.0",
            category="Writing",
            tagline=f"{name} tagline",
            summary="s",
            pricing="Free",
            community_votes=None,
            ship_percent=75,
            reviews=(ReviewView("The Builder", "ship", "Short  quote. " * 5),),
        )

    return ComparisonView(
        id=i,
        slug=f"c{i}",
        title=title,
        category="Writing",
        url=f"https://verdicts.example.com/compare/c{i}",
        published_at=NOW,
        tool_a=tool(f"A{i}"),
        tool_b=tool(f"B{i}"),
    )


@pytest.mark.parametrize("name", ["", "Zoë Ångström", "O'Brien <b>&", "x" * 200, "trailing  "])
def test_pre_encoded_bodies_are_byte_for_byte_what_encoding_each_time_gives(name: str) -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "Café — naïve"), _view(2, "A & B")])
    values = {
        "name": name,
        "greeting_name": name or "there",
        "unsubscribe_url": "https://news.example.com/unsubscribe/" + "t" * 90,
        "preferences_url": "https://news.example.com/preferences/x",
    }
    for spliced, escape in ((mail.html, True), (mail.text, False)):
        assert QpTemplate.of(spliced).fill(values, escape) == _qp(spliced.fill(values, escape))


def test_a_slot_at_the_very_end_or_start_is_kept() -> None:
    spliced = Spliced(parts=("", "\nmiddle\n", ""), slots=("name", "name"))
    assert QpTemplate.of(spliced).fill({"name": "Zoë"}, False) == _qp("Zoë\nmiddle\nZoë")


def test_the_message_parses_as_multipart_alternative_with_both_bodies() -> None:
    mail = prepare(Renderer().render_digest("2026-W48", [_view(1, "Café — naïve")]))
    data = build_message(
        mail,
        Recipient("zoe@example.com", "Zoë", "https://n/u", "https://n/p"),
        IDENTITY,
        "<d1.2026-W48@news.example.com>",
        NOW,
        extra_headers={"X-Newsletter-Delivery": "d1.abc"},
    )
    msg = message_from_bytes(data, policy=policy.default)
    assert msg["To"].addresses[0].display_name == "Zoë"
    assert msg["Subject"] == "AI Tool Verdicts: Café — naïve"
    assert "Hi Zoë," in msg.get_body(("plain",)).get_content()
    assert "Hi Zoë," in msg.get_body(("html",)).get_content()
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))


@pytest.mark.parametrize("field", ["name", "email"])
def test_line_breaks_in_a_recipient_are_refused_not_cleaned(field: str) -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "T")])
    values = {"email": "a@example.com", "name": "A"}
    values[field] += "\r\nBcc: victim@example.com"
    with pytest.raises(ValueError, match="line break"):
        build_message(
            mail, Recipient(values["email"], values["name"], "u", "p"), IDENTITY, "<x@y>", NOW
        )


# --- the headers inbox providers read -------------------------------------------------------


def test_a_message_id_is_the_same_for_every_attempt_and_unique_across_installs() -> None:
    one = message_id_for(7, "2026-W48", "news.example.com", "secret-a", "token-1")
    assert one == message_id_for(7, "2026-W48", "news.example.com", "secret-a", "token-1")
    assert re.fullmatch(r"<d7\.2026-W48\.[0-9a-f]{16}@news\.example\.com>", one)
    others = {
        message_id_for(7, "2026-W48", "news.example.com", "secret-b", "token-1"),  # other install
        message_id_for(7, "2026-W48", "news.example.com", "secret-a", "token-2"),  # database reset
        message_id_for(8, "2026-W48", "news.example.com", "secret-a", "token-1"),
        message_id_for(7, "2026-W49", "news.example.com", "secret-a", "token-1"),
    }
    assert one not in others and len(others) == 4


@pytest.mark.parametrize(
    ("campaign", "kind", "expected"),
    [
        ("2026-W48", "digest", "2026-W48:digest:newsletter:verdicts"),
        ("A12", "alert", "A12:alert:newsletter:verdicts"),
        ("confirm", "transactional", "confirm:transactional:newsletter:verdicts"),
        ("a:b", "test", "a-b:test:newsletter:verdicts"),  # ":" separates the fields
    ],
)
def test_the_feedback_id_names_groups_of_mail_and_the_sender(
    campaign: str, kind: str, expected: str
) -> None:
    assert IDENTITY.feedback_id(campaign, kind) == expected


def _deliver_here(rt: Runtime, week: str, now: datetime) -> None:
    """Send a week without a queue: fan out, then deliver every owed row in this thread."""
    owed: list[int] = []
    control.start_send(
        rt, week, now, FanOutHere(rt, enqueue=lambda jobs: owed.extend(i for i, _ in jobs))
    )
    for delivery_id in dict.fromkeys(owed):
        delivery.deliver(rt, delivery_id)


def _one_reader_week(rt: Runtime, week: str, now: datetime) -> None:
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    subscribe(rt, ("ada@example.com", "Ada", ()))
    _deliver_here(rt, week, now)


@pytest.mark.parametrize("data_dir_kept", [False, True], ids=["fresh-data-dir", "database-reset"])
def test_two_fresh_installs_sending_the_same_week_use_different_message_ids(
    rt: Runtime,
    smtp: SmtpHandler,
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
    stack: str,
    sqlite_template: Path,
    tmp_path: Path,
    data_dir_kept: bool,
) -> None:
    now = utcnow()
    week = week_of(now, UTC)
    _one_reader_week(rt, week, now)

    second = tmp_path / "second"
    second.mkdir()
    data_dir = rt.settings.data_dir if data_dir_kept else second
    if stack == "embedded":
        shutil.copy(sqlite_template, second / "newsletter.db")
        url = f"sqlite:///{second / 'newsletter.db'}"
    else:  # the same server, emptied, ids restarting at 1: a reset database
        url = rt.settings.resolved_database_url
        rt.close()
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        engine.dispose()
    other = open_runtime(
        make_settings(data_dir=str(data_dir), database_url=url), redis_client=redis_client
    )
    try:
        _one_reader_week(other, week, now)
    finally:
        other.close()

    first, again = (r.message["Message-ID"] for r in smtp.to("ada@example.com"))
    assert first.split(".")[:2] == again.split(".")[:2] == ["<d1", week]  # same delivery id
    assert first != again


def test_an_edition_mail_carries_feedback_id_precedence_and_a_message_id_bounces_can_find(
    rt: Runtime, smtp: SmtpHandler
) -> None:
    now = utcnow()
    week = week_of(now, UTC)
    _one_reader_week(rt, week, now)
    [received] = smtp.received
    msg = received.message
    assert msg["Feedback-ID"] == f"{week}:digest:newsletter:verdicts"
    assert msg["Precedence"] == "bulk"
    assert msg["List-Id"] == "Weekly AI Tool Verdicts <verdicts.news.example.com>"

    # The delivery keeps the Message-ID it was sent with: a bounce quoting only that finds it.
    with rt.session() as session:
        [delivery] = session.exec(select(Delivery)).all()
        assert delivery.message_id == msg["Message-ID"]
        parsed = ParsedBounce(findings=(), original_message_id=msg["Message-ID"])
        match = match_bounce(session, rt.secret_key, "bounces", parsed, None)
    assert match.delivery_id == delivery.id


def test_the_headers_are_exactly_these_in_this_order() -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "T")])
    prepared = prepare(mail)
    data = build_message(
        prepared,
        Recipient("zoe@example.com", "", "https://n/u", "https://n/p"),
        IDENTITY,
        "<m1@news.example.com>",
        NOW.replace(microsecond=123),
        {"Feedback-ID": "a:b"},
        "[TEST] ",
    )
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.decode().split("\r\n") == [
        "From: Weekly AI Tool Verdicts <verdicts@news.example.com>",
        "To: zoe@example.com",
        "Subject: [TEST] AI Tool Verdicts: T",
        "Date: Fri, 27 Nov 2026 15:00:00 +0000",
        "Message-ID: <m1@news.example.com>",
        "MIME-Version: 1.0",
        "List-Id: Weekly AI Tool Verdicts <verdicts.news.example.com>",
        "List-Unsubscribe: <https://n/u>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "Precedence: bulk",
        "Auto-Submitted: auto-generated",
        "Feedback-ID: a:b",
        "Content-Type: multipart/alternative;",
        f' boundary="{prepared.boundary}"',
    ]
    assert body.startswith(f"--{prepared.boundary}\r\n".encode())
    assert body.rstrip().endswith(f"--{prepared.boundary}--".encode())
    parsed = message_from_bytes(data, policy=policy.default)
    plain = parsed.get_body(("plain",))  # type: ignore[attr-defined]
    assert plain is not None and "Hi there," in plain.get_content()  # no name: "there"


@pytest.mark.parametrize(
    ("name", "address"),
    [("Eve\nBcc: x@example.com", "e@example.com"), ("Eve\r", "e@example.com"),
     ("", "e@example.com\nBcc: x@example.com"), ("", "e@example.com\r")],
)  # fmt: skip
def test_a_line_break_in_a_name_or_address_never_reaches_the_headers(
    name: str, address: str
) -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "T")])
    with pytest.raises(ValueError):
        build_message(mail, Recipient(address, name, "u", "p"), IDENTITY, "<m@x>", NOW)


@pytest.mark.parametrize("subject_prefix", ["\n", "\r", "x\r\nBcc: y@example.com"])
def test_a_line_break_in_a_header_value_is_refused(subject_prefix: str) -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "T")])
    recipient = Recipient("e@example.com", "", "u", "p")
    with pytest.raises(ValueError, match="line break in a header value"):
        build_message(mail, recipient, IDENTITY, "<m@x>", NOW, subject_prefix=subject_prefix)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        (".hidden\n", b"=2Ehidden\r\n"),  # a leading dot would be eaten by SMTP
        ("a\n.b\n", b"a\r\n=2Eb\r\n"),
        ("..\n", b"=2E.\r\n"),
        ("café\n", b"caf=C3=A9\r\n"),
        ("x \n", b"x=20\r\n"),  # trailing space kept
    ],
)
def test_quoted_printable_escapes_what_smtp_would_change(text: str, encoded: bytes) -> None:
    assert _qp(text) == encoded


def test_a_name_is_quoted_as_utf8_and_a_bare_address_is_left_alone() -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "T")])
    named = build_message(mail, Recipient("z@example.com", "Zoë", "u", "p"), IDENTITY, "<m@x>", NOW)
    assert b"\r\nTo: =?utf-8?q?Zo=C3=AB?= <z@example.com>\r\n" in named


def test_a_message_id_is_the_delivery_the_week_and_a_keyed_mac() -> None:
    import hashlib
    import hmac

    mac = hmac.new(b"secret-a", b"message-id:7:token-2", hashlib.sha256).hexdigest()[:16]
    assert message_id_for(7, "2026-W48", "news.example.com", "secret-a", "token-2") == (
        f"<d7.2026-W48.{mac}@news.example.com>"
    )


def test_a_long_subject_is_folded_into_lines_of_at_most_76_characters() -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "Zoë " * 40)])
    data = build_message(mail, Recipient("z@example.com", "", "u", "p"), IDENTITY, "<m@x>", NOW)
    head = data.partition(b"\r\n\r\n")[0].decode()
    subject = head[head.index("Subject:") : head.index("\r\nDate:")]
    lines = subject.removeprefix("Subject: ").split("\r\n")
    assert len(lines) > 1 and all(len(line.strip()) <= 76 for line in lines)
    assert all(line.startswith(" ") for line in lines[1:])  # folded, not broken


def test_the_parts_are_separated_by_a_line_break_before_each_boundary() -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1, "T")])
    prepared = prepare(mail)
    data = build_message(prepared, Recipient("z@example.com", "", "u", "p"), IDENTITY, "<m@x>", NOW)
    body = data.partition(b"\r\n\r\n")[2]
    assert body.count(f"\r\n--{prepared.boundary}\r\n".encode()) == 1  # before the HTML part
    assert body.endswith(f"\r\n--{prepared.boundary}--\r\n".encode())
