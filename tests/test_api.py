"""The operator API's new endpoints over HTTP (httpx against the ASGI app), on both stacks:
editions list and retry, bounces, a subscriber's record, changes and erasure, filters and
totals, and every error as an RFC 9457 problem."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SmtpHandler
from tests.factories import comparison, load, subscribe
from worker.bounces import queries as bounces
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.sending.planning import week_of
from worker.subscribers import queries as subscribers
from worker.web import create_app

NEW_ENDPOINTS = [
    ("GET", "/api/editions"),
    ("POST", "/api/editions/2026-W48/retry"),
    ("GET", "/api/bounces"),
    ("GET", "/api/subscribers/ada@example.com"),
    ("PATCH", "/api/subscribers/ada@example.com"),
    ("DELETE", "/api/subscribers/ada@example.com"),
    ("GET", "/api/subscribers"),
]


@pytest.fixture
def api(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt)) as client:
        client.headers["Authorization"] = f"Bearer {rt.settings.operator_token}"
        yield client


def this_week() -> str:
    return week_of(utcnow(), UTC)


def with_comparison(rt: Runtime) -> str:
    load(rt, comparison("api-duel", "Writing", utcnow() - timedelta(hours=1)))
    return this_week()


def start(api: TestClient, week: str) -> dict[str, Any]:
    """Create the week's edition and send it, over the API."""
    assert api.post("/api/editions", json={"week": week}).status_code == 201
    answer = api.post(f"/api/editions/{week}/send")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def assert_problem(answer: Any, status: int) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with this status; returns its body."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    return body


# --- the error shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("method,path", NEW_ENDPOINTS)
def test_every_new_endpoint_answers_a_401_problem_without_the_token(
    api: TestClient, method: str, path: str
) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        answer = api.request(method, path, headers=headers, json={})
        body = assert_problem(answer, 401)
        assert body["type"] == "/problems/unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"


def test_unknown_things_are_404_problems(api: TestClient) -> None:
    assert assert_problem(api.post("/api/editions/2026-W01/retry"), 404)["detail"] == (
        "no edition for 2026-W01"
    )
    for method in ("GET", "PATCH", "DELETE"):
        answer = api.request(method, "/api/subscribers/nobody@example.com", json={})
        assert assert_problem(answer, 404)["detail"] == "no subscriber nobody@example.com"
    assert_problem(api.get("/api/no-such-thing"), 404)
    assert_problem(api.get("/api/bounces", params={"week": "2026-W01"}), 404)


def test_a_reader_page_keeps_its_own_errors(api: TestClient) -> None:
    answer = api.get("/no-such-page")
    assert answer.status_code == 404
    assert not answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "method,path,params,field",
    [
        ("GET", "/api/editions/not-a-week", {}, "week"),
        ("GET", "/api/editions/2026-W54", {}, "week"),
        ("POST", "/api/editions/2026-W99/retry", {}, "week"),
        ("GET", "/api/editions", {"limit": "0"}, "limit"),
        ("GET", "/api/bounces", {"kind": "lukewarm"}, "kind"),
        ("GET", "/api/bounces", {"since": "yesterday"}, "since"),
        ("GET", "/api/subscribers", {"status": "asleep"}, "status"),
        ("GET", "/api/subscribers", {"cadence": "hourly"}, "cadence"),
    ],
)
def test_a_malformed_input_is_a_422_naming_its_field(
    api: TestClient, method: str, path: str, params: dict[str, str], field: str
) -> None:
    body = assert_problem(api.request(method, path, params=params), 422)
    assert body["type"] == "/problems/invalid-input"
    assert body["field"] == field
    assert body["errors"][0]["field"] == field


def test_a_bad_body_is_a_422_naming_each_field(api: TestClient, rt: Runtime) -> None:
    subscribe(rt, ("ada@example.com", "Ada", ()))
    answer = api.patch(
        "/api/subscribers/ada@example.com", json={"cadence": "hourly", "status": "asleep"}
    )
    body = assert_problem(answer, 422)
    assert {e["field"] for e in body["errors"]} == {"cadence", "status"}
    answer = api.patch("/api/subscribers/ada@example.com", json={"name": "Ada\r\nBcc: x"})
    assert assert_problem(answer, 422)["field"] == "name"
    assert_problem(api.post("/api/editions", json={"week": "2026-48"}), 422)
    with rt.session() as session:
        ada = subscribers.get_subscriber_by_email(session, "ada@example.com")
    assert ada is not None and ada.name == "Ada" and ada.cadence == "weekly"


