"""Prometheus metrics, read from the database (the truth) at scrape time."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from worker.bounces import queries as bounces
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.subscribers import queries as subscribers


def render_metrics(rt: Runtime) -> tuple[bytes, str]:
    """The exposition text: subscribers by status, deliveries of open editions by status."""
    registry = CollectorRegistry()
    subscriber_gauge = Gauge(
        "newsletter_subscribers", "Subscribers by status", ["status"], registry=registry
    )
    deliveries = Gauge(
        "newsletter_deliveries",
        "Deliveries by edition and status",
        ["week", "status"],
        registry=registry,
    )
    bounce_gauge = Gauge(
        "newsletter_bounce_events",
        "Bounce events by edition and kind",
        ["week", "kind"],
        registry=registry,
    )
    with rt.session() as session:
        for status, count in subscribers.count_subscribers(session).items():
            subscriber_gauge.labels(status).set(count)
        for edition in sending.list_editions(session)[:8]:
            assert edition.id is not None
            for status, count in sending.count_deliveries(session, edition.id).items():
                deliveries.labels(edition.week, status).set(count)
            for kind, count in bounces.count_bounce_kinds(session, edition.id).items():
                bounce_gauge.labels(edition.week, kind).set(count)
    return generate_latest(registry), CONTENT_TYPE_LATEST
