"""The operator API over HTTP, with the bearer token, against the real app and worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SmtpHandler
from tests.factories import comparison, subscribe
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending.planning import week_of
from worker.web import create_app

SAMPLES = Path(__file__).parent.parent / "samples" / "comparisons.json"


@pytest.fixture
def api(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt)) as client:
        client.headers["Authorization"] = f"Bearer {rt.settings.operator_token}"
        yield client


def _week() -> str:
    return week_of(utcnow(), UTC)


@pytest.mark.parametrize("path", ["/api/subscribers", "/api/editions/2026-W48"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic abc"])
def test_the_api_answers_401_without_the_operator_token(
    api: TestClient,
    path: str,
    authorization: str | None,
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = api.get(path, headers=headers) if authorization else TestClient(api.app).get(path)
    assert answer.status_code == 401


def test_a_comparison_is_created_then_updated_and_a_bad_one_names_its_field(
    api: TestClient,
) -> None:
    record = comparison("api-duel", "Writing", utcnow() - timedelta(hours=1))
    assert api.post("/api/comparisons", json=record).status_code == 201
    assert api.post("/api/comparisons", json=record).status_code == 200
    bad = {**record, "tools": record["tools"][:1]}
    answer = api.post("/api/comparisons", json=bad)
    assert answer.status_code == 422
    assert answer.json()["field"] == "tools"


def test_an_edition_is_created_previewed_sent_and_counted(
    api: TestClient,
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    week = _week()
    api.post(
        "/api/comparisons",
        json=comparison("api-duel", "Writing", utcnow() - timedelta(hours=1), title="Quill vs Ink"),
    )
    subscribe(rt, ("ada@example.com", "Ada", ()), ("bob@example.com", "Bob", ()))

    created = api.post("/api/editions", json={"week": week})
    assert created.status_code == 201
    assert created.json() == {
        "week": week,
        "status": "draft",
        "total": 0,
        "queued": 0,
        "sending": 0,
        "sent": 0,
        "failed": 0,
        "bounced": 0,
        "skipped": 0,
        "uncertain": 0,
        "pause_reason": None,
        "bounce_rate": 0.0,
        "complaint_rate": 0.0,
        "warnings": [],
    }
    assert api.post("/api/editions", json={"week": week}).status_code == 200
    preview = api.get(f"/api/editions/{week}/preview")
    assert preview.status_code == 200 and "Quill vs Ink" in preview.text

    assert api.post(f"/api/editions/{week}/send").status_code == 200
    worker()
    status = api.get(f"/api/editions/{week}").json()
    assert (status["status"], status["total"], status["sent"]) == ("sent", 2, 2)
    assert len(smtp.received) == 2


def test_an_unknown_week_is_404_and_a_malformed_one_422(api: TestClient) -> None:
    assert api.get("/api/editions/2026-W01").status_code == 404
    assert api.post("/api/editions/2026-W01/pause").status_code == 404
    assert api.get("/api/editions/not-a-week").status_code == 422
    assert api.get("/api/editions/2026-W54").status_code == 422


def test_pause_holds_an_edition_and_resume_sends_it(
    api: TestClient,
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    week = _week()
    api.post(
        "/api/comparisons", json=comparison("api-duel", "Writing", utcnow() - timedelta(hours=1))
    )
    subscribe(rt, ("ada@example.com", "Ada", ()), ("bob@example.com", "Bob", ()))
    assert api.post("/api/editions", json={"week": week}).json()["status"] == "draft"

    paused = api.post(f"/api/editions/{week}/pause")
    assert (paused.status_code, paused.json()["status"]) == (200, "paused")
    refused = api.post(f"/api/editions/{week}/send")
    assert refused.status_code == 409 and "resume" in refused.text
    worker()
    assert api.get(f"/api/editions/{week}").json()["status"] == "paused"
    assert smtp.received == []

    resumed = api.post(f"/api/editions/{week}/resume")
    assert (resumed.status_code, resumed.json()["status"]) == (200, "sending")
    worker()
    status = api.get(f"/api/editions/{week}").json()
    assert (status["status"], status["sent"]) == ("sent", 2)
    assert sorted(r.rcpt_tos[0] for r in smtp.received) == ["ada@example.com", "bob@example.com"]


def test_a_cancelled_edition_sends_nothing(
    api: TestClient,
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
) -> None:
    week = _week()
    api.post(
        "/api/comparisons", json=comparison("api-duel", "Writing", utcnow() - timedelta(hours=1))
    )
    subscribe(rt, ("ada@example.com", "Ada", ()))
    api.post("/api/editions", json={"week": week})

    cancelled = api.post(f"/api/editions/{week}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    again = api.post(f"/api/editions/{week}/send")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    assert api.post(f"/api/editions/{week}/resume").status_code == 409
    worker()
    status = api.get(f"/api/editions/{week}").json()
    assert (status["status"], status["sent"]) == ("cancelled", 0)
    assert smtp.received == []


def test_a_test_send_creates_no_delivery(api: TestClient, rt: Runtime, smtp: SmtpHandler) -> None:
    week = _week()
    api.post(
        "/api/comparisons", json=comparison("api-duel", "Writing", utcnow() - timedelta(hours=1))
    )
    answer = api.post("/api/test-send", json={"email": "editor@example.com", "week": week})
    assert answer.status_code == 200, answer.text
    [received] = smtp.to("editor@example.com")
    assert received.message["Subject"].startswith("[TEST] ")
    assert api.get(f"/api/editions/{week}").json()["total"] == 0
    bad = api.post("/api/test-send", json={"email": "editor\r\nBcc: x@example.com"})
    assert bad.status_code == 422


def test_subscribers_come_in_keyset_pages(api: TestClient, rt: Runtime) -> None:
    subscribe(rt, *[(f"r{i}@example.com", "", ()) for i in range(5)])
    first = api.get("/api/subscribers", params={"limit": 3}).json()
    assert [s["email"] for s in first["items"]] == [
        "r0@example.com",
        "r1@example.com",
        "r2@example.com",
    ]
    second = api.get("/api/subscribers", params={"limit": 3, "after": first["next"]}).json()
    assert [s["email"] for s in second["items"]] == ["r3@example.com", "r4@example.com"]
    assert second["next"] is None


def test_health_metrics_and_openapi(api: TestClient, rt: Runtime) -> None:
    subscribe(rt, ("ada@example.com", "", ()))
    assert api.get("/healthz").json() == {"status": "ok", "database": "ok", "redis": "ok"}
    metrics = api.get("/metrics").text
    assert 'newsletter_subscribers{status="active"} 1.0' in metrics


def test_the_openapi_document_describes_the_operator_api(api: TestClient) -> None:
    answer = api.get("/openapi.json")
    assert answer.status_code == 200
    spec = answer.json()
    assert spec["info"]["title"].startswith("Weekly AI Tool Verdicts")
    paths = spec["paths"]
    expected = {
        "/api/comparisons": {"post"},
        "/api/editions": {"post"},
        "/api/editions/{week}": {"get"},
        "/api/editions/{week}/preview": {"get"},
        "/api/editions/{week}/send": {"post"},
        "/api/editions/{week}/pause": {"post"},
        "/api/editions/{week}/resume": {"post"},
        "/api/editions/{week}/cancel": {"post"},
        "/api/test-send": {"post"},
        "/api/subscribers": {"get"},
        "/webhooks/{provider}": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    pause = paths["/api/editions/{week}/pause"]["post"]
    assert ("week", "path", True) in [
        (p["name"], p["in"], p["required"]) for p in pause["parameters"]
    ]
    listing = {p["name"]: p for p in paths["/api/subscribers"]["get"]["parameters"]}
    assert {"after", "limit", "status"} <= set(listing)
    assert listing["limit"]["schema"]["maximum"] == 500
    # The test-send body is described, with the address it needs.
    body = paths["/api/test-send"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert "email" in schema["required"]