def test_what_the_state_machine_refuses_is_a_409_and_changes_nothing(
    api: TestClient, rt: Runtime
) -> None:
    week = with_comparison(rt)
    assert api.post("/api/editions", json={"week": week}).status_code == 201
    assert assert_problem(api.post(f"/api/editions/{week}/retry"), 409)["type"] == (
        "/problems/conflict"
    )
    assert api.post(f"/api/editions/{week}/cancel").json()["status"] == "cancelled"
    for action in ("pause", "resume", "retry", "send"):
        body = assert_problem(api.post(f"/api/editions/{week}/{action}"), 409)
        assert body["detail"].startswith(f"the {week} edition is cancelled: it cannot be")
    assert api.get(f"/api/editions/{week}").json()["status"] == "cancelled"


def test_a_status_the_table_forbids_is_a_409(api: TestClient, rt: Runtime) -> None:
    subscribe(rt, ("ada@example.com", "Ada", ()))
    assert api.patch("/api/subscribers/ada@example.com", json={"status": "bounced"}).is_success
    body = assert_problem(
        api.patch("/api/subscribers/ada@example.com", json={"status": "pending"}), 409
    )
    assert body["detail"] == "ada@example.com is bounced: it cannot become pending"
    subscribe(rt, ("bob@example.com", "Bob", ()))
    api.patch("/api/subscribers/bob@example.com", json={"status": "unsubscribed"})
    body = assert_problem(
        api.patch("/api/subscribers/bob@example.com", json={"status": "active"}), 409
    )
    assert "a new confirmation goes out" in body["detail"]
    assert api.get("/api/subscribers/bob@example.com").json()["subscriber"]["status"] == (
        "unsubscribed"
    )


