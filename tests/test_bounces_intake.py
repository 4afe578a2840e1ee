"""Bounces end to end: a delivery goes out, its bounce comes back, the subscriber is acted on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import SmtpHandler, free_port
from tests.factories import comparison, load, send, subscribe
from worker.bounces import queries as bounces
from worker.bounces.intake import intake_for
from worker.bounces.policy import BounceFacts, Policy
from worker.bounces.record import record_bounce
from worker.bounces.server import start_server
from worker.models import BounceEvent, Delivery, utcnow
from worker.runtime import Runtime
from worker.sending import control
from worker.sending.planning import week_of
from worker.subscribers import queries as subscribers
from worker.web import create_app

DATA = Path(__file__).parent / "data"


def _sent_edition(rt: Runtime, worker: Callable[[], None], *emails: str) -> str:
    now = utcnow()
    week = week_of(now, UTC)
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    subscribe(rt, *[(e, "", ()) for e in emails])
    send(rt, week, now)
    worker()
    return week


def _bounce_for(smtp: SmtpHandler, email: str, template: str = "postfix_user_unknown.eml") -> bytes:
    """The corpus bounce, rewritten to be about the mail that ``email`` really received."""
    [received] = smtp.to(email)
    expected = json.loads((DATA / "bounces" / "expected.json").read_text())[template]
    text = (DATA / "bounces" / template).read_text()
    text = re.sub(r"bounces\+d\d+\.[0-9a-f]{10}@news\.example\.com", received.mail_from, text)
    text = re.sub(r"\bd\d+\.[0-9a-f]{10}\b", received.message["X-Newsletter-Delivery"], text)
    text = re.sub(r"<d\d+\.\d{4}-W\d\d@news\.example\.com>", received.message["Message-ID"], text)
    text = text.replace(expected["findings"][0]["recipient"], email)
    return text.encode()


def _status(rt: Runtime, email: str) -> str:
    with rt.session() as session:
        subscriber = subscribers.get_subscriber_by_email(session, email)
        assert subscriber is not None
        return subscriber.status


def _delivery_status(rt: Runtime, email: str) -> str:
    with rt.session() as session:
        subscriber = subscribers.get_subscriber_by_email(session, email)
        assert subscriber is not None
        return session.execute(
            select(Delivery.status).where(Delivery.subscriber_id == subscriber.id)
        ).scalar_one()


def test_a_dsn_arriving_at_its_verp_address_suppresses_the_subscriber(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    week = _sent_edition(rt, worker, "dead@example.com", "alive@example.com")
    bounce = _bounce_for(smtp, "dead@example.com")
    verp = smtp.to("dead@example.com")[0].mail_from
    controller, handler = start_server(
        intake_for(rt), "bounces", "news.example.com", "127.0.0.1", free_port()
    )
    try:
        with smtplib.SMTP(controller.hostname, controller.port) as client:
            wire = bounce.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            client.sendmail("", [verp], wire)
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("", ["postmaster@news.example.com"], wire)
    finally:
        controller.stop()
    assert handler.processed == 1
    assert _status(rt, "dead@example.com") == "bounced"
    assert _delivery_status(rt, "dead@example.com") == "bounced"
    assert _status(rt, "alive@example.com") == "active"
    view = control.status(rt, week)
    assert view.bounced == 1 and view.bounces == {"hard": 1}
    with rt.session() as session:
        [event] = session.execute(select(BounceEvent)).scalars().all()
    assert (event.kind, event.reason, event.source, event.status_code) == (
        "hard",
        "userunknown",
        "dsn",
        "5.1.1",
    )


def test_a_forged_token_changes_nothing(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    _sent_edition(rt, worker, "victim@example.com")
    bounce = _bounce_for(smtp, "victim@example.com").decode()
    real = smtp.to("victim@example.com")[0].message["X-Newsletter-Delivery"]
    forged = real[:-4] + ("0000" if not real.endswith("0000") else "1111")
    result = intake_for(rt).process(bounce.replace(real, forged).encode(), "forged.eml")
    assert result.outcome == "forged"
    assert _status(rt, "victim@example.com") == "active"
    assert _delivery_status(rt, "victim@example.com") == "sent"


def test_the_same_bounce_is_counted_once(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    _sent_edition(rt, worker, "full@example.com")
    bounce = _bounce_for(smtp, "full@example.com", "postfix_mailbox_full.eml")
    intake = intake_for(rt)
    assert intake.process(bounce, "a.eml").outcome == "recorded"
    assert intake.process(bounce, "a-again.eml").outcome == "duplicate"
    with rt.session() as session:
        assert len(session.execute(select(BounceEvent)).scalars().all()) == 1
    assert _status(rt, "full@example.com") == "active"  # one soft bounce suspends nobody


def test_ingest_prints_a_json_line_per_recipient_and_keeps_garbage_aside(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    _sent_edition(rt, worker, "gone@example.com")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "1-bounce.eml").write_bytes(_bounce_for(smtp, "gone@example.com"))
    (inbox / "2-junk.eml").write_bytes(b"\x00\xff" * 5000)
    (inbox / "3-ooo.eml").write_bytes(
        (DATA / "bounces" / "auto_reply_out_of_office.eml").read_bytes()
    )
    command = [sys.executable, "-m", "worker.cli", "bounces", "ingest", str(inbox), "--json"]

    dry = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert _status(rt, "gone@example.com") == "active"

    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert dry.stdout == result.stdout
    assert [{k: line[k] for k in ("file", "recipient", "kind", "status")} for line in lines] == [
        {
            "file": str(inbox / "1-bounce.eml"),
            "recipient": "gone@example.com",
            "kind": "hard",
            "status": "5.1.1",
        },
        {"file": str(inbox / "2-junk.eml"), "recipient": None, "kind": "ignored", "status": None},
        {
            "file": str(inbox / "3-ooo.eml"),
            "recipient": lines[2]["recipient"],
            "kind": "ignored",
            "status": None,
        },
    ]
    assert lines[1]["diagnostic"].startswith("kept: ")
    assert "3 messages: 1 ignored, 1 kept, 1 recorded" in result.stderr
    assert _status(rt, "gone@example.com") == "bounced"
    kept = list((Path(env["NEWSLETTER_DATA_DIR"]) / "bounces" / "kept").glob("*.eml"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"\x00\xff" * 5000


def test_ingest_reads_an_mbox_from_stdin(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
    env: dict[str, str],
) -> None:
    _sent_edition(rt, worker, "a@example.com", "b@example.com")
    mbox = b"".join(
        b"From MAILER-DAEMON Fri Nov 27 15:02:11 2026\n"
        + _bounce_for(smtp, e).replace(b"\r\n", b"\n")
        + b"\n"
        for e in ("a@example.com", "b@example.com")
    )
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "bounces", "ingest", "-"],
        env=env,
        input=mbox,
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr
    assert b"2 messages: 2 recorded" in result.stderr
    assert _status(rt, "a@example.com") == _status(rt, "b@example.com") == "bounced"


def test_garbage_of_every_kind_is_kept_aside_and_the_intake_keeps_running(rt: Runtime) -> None:
    intake = intake_for(rt)
    samples = [p.read_bytes() for p in sorted((DATA / "bounces_bad").iterdir())]
    samples.append(b"Subject: big\r\n\r\n" + b"x" * (10 * 1024 * 1024))
    started = time.monotonic()
    outcomes = [intake.process(raw, f"bad{i}").outcome for i, raw in enumerate(samples)]
    assert set(outcomes) == {"kept"}
    assert time.monotonic() - started < 60


def _soft(rt: Runtime, email: str, received_at: datetime) -> str | None:
    """Record a soft bounce for ``email`` received at ``received_at``: the status it set."""
    with rt.session() as session, session.begin():
        subscriber = subscribers.get_subscriber_by_email(session, email)
        assert subscriber is not None
        outcome = record_bounce(
            session,
            BounceFacts(
                kind="soft",
                reason="mailboxfull",
                source="dsn",
                recipient=email,
                status="4.2.2",
                diagnostic="mailbox full",
                subscriber_id=subscriber.id,
                received_at=received_at,
            ),
            Policy(soft_bounce_limit=3, soft_bounce_window_days=30),
        )
    return outcome.subscriber_status


def test_three_soft_bounces_on_distinct_days_suspend(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    _sent_edition(rt, worker, "flaky@example.com")
    later = utcnow() + timedelta(hours=1)
    assert _soft(rt, "flaky@example.com", later) is None
    assert _soft(rt, "flaky@example.com", later + timedelta(days=0.01)) is None  # same day
    assert _soft(rt, "flaky@example.com", later + timedelta(days=1)) is None
    assert _soft(rt, "flaky@example.com", later + timedelta(days=2)) == "bounced"
    assert _status(rt, "flaky@example.com") == "bounced"


def test_an_edition_delivered_after_soft_bounces_starts_the_count_again(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    # steady reads another category: this week's edition is not for them.
    subscribe(rt, ("flaky@example.com", "", ()), ("steady@example.com", "", ("Other",)))
    now = utcnow()
    for email in ("flaky@example.com", "steady@example.com"):
        assert _soft(rt, email, now - timedelta(days=2)) is None
        assert _soft(rt, email, now - timedelta(days=1)) is None
    _sent_edition(rt, worker, "flaky@example.com")
    assert (len(smtp.to("flaky@example.com")), smtp.to("steady@example.com")) == (1, [])
    assert _soft(rt, "flaky@example.com", utcnow() + timedelta(hours=1)) is None
    assert _status(rt, "flaky@example.com") == "active"
    # Nothing accepted for steady since: the third day is the third strike.
    assert _soft(rt, "steady@example.com", utcnow() + timedelta(hours=1)) == "bounced"


def test_a_delivery_notice_after_soft_bounces_starts_the_count_again(rt: Runtime) -> None:
    subscribe(rt, ("flaky@example.com", "", ()))
    now = utcnow()
    assert _soft(rt, "flaky@example.com", now - timedelta(days=2)) is None
    assert _soft(rt, "flaky@example.com", now - timedelta(days=1)) is None
    with rt.session() as session, session.begin():
        subscriber = subscribers.get_subscriber_by_email(session, "flaky@example.com")
        assert subscriber is not None
        notice = record_bounce(
            session,
            BounceFacts(
                kind="ignored",
                reason="delivered",
                source="dsn",
                recipient="flaky@example.com",
                status="2.0.0",
                diagnostic="250 2.0.0 OK",
                subscriber_id=subscriber.id,
                received_at=now - timedelta(hours=1),
            ),
            Policy(soft_bounce_limit=3, soft_bounce_window_days=30),
        )
    assert notice.recorded is False
    assert _soft(rt, "flaky@example.com", now + timedelta(hours=1)) is None
    assert _soft(rt, "flaky@example.com", now + timedelta(days=1)) is None
    assert _soft(rt, "flaky@example.com", now + timedelta(days=2)) == "bounced"


def test_delay_notices_on_three_days_are_recorded_but_are_no_strikes(rt: Runtime) -> None:
    subscribe(rt, ("slow@example.com", "", ()))
    with rt.session() as session:
        subscriber = subscribers.get_subscriber_by_email(session, "slow@example.com")
        assert subscriber is not None
        sid = subscriber.id
    later = utcnow() + timedelta(hours=1)
    for day in range(3):
        with rt.session() as session, session.begin():
            outcome = record_bounce(
                session,
                BounceFacts(
                    kind="soft",
                    reason="networkerror",
                    source="dsn",
                    recipient="slow@example.com",
                    status="4.4.1",
                    diagnostic="connect to mx.example.com: Connection timed out",
                    subscriber_id=sid,
                    received_at=later + timedelta(days=day),
                    delayed=True,
                ),
                Policy(soft_bounce_limit=3, soft_bounce_window_days=30),
            )
        assert (outcome.recorded, outcome.subscriber_status) == (True, None)
    assert _status(rt, "slow@example.com") == "active"


def test_sender_problems_do_not_penalise_the_subscriber(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    _sent_edition(rt, worker, "blocked@example.com")
    bounce = _bounce_for(smtp, "blocked@example.com", "postfix_spamhaus_blocked.eml")
    assert intake_for(rt).process(bounce, "x").outcome == "recorded"
    assert _status(rt, "blocked@example.com") == "active"
    with rt.session() as session:
        assert bounces.count_bounce_kinds(session, 1) == {"sender": 1}


# --- provider webhooks over HTTP -------------------------------------------------------------


@pytest.fixture
def http(make_settings: Callable[..., object], redis_client: object) -> httpx.Client:
    from fastapi.testclient import TestClient

    from worker.runtime import open_runtime

    settings = make_settings(
        postmark_username="pm", postmark_password="s3cret", mailgun_signing_key="mg-key"
    )
    rt = open_runtime(settings, redis_client=redis_client)  # type: ignore[arg-type]
    with TestClient(create_app(settings, rt)) as client:  # type: ignore[arg-type]
        client.rt = rt  # type: ignore[attr-defined]
        yield client
    rt.close()


def _postmark(email: str, event_id: int = 42) -> dict[str, object]:
    return {
        "RecordType": "Bounce",
        "ID": event_id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Email": email,
        "Description": "The server was unable to deliver your message",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "BouncedAt": "2026-11-27T15:00:00Z",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    }


def test_a_postmark_bounce_is_recorded_once_even_when_posted_twice(http: httpx.Client) -> None:
    rt: Runtime = http.rt  # type: ignore[attr-defined]
    subscribe(rt, ("pm-dead@example.com", "", ()))
    auth = "Basic " + base64.b64encode(b"pm:s3cret").decode()
    for _ in range(2):
        answer = http.post(
            "/webhooks/postmark",
            json=_postmark("pm-dead@example.com"),
            headers={"Authorization": auth},
        )
        assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 1, "recorded": 0}
    assert _status(rt, "pm-dead@example.com") == "bounced"
    with rt.session() as session:
        [event] = session.execute(select(BounceEvent)).scalars().all()
    assert (event.source, event.kind, event.provider_event_id) == (
        "postmark",
        "hard",
        "postmark:42",
    )


@pytest.mark.parametrize(
    ("headers", "body", "code"),
    [
        ({"Authorization": "Basic " + base64.b64encode(b"pm:wrong").decode()}, None, 401),
        ({}, None, 401),
        ({"Authorization": "Basic " + base64.b64encode(b"pm:s3cret").decode()}, b"{not json", 400),
    ],
)
def test_a_bad_postmark_request_is_refused_and_records_nothing(
    http: httpx.Client,
    headers: dict[str, str],
    body: bytes | None,
    code: int,
) -> None:
    rt: Runtime = http.rt  # type: ignore[attr-defined]
    subscribe(rt, ("pm-safe@example.com", "", ()))
    content = body if body is not None else json.dumps(_postmark("pm-safe@example.com")).encode()
    answer = http.post(
        "/webhooks/postmark",
        content=content,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == code
    assert _status(rt, "pm-safe@example.com") == "active"


def test_a_mailgun_complaint_is_verified_and_a_replay_is_refused(http: httpx.Client) -> None:
    rt: Runtime = http.rt  # type: ignore[attr-defined]
    subscribe(rt, ("mg-angry@example.com", "", ()))
    timestamp, token = str(int(time.time())), "a" * 50
    signature = hmac.new(b"mg-key", (timestamp + token).encode(), hashlib.sha256).hexdigest()
    payload = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "id": "mg-event-1",
            "event": "complained",
            "recipient": "mg-angry@example.com",
            "timestamp": float(timestamp),
            "message": {"headers": {"message-id": "x@mg.example.com"}},
        },
    }
    first = http.post("/webhooks/mailgun", json=payload)
    assert first.status_code == 200, first.text
    assert _status(rt, "mg-angry@example.com") == "complained"
    replay = http.post("/webhooks/mailgun", json=payload)
    assert replay.status_code == 401
    tampered = json.loads(json.dumps(payload))
    tampered["signature"]["signature"] = "0" * 64
    assert http.post("/webhooks/mailgun", json=tampered).status_code == 401


def test_an_unknown_provider_is_404(http: httpx.Client) -> None:
    assert http.post("/webhooks/sparkpost", content=b"{}").status_code == 404


def test_the_bounce_mailbox_is_read_once_and_emptied(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    from tests.imap_server import ImapServer, Mailbox
    from worker.bounces.mailbox import poll

    _sent_edition(rt, worker, "imap-dead@example.com", "imap-full@example.com")
    mailbox = Mailbox()
    mailbox.add(_bounce_for(smtp, "imap-dead@example.com"))
    mailbox.add(_bounce_for(smtp, "imap-full@example.com", "postfix_mailbox_full.eml"))
    mailbox.add(b"\x00\xffnot mail at all")
    server = ImapServer(mailbox, free_port())
    server.start()
    try:
        url = f"imap://bounces:secret@127.0.0.1:{server.port}/INBOX?move_to=Processed"
        assert poll(url, intake_for(rt)) == 3
        assert poll(url, intake_for(rt)) == 0
        with pytest.raises(Exception, match="bounce mailbox"):
            poll(f"imap://bounces:wrong@127.0.0.1:{server.port}/INBOX", intake_for(rt))
    finally:
        server.stop()
    assert mailbox.folders["INBOX"] == {}
    assert len(mailbox.folders["Processed"]) == 3
    assert _status(rt, "imap-dead@example.com") == "bounced"
    assert _status(rt, "imap-full@example.com") == "active"
    kept = list((rt.settings.data_dir / "bounces" / "kept").glob("*.eml"))
    assert len(kept) == 1


def _events(rt: Runtime) -> list[tuple[str, str, str]]:
    with rt.session() as session:
        rows = session.execute(select(BounceEvent)).scalars().all()
        return sorted((e.recipient, e.kind, e.reason) for e in rows)


def test_a_notice_naming_six_disabled_accounts_records_all_six(rt: Runtime) -> None:
    # flufl.bounce's yahoo_08: sent to a list address, not to one of our VERP addresses.
    people = [f"user{c}@example.com" for c in "abcdef"]
    subscribe(rt, *[(e, "", ()) for e in people])
    raw = (DATA / "bounces" / "corpus" / "flufl" / "yahoo_08.eml").read_bytes()
    result = intake_for(rt).process(raw, "yahoo_08.eml")
    assert result.outcome == "recorded"
    assert _events(rt) == [(e, "soft", "suspend") for e in people]


def test_a_verp_token_of_ours_narrows_a_bounce_to_its_one_delivery(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    _sent_edition(rt, worker, "walter@example.net", "xavier@example.net")
    # One message of ours went to one address: a second recipient in the report is not ours.
    bounce = _bounce_for(smtp, "walter@example.net", "dsn_nonstandard_fields.eml")
    result = intake_for(rt).process(bounce, "two.eml")
    assert result.outcome == "recorded"
    assert [r for r, _, _ in _events(rt)] == ["walter@example.net"]
    assert _status(rt, "xavier@example.net") == "active"


def test_a_delay_notice_is_recorded_as_a_delay_and_suppresses_no_one(rt: Runtime) -> None:
    subscribe(rt, ("user@example.com", "", ()))
    raw = (DATA / "bounces" / "corpus" / "flanker" / "no-mx.eml").read_bytes()
    for copy in range(3):  # three days of warnings are still no bounce
        result = intake_for(rt).process(raw + b"\n" * (copy + 1), f"delay-{copy}.eml")
        assert result.outcome == "recorded"
        [finding] = result.findings
        assert (finding.action, finding.reason, finding.kind) == ("delayed", "networkerror", "soft")
    assert _status(rt, "user@example.com") == "active"


def test_each_json_line_carries_the_reason_and_whether_it_is_a_delay(rt: Runtime) -> None:
    raw = (DATA / "bounces" / "corpus" / "flanker" / "no-mx.eml").read_bytes()
    result = intake_for(rt).process(raw, "no-mx.eml", dry_run=True)
    [line] = list(result.lines())
    assert line == {
        "file": "no-mx.eml",
        "recipient": "user@example.com",
        "kind": "soft",
        "reason": "networkerror",
        "action": "delayed",
        "status": "4.4.4",
        "diagnostic": "454 4.4.4 [internal] no MX or A for domain",
    }
