"""The operator API over HTTP, with the bearer token, against the real app and worker."""

from __future__ import annotations

import json
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
    spec = api.get("/openapi.json").json()
    assert "/api/editions/{week}" in spec["paths"]
    assert json.dumps(spec)  # serialisable