def test_the_openapi_document_declares_the_bearer_scheme(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["operatorToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["operatorToken"]["description"],
    }
    assert {"operatorToken": []} in spec["paths"]["/api/editions"]["get"]["security"]
    assert {"operatorToken": []} in spec["paths"]["/metrics"]["get"]["security"]
    assert "security" not in spec["paths"]["/subscribe"]["get"]


# --- editions -----------------------------------------------------------------------------


def test_editions_come_newest_first_in_pages_with_their_rates(api: TestClient, rt: Runtime) -> None:
    now = utcnow()
    weeks = []
    for back in (3, 2, 1, 0):
        moment = now - timedelta(weeks=back)
        load(rt, comparison(f"duel-{back}", "Writing", moment - timedelta(minutes=1)))
        weeks.append(week_of(moment, UTC))
        assert api.post("/api/editions", json={"week": weeks[-1]}).status_code == 201
    first = api.get("/api/editions", params={"limit": 3}).json()
    assert [e["week"] for e in first["items"]] == weeks[::-1][:3]
    assert first["total"] == 4
    item = first["items"][0]
    assert (item["kind"], item["status"], item["bounce_rate"], item["warnings"]) == (
        "digest",
        "draft",
        0.0,
        [],
    )
    second = api.get("/api/editions", params={"limit": 3, "before": first["next"]}).json()
    assert [e["week"] for e in second["items"]] == [weeks[0]]
    assert second["next"] is None


def test_pause_then_resume_over_the_api_mails_everyone_once(
    api: TestClient, rt: Runtime, smtp: SmtpHandler, request: pytest.FixtureRequest
) -> None:
    week = with_comparison(rt)
    people = [f"r{i}@example.com" for i in range(6)]
    subscribe(rt, *[(p, "", ()) for p in people])
    assert start(api, week)["status"] == "sending"
    paused = api.post(f"/api/editions/{week}/pause").json()
    assert (paused["status"], paused["changed"]) == ("paused", True)
    assert api.post(f"/api/editions/{week}/pause").json()["changed"] is False

    drain: Callable[[], None] = request.getfixturevalue("worker")
    drain()
    assert smtp.received == []
    assert api.get(f"/api/editions/{week}").json()["status"] == "paused"

    assert api.post(f"/api/editions/{week}/resume").json()["status"] == "sending"
    drain()
    status = api.get(f"/api/editions/{week}").json()
    assert (status["status"], status["sent"]) == ("sent", 6)
    assert sorted(a for r in smtp.received for a in r.rcpt_tos) == sorted(people)


def test_cancel_over_the_api_mails_nobody(
    api: TestClient, rt: Runtime, smtp: SmtpHandler, request: pytest.FixtureRequest
) -> None:
    week = with_comparison(rt)
    subscribe(rt, *[(f"r{i}@example.com", "", ()) for i in range(4)])
    start(api, week)
    cancelled = api.post(f"/api/editions/{week}/cancel").json()
    assert cancelled["status"] == "cancelled"
    request.getfixturevalue("worker")()
    status = api.get(f"/api/editions/{week}").json()
    assert (status["status"], status["sent"], status["queued"]) == ("cancelled", 0, 0)
    assert status["skipped"] == status["total"]
    assert smtp.received == []


@pytest.fixture
def one_attempt_rt(make_settings: Callable[..., Any], redis_client: Any) -> Iterator[Runtime]:
    from worker.runtime import open_runtime

    runtime = open_runtime(make_settings(max_attempts=1), redis_client=redis_client)
    yield runtime
    runtime.close()


def test_retry_over_the_api_sends_the_failed_once(
    one_attempt_rt: Runtime, smtp: SmtpHandler
) -> None:
    from worker.supervisor import running_worker

    rt = one_attempt_rt
    week = with_comparison(rt)
    subscribe(rt, ("ada@example.com", "", ()), ("bob@example.com", "", ()))
    smtp.fail_next["bob@example.com"] = ["451 4.3.0 try again later"]
    with (
        TestClient(create_app(rt.settings, rt)) as api,
        running_worker(rt, threads=2, sweep=False) as (_actors, worker),
    ):
        api.headers["Authorization"] = f"Bearer {rt.settings.operator_token}"

        def drain() -> None:
            for _ in range(3):
                for queue in sorted(rt.broker.get_declared_queues()):
                    rt.broker.join(queue, timeout=60_000)
                worker.join()

        start(api, week)
        drain()
        before = api.get(f"/api/editions/{week}").json()
        assert (before["status"], before["sent"], before["failed"]) == ("sent", 1, 1)
        retried = api.post(f"/api/editions/{week}/retry").json()
        assert (retried["requeued"], retried["status"]) == (1, "sending")
        drain()
        after = api.get(f"/api/editions/{week}").json()
        assert (after["status"], after["sent"], after["failed"]) == ("sent", 2, 0)
    assert len(smtp.to("ada@example.com")) == 1
    assert len(smtp.to("bob@example.com")) == 1


# --- bounces ------------------------------------------------------------------------------


def add_bounce(rt: Runtime, recipient: str, kind: str, reason: str, days_ago: float = 0) -> None:
    with rt.session() as session, session.begin():
        bounces.create_bounce_event(
            session,
            recipient=recipient,
            kind=kind,
            reason=reason,
            source="dsn",
            status_code="5.1.1" if kind == "hard" else "4.2.2",
            diagnostic=f"{reason} for {recipient}",
            received_at=utcnow() - timedelta(days=days_ago),
        )


def test_bounces_are_filtered_and_paged_newest_first(api: TestClient, rt: Runtime) -> None:
    add_bounce(rt, "old@example.com", "hard", "userunknown", days_ago=10)
    add_bounce(rt, "full@example.com", "soft", "mailboxfull", days_ago=2)
    add_bounce(rt, "Ada@Example.com", "hard", "userunknown")
    add_bounce(rt, "blocked@example.com", "sender", "blocked")

    every = api.get("/api/bounces").json()
    assert [b["recipient"] for b in every["items"]] == [
        "blocked@example.com",
        "Ada@Example.com",
        "full@example.com",
        "old@example.com",
    ]
    assert every["total"] == 4

    def recipients(**params: Any) -> list[str]:
        return [b["recipient"] for b in api.get("/api/bounces", params=params).json()["items"]]

    assert recipients(kind="hard") == ["Ada@Example.com", "old@example.com"]
    assert recipients(reason="mailboxfull") == ["full@example.com"]
    assert recipients(email="ada@example.com") == ["Ada@Example.com"]
    since = (utcnow() - timedelta(days=3)).isoformat()
    assert recipients(since=since, kind="hard") == ["Ada@Example.com"]
    first = api.get("/api/bounces", params={"limit": 3}).json()
    second = api.get("/api/bounces", params={"limit": 3, "before": first["next"]}).json()
    assert [b["recipient"] for b in second["items"]] == ["old@example.com"]
    assert second["total"] == 4 and second["next"] is None


# --- subscribers --------------------------------------------------------------------------


def test_subscribers_are_filtered_with_totals(api: TestClient, rt: Runtime) -> None:
    subscribe(
        rt,
        ("ada@example.com", "Ada Lovelace", ("Writing",)),
        ("bob@example.com", "Bob", ("Developer Tools", "Writing")),
        ("cy@example.com", "Cy", ("Developer Tools",)),
    )
    subscribe(rt, ("dee@example.com", "Dee", ()), cadence="instant")
    subscribe(rt, ("eve@example.com", "Eve_100%", ()), confirmed=False)

    def emails(**params: Any) -> tuple[list[str], int]:
        page = api.get("/api/subscribers", params=params).json()
        return [s["email"] for s in page["items"]], page["total"]

    assert emails(category="writing") == (["ada@example.com", "bob@example.com"], 2)
    assert emails(category="Developer Tools", q="bo") == (["bob@example.com"], 1)
    assert emails(cadence="instant") == (["dee@example.com"], 1)
    assert emails(status="pending") == (["eve@example.com"], 1)
    assert emails(q="LOVELACE") == (["ada@example.com"], 1)
    assert emails(q="_100%") == (["eve@example.com"], 1)
    assert emails(q="%") == (["eve@example.com"], 1)
    page = api.get("/api/subscribers", params={"limit": 2}).json()
    assert page["total"] == 5 and page["totals"] == {"active": 4, "pending": 1}
    assert len(page["items"]) == 2 and page["next"] is not None


def test_a_subscribers_record_shows_consent_deliveries_and_bounces(
    api: TestClient, rt: Runtime, worker: Callable[[], None], smtp: SmtpHandler
) -> None:
    week = with_comparison(rt)
    subscribe(rt, ("ada@example.com", "Ada", ()))
    start(api, week)
    worker()
    add_bounce(rt, "ada@example.com", "soft", "mailboxfull")
    record = api.get("/api/subscribers/ADA@example.com").json()
    assert record["subscriber"]["email"] == "ada@example.com"
    assert record["consent"]["consent_source"] == "test"
    assert [(d["edition"], d["status"]) for d in record["deliveries"]] == [(week, "sent")]
    assert [b["reason"] for b in record["bounce_events"]] == ["mailboxfull"]


def test_an_operator_changes_preferences_and_status(api: TestClient, rt: Runtime) -> None:
    load(rt, comparison("duel", "Writing", utcnow() - timedelta(hours=1)))
    subscribe(rt, ("ada@example.com", "Ada", ()))
    changed = api.patch(
        "/api/subscribers/ada@example.com",
        json={"name": "Ada L.", "categories": ["writing"], "cadence": "instant"},
    ).json()
    assert (changed["name"], changed["categories"], changed["cadence"], changed["status"]) == (
        "Ada L.",
        ["Writing"],
        "instant",
        "active",
    )
    left = api.patch("/api/subscribers/ada@example.com", json={"status": "unsubscribed"}).json()
    assert (left["status"], left["name"], left["mail"]) == ("unsubscribed", "Ada L.", None)
    with rt.session() as session:
        ada = subscribers.get_subscriber_by_email(session, "ada@example.com")
    assert ada is not None and (ada.status, ada.cadence) == ("unsubscribed", "instant")


def test_setting_pending_mails_a_new_confirmation(
    api: TestClient, rt: Runtime, worker: Callable[[], None], smtp: SmtpHandler
) -> None:
    subscribe(rt, ("ada@example.com", "Ada", ()))
    api.patch("/api/subscribers/ada@example.com", json={"status": "unsubscribed"})
    back = api.patch("/api/subscribers/ada@example.com", json={"status": "pending"}).json()
    assert (back["status"], back["mail"]) == ("pending", "confirm")
    worker()
    [mail] = smtp.to("ada@example.com")
    assert "/confirm/" in mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_delete_erases_a_subscriber(api: TestClient, rt: Runtime) -> None:
    subscribe(rt, ("ada@example.com", "Ada", ()), ("bob@example.com", "Bob", ()))
    answer = api.delete("/api/subscribers/Ada@example.com")
    assert answer.status_code == 204 and answer.content == b""
    assert_problem(api.get("/api/subscribers/ada@example.com"), 404)
    with rt.session() as session:
        assert subscribers.get_subscriber_by_email(session, "ada@example.com") is None
        assert subscribers.get_subscriber_by_email(session, "bob@example.com") is not None
        assert sending.count_editions(session) == 0


def test_an_unexpected_failure_is_a_500_problem_under_the_api_only(rt: Runtime) -> None:
    url = rt.settings.resolved_database_url
    if not url.startswith("sqlite:///"):
        pytest.skip("the database is taken away by deleting its file")
    import os

    rt.engine.dispose()
    os.remove(url.removeprefix("sqlite:///"))  # a fresh, empty file appears: no tables
    with TestClient(create_app(rt.settings, rt), raise_server_exceptions=False) as client:
        token = {"Authorization": f"Bearer {rt.settings.operator_token}"}
        body = assert_problem(client.get("/api/editions", headers=token), 500)
        assert body["type"] == "/problems/internal-error"
        page = client.get("/subscribe")
        assert page.status_code == 500
        assert page.headers["content-type"].startswith("text/html")


# --- an edition's own intro -----------------------------------------------------------------


def test_an_edition_carries_the_intro_the_operator_gave_it(rt: Runtime, smtp: SmtpHandler) -> None:
    from tests.test_readers import text_of
    from worker.supervisor import running_worker

    week = with_comparison(rt)
    subscribe(rt, ("ada@example.com", "Ada", ()))
    intro = "Two editors shipped this week; the third is still on the fence."
    with (
        TestClient(create_app(rt.settings, rt)) as api,
        running_worker(rt, threads=2, sweep=False) as (_actors, worker),
    ):
        api.headers["Authorization"] = f"Bearer {rt.settings.operator_token}"
        created = api.post("/api/editions", json={"week": week, "intro": "A first draft."})
        assert created.status_code == 201
        changed = api.patch(f"/api/editions/{week}", json={"intro": f"  {intro}  "})
        assert (changed.status_code, changed.json()["intro"]) == (200, intro)
        assert intro in api.get(f"/api/editions/{week}/preview").text
        assert api.post(f"/api/editions/{week}/send").status_code == 200
        for _ in range(3):
            for queue in sorted(rt.broker.get_declared_queues()):
                rt.broker.join(queue, timeout=60_000)
            worker.join()
        # Once mail went out, every reader of the edition reads the same intro.
        late = assert_problem(api.patch(f"/api/editions/{week}", json={"intro": "Later."}), 409)
        assert "draft or paused" in late["detail"]
    [mail] = smtp.to("ada@example.com")
    assert intro in " ".join(text_of(mail).split())
    assert intro in text_of(mail, "html")
    assert "A first draft." not in text_of(mail, "html")


@pytest.mark.parametrize(
    "intro,problem",
    [
        ("one line\nand another", "one line only"),
        ("x" * 501, "at most 500"),
    ],
)
def test_a_bad_intro_is_a_422_naming_it_and_changes_nothing(
    api: TestClient, rt: Runtime, intro: str, problem: str
) -> None:
    week = with_comparison(rt)
    assert api.post("/api/editions", json={"week": week, "intro": "Kept."}).status_code == 201
    body = assert_problem(api.patch(f"/api/editions/{week}", json={"intro": intro}), 422)
    assert body["field"] == "intro"
    assert problem in body["detail"]
    with rt.session() as session:
        edition = sending.get_edition(session, week)
    assert edition is not None and edition.intro == "Kept."
