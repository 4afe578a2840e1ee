"""The operator console over HTTP (the ASGI app, the real database, Redis and SMTP server):
sign-in, sessions, CSRF and Origin checks, every page, every action and the state machine's
refusals, and the audit log of what changed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import SmtpHandler
from tests.factories import comparison, load, subscribe
from worker.audit import list_audit_events
from worker.bounces.policy import refusal_facts
from worker.bounces.record import policy_of, record_bounce
from worker.heartbeat import write_scheduler_heartbeat
from worker.models import AuditEvent, Subscriber, utcnow
from worker.runtime import Runtime
from worker.sending import control
from worker.sending.planning import week_of
from worker.subscribers import queries as subscribers
from worker.web import create_app

ORIGIN = "https://news.example.com"  # NEWSLETTER_PUBLIC_URL of the test settings


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt), base_url=ORIGIN, follow_redirects=False) as c:
        yield c


def hidden(html: str, name: str = "csrf") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in the page"
    return found.group(1)


def sign_in(client: TestClient, rt: Runtime) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    form = client.get("/admin/login")
    answer = client.post(
        "/admin/login",
        data={"token": rt.settings.operator_token, "csrf": hidden(form.text)},
        headers={"Origin": ORIGIN},
    )
    assert answer.status_code == 303, answer.text
    return hidden(client.get("/admin").text)


@pytest.fixture
def signed_in(client: TestClient, rt: Runtime) -> str:
    return sign_in(client, rt)


def post(client: TestClient, path: str, csrf: str | None, **data: str) -> object:
    fields = {**data, **({"csrf": csrf} if csrf is not None else {})}
    return client.post(path, data=fields, headers={"Origin": ORIGIN})


def week_with_content(rt: Runtime, people: int = 2) -> str:
    week = week_of(utcnow(), UTC)
    load(rt, comparison("console-duel", "Writing", utcnow() - timedelta(hours=1), title="Quill"))
    subscribe(rt, *[(f"reader{i}@example.com", f"Reader {i}", ()) for i in range(people)])
    return week


def draft(rt: Runtime) -> str:
    week = week_with_content(rt)
    control.ensure_edition(rt, week, utcnow())
    return week


def audit_actions(rt: Runtime) -> list[str]:
    with rt.session() as db:
        return [e.action for e in list_audit_events(db)]


# --- sign-in ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin",
        "/admin/editions/2026-W48",
        "/admin/editions/2026-W48/preview",
        "/admin/editions/2026-W48/live",
        "/admin/subscribers",
        "/admin/subscribers/1",
        "/admin/bounces",
        "/admin/health",
        "/admin/audit",
    ],
)
def test_every_console_page_sends_a_stranger_to_the_sign_in_form(
    client: TestClient, path: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/admin/login?next=")
    assert "console-duel" not in answer.text


def test_signing_in_sets_a_strict_httponly_secure_cookie_and_signing_out_ends_the_session(
    client: TestClient, rt: Runtime
) -> None:
    form = client.get("/admin/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    answer = client.post(
        "/admin/login",
        data={
            "token": rt.settings.operator_token,
            "csrf": hidden(form.text),
            "next": "/admin/health",
        },
        headers={"Origin": ORIGIN},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/health"
    cookie = next(
        h for h in answer.headers.get_list("set-cookie") if h.startswith("newsletter_console=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite=strict", "path=/admin"} <= flags
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert session_id.encode() not in b"".join(rt.redis.keys("newsletter:console:*"))

    page = client.get("/admin")
    assert page.status_code == 200 and "Sign out" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    out = post(client, "/admin/logout", hidden(page.text))
    assert out.status_code == 303 and out.headers["location"] == "/admin/login"
    client.cookies.set("newsletter_console", session_id, domain="news.example.com", path="/admin")
    assert client.get("/admin").status_code == 303  # the old cookie signs nobody in
    assert audit_actions(rt)[:2] == ["sign-out", "sign-in"]


def test_a_wrong_token_is_refused_and_repeated_tries_are_rate_limited(
    client: TestClient, rt: Runtime
) -> None:
    codes = []
    for _ in range(6):
        form = client.get("/admin/login")
        answer = client.post(
            "/admin/login",
            data={"token": "guess", "csrf": hidden(form.text)},
            headers={"Origin": ORIGIN},
        )
        codes.append(answer.status_code)
    assert codes == [401] * 5 + [429]  # NEWSLETTER_CONSOLE_LOGIN_RATE: 5/minute
    assert int(answer.headers["retry-after"]) >= 1
    assert "That is not the operator token" not in answer.text
    # Even the right token waits now, and no session was ever made.
    form = client.get("/admin/login")
    right = client.post(
        "/admin/login",
        data={"token": rt.settings.operator_token, "csrf": hidden(form.text)},
        headers={"Origin": ORIGIN},
    )
    assert right.status_code == 429
    assert client.get("/admin").status_code == 303
    assert rt.redis.keys("newsletter:console:session:*") == []


@pytest.mark.parametrize(
    "how",
    ["no login cookie", "another origin", "no origin"],
)
def test_a_sign_in_without_its_form_token_or_from_another_site_is_refused(
    client: TestClient, rt: Runtime, how: str
) -> None:
    form = client.get("/admin/login")
    csrf = hidden(form.text)
    headers = {"Origin": "https://evil.example"} if how == "another origin" else {}
    if how == "no login cookie":
        client.cookies.clear()
        headers = {"Origin": ORIGIN}
    answer = client.post(
        "/admin/login", data={"token": rt.settings.operator_token, "csrf": csrf}, headers=headers
    )
    assert answer.status_code == 403
    assert client.get("/admin").status_code == 303


# --- CSRF and Origin on every state change ------------------------------------------------------


@pytest.mark.parametrize(
    ("csrf", "headers"),
    [
        (None, {"Origin": ORIGIN}),
        ("wrong", {"Origin": ORIGIN}),
        ("right", {"Origin": "https://evil.example"}),
        ("right", {"Referer": "https://evil.example/page"}),
        ("right", {}),
    ],
)
def test_a_state_change_without_the_token_or_from_another_origin_is_refused_and_changes_nothing(
    client: TestClient,
    rt: Runtime,
    signed_in: str,
    csrf: str | None,
    headers: dict[str, str],
) -> None:
    week = draft(rt)
    subscriber_before = subscriber("reader0@example.com", rt)
    fields = {} if csrf is None else {"csrf": signed_in if csrf == "right" else csrf}
    for path in (
        f"/admin/editions/{week}/pause",
        f"/admin/editions/{week}/cancel",
        f"/admin/subscribers/{subscriber_before.id}/unsubscribe",
        f"/admin/subscribers/{subscriber_before.id}/erase",
        f"/admin/editions/{week}/test-send",
        "/admin/logout",
    ):
        answer = client.post(path, data={**fields, "email": "x@example.com"}, headers=headers)
        assert answer.status_code == 403, (path, answer.status_code)
    assert control.status(rt, week).status == "draft"
    assert subscriber("reader0@example.com", rt).status == "active"
    assert client.get("/admin").status_code == 200  # still signed in
    with rt.session() as db:
        assert db.execute(select(AuditEvent).where(AuditEvent.target == week)).first() is None


def subscriber(email: str, rt: Runtime) -> Subscriber:
    with rt.session() as db:
        found = subscribers.get_subscriber_by_email(db, email)
    assert found is not None
    return found


# --- editions ---------------------------------------------------------------------------------


def test_the_editions_list_and_an_edition_page_show_their_numbers(
    client: TestClient, rt: Runtime, signed_in: str, worker: Callable[[], None]
) -> None:
    week = week_with_content(rt, people=3)
    subscribe(rt, ("gone@example.com", "", ()))
    with rt.session() as db, db.begin():
        gone = subscribers.get_subscriber_by_email(db, "gone@example.com")
        assert gone is not None and gone.id is not None
        record_bounce(
            db,
            refusal_facts(550, "5.1.1 User unknown", gone.email, subscriber_id=gone.id),
            policy_of(rt.settings),
        )
    confirm = client.get(f"/admin/editions/{week}/confirm/send")
    assert confirm.status_code == 404  # no edition yet
    control.ensure_edition(rt, week, utcnow())

    listing = client.get("/admin")
    assert listing.status_code == 200 and f'href="/admin/editions/{week}"' in listing.text
    page = client.get(f"/admin/editions/{week}")
    assert "draft" in page.text and "Quill" in page.text
    assert f'formaction="/admin/editions/{week}/confirm/send"' in page.text
    assert "/confirm/resume" in page.text  # a draft may be resumed (sent) too
    assert "/confirm/retry" not in page.text  # not offered to a draft

    asked = client.get(f"/admin/editions/{week}/confirm/send")
    assert asked.status_code == 200 and "Yes: Send" in asked.text
    assert control.status(rt, week).status == "draft"  # asking changes nothing

    sent = post(client, f"/admin/editions/{week}/send", signed_in)
    assert sent.status_code == 303 and sent.headers["location"].endswith("?done=send")
    worker()
    view = control.status(rt, week)
    assert (view.status, view.sent) == ("sent", 3)

    page = client.get(f"/admin/editions/{week}")
    assert "<svg" in page.text and "Send rate: peak" in page.text
    assert 'data-live="sent">3<' in page.text
    live = client.get(f"/admin/editions/{week}/live").json()
    assert (live["status"], live["sent"], live["total"], live["percent_done"]) == (
        "sent",
        3,
        3,
        100,
    )
    assert live["chart"].startswith("<svg")
    listing = client.get("/admin")
    assert "100.0%" in listing.text
    audit = client.get("/admin/audit")
    assert "edition send" in audit.text and "console:" in audit.text and "testclient" in audit.text


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        ("sent", ["send", "pause", "cancel"]),
        ("cancelled", ["send", "pause", "resume", "cancel", "retry"]),
        ("draft", ["retry"]),
    ],
)
def test_actions_the_state_machine_forbids_are_refused_with_409_and_change_nothing(
    client: TestClient, rt: Runtime, signed_in: str, status: str, refused: list[str]
) -> None:
    week = draft(rt)
    with rt.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE edition SET status = '{status}'")
    for action in refused:
        answer = post(client, f"/admin/editions/{week}/{action}", signed_in)
        assert answer.status_code == 409, action
        assert "Nothing was changed" in answer.text
        confirm = client.get(f"/admin/editions/{week}/confirm/{action}")
        assert "Not possible now" in confirm.text and "Yes:" not in confirm.text
        assert f"/confirm/{action}" not in client.get(f"/admin/editions/{week}").text
    assert control.status(rt, week).status == status
    assert [a for a in audit_actions(rt) if a.startswith("edition")] == []
    assert post(client, f"/admin/editions/{week}/explode", signed_in).status_code == 404


def test_pause_resume_cancel_and_retry_go_through_the_operator_controls_and_the_audit_log(
    client: TestClient, rt: Runtime, signed_in: str, worker: Callable[[], None]
) -> None:
    week = draft(rt)
    assert post(client, f"/admin/editions/{week}/pause", signed_in).status_code == 303
    view = control.status(rt, week)
    assert view.status == "paused" and view.pause_reason
    assert view.pause_reason.startswith("paused by an operator (console:")
    page = client.get(f"/admin/editions/{week}")
    assert view.pause_reason in page.text
    # `send` does not resume a paused edition; the console offers only `resume`.
    assert post(client, f"/admin/editions/{week}/send", signed_in).status_code == 409
    assert post(client, f"/admin/editions/{week}/resume", signed_in).status_code == 303
    worker()
    assert control.status(rt, week).status == "sent"
    answer = post(client, f"/admin/editions/{week}/retry", signed_in)
    assert answer.status_code == 303
    worker()
    assert control.status(rt, week).status == "sent"
    assert post(client, f"/admin/editions/{week}/cancel", signed_in).status_code == 409
    actions = audit_actions(rt)
    assert actions[:3] == ["edition retry", "edition resume", "edition pause"]


def test_cancel_from_the_console_skips_what_is_owed(
    client: TestClient, rt: Runtime, signed_in: str
) -> None:
    week = draft(rt)
    assert post(client, f"/admin/editions/{week}/cancel", signed_in).status_code == 303
    assert control.status(rt, week).status == "cancelled"
    with rt.session() as db:
        [event] = db.execute(select(AuditEvent).where(AuditEvent.target == week)).scalars()
    assert (event.action, event.ip) == ("edition cancel", "testclient")
    assert event.actor.startswith("console:") and len(event.actor) == len("console:") + 12


# --- preview and test send ------------------------------------------------------------------


def test_the_preview_shows_the_edition_as_a_reader_gets_it_and_a_test_goes_to_any_address(
    client: TestClient, rt: Runtime, signed_in: str, smtp: SmtpHandler
) -> None:
    week = draft(rt)
    load(rt, comparison("other-duel", "Research", utcnow() - timedelta(hours=2), title="Lens"))
    subscribe(rt, ("writer@example.com", "Wren", ("Writing",)))
    everything = client.get(f"/admin/editions/{week}/preview")
    assert everything.status_code == 200
    assert everything.text.count("<iframe") == 2
    assert 'width="320"' in everything.text and 'width="600"' in everything.text
    as_reader = client.get(
        f"/admin/editions/{week}/preview", params={"subscriber": "writer@example.com"}
    )
    assert "Wren" in as_reader.text and "(categories: Writing)" in as_reader.text
    nothing = client.get(f"/admin/editions/{week}/preview", params={"categories": "Research"})
    assert "gets nothing from this edition" in nothing.text
    unknown = client.get(f"/admin/editions/{week}/preview", params={"subscriber": "no@example.com"})
    assert "No subscriber no@example.com" in unknown.text

    answer = post(client, f"/admin/editions/{week}/test-send", signed_in, email="ed@example.com")
    assert answer.status_code == 303
    [received] = smtp.to("ed@example.com")
    assert received.message["Subject"].startswith("[TEST] ")
    assert control.status(rt, week).total == 0
    assert "Test sent to ed@example.com" in client.get(answer.headers["location"]).text
    bad = post(client, f"/admin/editions/{week}/test-send", signed_in, email="ed@example.test")
    assert bad.status_code == 422
    assert audit_actions(rt)[0] == "edition test-send"


# --- subscribers ------------------------------------------------------------------------------


def test_subscribers_are_searched_filtered_and_paged_with_totals(
    client: TestClient, rt: Runtime, signed_in: str
) -> None:
    load(rt, comparison("console-duel", "Writing", utcnow() - timedelta(hours=1)))
    subscribe(rt, *[(f"weekly{i:03d}@example.com", "", ()) for i in range(60)])
    subscribe(rt, ("ada@example.com", "Ada Lovelace", ("Writing",)), cadence="instant")
    subscribe(rt, ("pending@example.com", "", ()), confirmed=False)

    everyone = client.get("/admin/subscribers")
    assert "<b data-total>62</b>" in everyone.text and "Page 1 of 2" in everyone.text
    second = client.get("/admin/subscribers", params={"page": 2})
    assert "weekly050@example.com" in second.text and "weekly000@example.com" not in second.text
    by_name = client.get("/admin/subscribers", params={"q": "lovelace"})
    assert "<b data-total>1</b>" in by_name.text and "ada@example.com" in by_name.text
    by_status = client.get("/admin/subscribers", params={"status": "pending"})
    assert "<b data-total>1</b>" in by_status.text and "pending@example.com" in by_status.text
    by_cadence = client.get("/admin/subscribers", params={"cadence": "instant"})
    assert "<b data-total>1</b>" in by_cadence.text
    # Who gets Writing: Ada, who chose it, and everyone who chose nothing (= all).
    writing = client.get("/admin/subscribers", params={"category": "Writing"})
    assert "<b data-total>62</b>" in writing.text
    wild = client.get("/admin/subscribers", params={"q": "%"})
    assert "<b data-total>0</b>" in wild.text


def test_a_subscribers_page_shows_consent_history_and_bounces(
    client: TestClient, rt: Runtime, signed_in: str, worker: Callable[[], None]
) -> None:
    week = draft(rt)
    control.start_send(rt, week, utcnow(), __import__("worker.actors").actors.actors_of(rt))
    worker()
    ada = subscriber("reader0@example.com", rt)
    with rt.session() as db, db.begin():
        record_bounce(
            db,
            refusal_facts(452, "4.2.2 Mailbox full", ada.email, subscriber_id=ada.id),
            policy_of(rt.settings),
        )
    page = client.get(f"/admin/subscribers/{ada.id}")
    assert page.status_code == 200
    assert "Consent" in page.text and "test" in page.text  # the import's source
    assert f'href="/admin/editions/{week}"' in page.text and "sent" in page.text
    assert "mailboxfull" in page.text
    assert client.get("/admin/subscribers/999999").status_code == 404


def test_unsubscribe_resubscribe_through_a_confirmation_and_erase(
    client: TestClient,
    rt: Runtime,
    signed_in: str,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    subscribe(rt, ("ada@example.com", "Ada", ()))
    ada = subscriber("ada@example.com", rt)
    page = client.get(f"/admin/subscribers/{ada.id}")
    assert "/confirm/unsubscribe" in page.text and "/confirm/resubscribe" not in page.text
    assert client.get(f"/admin/subscribers/{ada.id}/confirm/erase").status_code == 200

    assert post(client, f"/admin/subscribers/{ada.id}/unsubscribe", signed_in).status_code == 303
    assert subscriber("ada@example.com", rt).status == "unsubscribed"
    assert post(client, f"/admin/subscribers/{ada.id}/unsubscribe", signed_in).status_code == 409

    answer = post(client, f"/admin/subscribers/{ada.id}/resubscribe", signed_in)
    assert answer.status_code == 303
    assert subscriber("ada@example.com", rt).status == "pending"  # not active until confirmed
    worker()
    [mail] = smtp.to("ada@example.com")
    assert "/confirm/" in mail.message.get_body(("plain",)).get_content()
    again = post(client, f"/admin/subscribers/{ada.id}/resubscribe", signed_in)
    assert again.status_code == 409 and "ten minutes" in again.text

    assert post(client, f"/admin/subscribers/{ada.id}/erase", signed_in).status_code == 303
    with rt.session() as db:
        assert subscribers.get_subscriber_by_email(db, "ada@example.com") is None
    log = client.get("/admin/audit").text
    for action in ("subscriber erase", "subscriber resubscribe", "subscriber unsubscribe"):
        assert action in log
    assert "ada@example.com" not in log  # the log names a subscriber by id only


def test_a_bounced_reader_is_not_offered_a_resubscription(
    client: TestClient, rt: Runtime, signed_in: str
) -> None:
    subscribe(rt, ("dead@example.com", "", ()))
    dead = subscriber("dead@example.com", rt)
    with rt.session() as db, db.begin():
        record_bounce(
            db,
            refusal_facts(550, "5.1.1 User unknown", dead.email, subscriber_id=dead.id),
            policy_of(rt.settings),
        )
    assert subscriber("dead@example.com", rt).status == "bounced"
    assert "/confirm/resubscribe" not in client.get(f"/admin/subscribers/{dead.id}").text
    answer = post(client, f"/admin/subscribers/{dead.id}/resubscribe", signed_in)
    assert answer.status_code == 409
    assert subscriber("dead@example.com", rt).status == "bounced"


# --- bounces, health, audit -------------------------------------------------------------------


def test_bounces_are_listed_with_reason_source_and_diagnostic_sender_problems_apart(
    client: TestClient, rt: Runtime, signed_in: str
) -> None:
    subscribe(rt, ("dead@example.com", "", ()), ("blocked@example.com", "", ()))
    facts = [
        refusal_facts(550, "5.1.1 <dead@example.com>: User unknown", "dead@example.com"),
        refusal_facts(
            550,
            "5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org",
            "blocked@example.com",
        ),
    ]
    with rt.session() as db, db.begin():
        for fact in facts:
            record_bounce(db, fact, policy_of(rt.settings))
    page = client.get("/admin/bounces").text
    readers, sender = page.split("Sender-side problems")
    assert "dead@example.com" in readers and "userunknown" in readers and "smtp" in readers
    assert "blocked@example.com" in sender and "spamhaus" in sender
    assert "blocked@example.com" not in readers
    hard = client.get("/admin/bounces", params={"kind": "hard"}).text
    assert "dead@example.com" in hard and "Sender-side problems" not in hard
    only_sender = client.get("/admin/bounces", params={"kind": "sender"}).text
    assert "blocked@example.com" in only_sender and "dead@example.com" not in only_sender
    by_reason = client.get("/admin/bounces", params={"reason": "userunknown"}).text
    assert "dead@example.com" in by_reason and "blocked@example.com" not in by_reason


def test_health_shows_the_stores_workers_queues_and_the_scheduler(
    client: TestClient, rt: Runtime, signed_in: str
) -> None:
    page = client.get("/admin/health").text
    assert page.count(">ok<") == 2
    assert "No worker is running" in page and "No scheduler has run" in page
    rt.redis.set("newsletter:worker:host-a:123", "1", ex=30)
    fire = utcnow() + timedelta(days=2)
    write_scheduler_heartbeat(rt.redis, utcnow(), fire, "2026-W48: sending")
    page = client.get("/admin/health").text
    assert "host-a:123" in page and "running" in page
    assert "2026-W48: sending" in page and fire.strftime("%Y-%m-%d %H:%M") in page


def test_an_alert_is_listed_previewed_and_test_sent_as_an_alert(
    client: TestClient, rt: Runtime, signed_in: str, smtp: SmtpHandler
) -> None:
    load(rt, comparison("alert-duel", "Writing", utcnow() - timedelta(minutes=30), title="Nib"))
    from tests.factories import FanOutHere
    from worker.sending import pipeline

    [key] = pipeline.send_alerts(rt, utcnow(), FanOutHere(rt))
    assert f'>{key}</a> <span class="muted">(alert)</span>' in client.get("/admin").text
    shown = client.get(f"/admin/editions/{key}/preview")
    assert shown.status_code == 200 and "New verdict" in shown.text and "Nib" in shown.text
    answer = post(client, f"/admin/editions/{key}/test-send", signed_in, email="ed@example.com")
    assert answer.status_code == 303
    [received] = smtp.to("ed@example.com")
    assert received.message["Subject"].startswith("[TEST] New verdict")


def test_a_draft_takes_an_intro_from_its_page_and_a_sent_edition_refuses_one(
    client: TestClient, rt: Runtime, signed_in: str, worker: Callable[[], None]
) -> None:
    week = draft(rt)
    assert 'name="intro"' in client.get(f"/admin/editions/{week}").text
    intro = "Three tools this week, and one clear winner for writers."
    assert post(client, f"/admin/editions/{week}/intro", None, intro=intro).status_code == 403
    assert control.get_edition(rt, week).intro == ""
    assert post(client, f"/admin/editions/{week}/intro", signed_in, intro=intro).status_code == 303
    assert control.get_edition(rt, week).intro == intro
    assert "edition intro" in audit_actions(rt)
    refused = post(client, f"/admin/editions/{week}/intro", signed_in, intro="a\nb")
    assert refused.status_code == 422 and "one line only" in refused.text
    assert post(client, f"/admin/editions/{week}/send", signed_in).status_code == 303
    worker()
    late = post(client, f"/admin/editions/{week}/intro", signed_in, intro="Too late.")
    assert late.status_code == 409 and "draft or paused" in late.text
    assert control.get_edition(rt, week).intro == intro
    page = client.get(f"/admin/editions/{week}").text
    assert intro in page and 'name="intro"' not in page
