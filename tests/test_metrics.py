"""``/metrics``: behind a bearer token, no per-week label, and counters that move when a real
worker sends through a real SMTP server (and add up over processes, through Redis)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta

import pytest
import redis
from fastapi.testclient import TestClient

from tests.conftest import SmtpHandler, wait_until
from tests.factories import comparison, load, subscribe
from worker.config import Settings
from worker.models import utcnow
from worker.runtime import Runtime, open_runtime
from worker.sending.counters import Counters, bucket_of, read_counters, reply_class
from worker.sending.planning import week_of
from worker.web import create_app

METRICS_TOKEN = "metrics-reader-token-0123456789"


@pytest.fixture
def app_rt(make_settings: Callable[..., Settings], redis_client: redis.Redis) -> Iterator[Runtime]:
    runtime = open_runtime(make_settings(metrics_token=METRICS_TOKEN), redis_client=redis_client)
    yield runtime
    runtime.close()


@pytest.fixture
def client(app_rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(app_rt.settings, app_rt)) as http:
        yield http


def scrape(client: TestClient, token: str) -> str:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in an exposition text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic abc"])
def test_metrics_are_refused_without_a_token(client: TestClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "newsletter_" not in answer.text


def test_a_metrics_token_once_set_is_the_only_one_metrics_take(
    client: TestClient, app_rt: Runtime
) -> None:
    assert app_rt.settings.operator_token
    assert "newsletter_deliveries_total" in scrape(client, METRICS_TOKEN)
    operator = {"Authorization": f"Bearer {app_rt.settings.operator_token}"}
    assert client.get("/metrics", headers=operator).status_code == 401
    # ...and it opens nothing else.
    assert client.get("/api/editions", headers=scraper(METRICS_TOKEN)).status_code == 401


def test_without_a_metrics_token_metrics_take_the_operator_token(rt: Runtime) -> None:
    assert not rt.settings.metrics_token
    with TestClient(create_app(rt.settings, rt)) as client:
        assert "newsletter_deliveries_total" in scrape(client, rt.settings.operator_token)
        assert client.get("/metrics", headers=scraper(METRICS_TOKEN)).status_code == 401


def scraper(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_counters_move_after_a_real_send_and_no_label_names_a_week(
    client: TestClient, app_rt: Runtime, smtp: SmtpHandler
) -> None:
    from worker.supervisor import running_worker

    rt = app_rt
    week = week_of(utcnow(), UTC)
    load(rt, comparison("metrics-duel", "Writing", utcnow() - timedelta(hours=1)))
    subscribe(rt, *[(f"r{i}@example.com", "", ()) for i in range(3)], ("gone@example.com", "", ()))
    smtp.replies["gone@example.com"] = "550 5.1.1 <gone@example.com>: user unknown"
    before = scrape(client, METRICS_TOKEN)
    assert sample(before, "newsletter_deliveries_total", outcome="sent") == 0

    operator = {"Authorization": f"Bearer {rt.settings.operator_token}"}
    client.post("/api/editions", json={"week": week}, headers=operator)
    client.post(f"/api/editions/{week}/send", headers=operator)
    with running_worker(rt, threads=2, sweep=False) as (_actors, worker):
        for _ in range(3):
            for queue in sorted(rt.broker.get_declared_queues()):
                rt.broker.join(queue, timeout=60_000)
            worker.join()
        # Each process writes its counts to Redis once a second.
        wait_until(
            lambda: (
                sample(scrape(client, METRICS_TOKEN), "newsletter_deliveries_total", outcome="sent")
                == 3
            )
        )
    text = scrape(client, METRICS_TOKEN)
    assert sample(text, "newsletter_deliveries_total", outcome="bounced") == 1
    assert sample(text, "newsletter_smtp_replies_total", **{"class": "2xx"}) == 3
    assert sample(text, "newsletter_smtp_replies_total", **{"class": "5xx"}) == 1
    assert sample(text, "newsletter_claim_to_sent_seconds_count") == 3
    assert sample(text, "newsletter_claim_to_sent_seconds_bucket", le="+Inf") == 3
    assert sample(text, "newsletter_bounces_total", kind="hard", reason="userunknown") == 1
    assert sample(text, "newsletter_current_edition_deliveries", status="sent") == 3
    assert sample(text, "newsletter_current_edition_status", status="sent") == 1
    assert sample(text, "newsletter_current_edition_rate", kind="hard_bounce") == 0.25
    assert sample(text, "newsletter_queue_depth", queue="deliveries") == 0
    assert sample(text, "newsletter_subscribers", status="bounced") == 1
    labels = set(re.findall(r'(\w+)="', text))
    assert labels <= {"outcome", "class", "le", "queue", "status", "kind", "reason"}
    assert week not in text


def test_counts_of_several_processes_add_up(redis_client: redis.Redis) -> None:
    first, second = Counters(redis_client), Counters(redis_client)
    first.delivery("sent", "2xx", 0.2)
    second.delivery("sent", "2xx", 3.0)
    second.delivery("retried", "4xx")
    first.flush()
    second.flush()
    counts = read_counters(redis_client)
    assert counts["deliveries:sent"] == 2
    assert counts["deliveries:retried"] == 1
    assert counts["replies:4xx"] == 1
    assert counts["latency:count"] == 2 and counts["latency:sum"] == pytest.approx(3.2)
    assert counts["latency:0.25"] == 1 and counts["latency:5.0"] == 1


@pytest.mark.parametrize(
    "code,expected",
    [(250, "2xx"), (421, "4xx"), (451, "4xx"), (550, "5xx"), (None, "none"), (999, "none")],
)
def test_reply_classes(code: int | None, expected: str) -> None:
    assert reply_class(code) == expected


@pytest.mark.parametrize(
    "latency_s,bucket",
    [(0.0, "0.05"), (0.05, "0.05"), (0.3, "0.5"), (299.0, "300.0"), (1e6, "+Inf")],
)
def test_latency_buckets(latency_s: float, bucket: str) -> None:
    assert bucket_of(latency_s) == bucket
