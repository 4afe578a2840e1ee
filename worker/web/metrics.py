"""Prometheus metrics, read from the database (the truth) at scrape time."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from worker import store
from worker.runtime import Runtime


def render_metrics(rt: Runtime) -> tuple[bytes, str]:
    """The exposition text: subscribers by status, deliveries of open editions by status."""
    registry = CollectorRegistry()
    subscribers = Gauge(
        "newsletter_subscribers", "Subscribers by status", ["status"], registry=registry
    )
    deliveries = Gauge(
        "newsletter_deliveries",
        "Deliveries by edition and status",
        ["week", "status"],
        registry=registry,
    )
    bounces = Gauge(
        "newsletter_bounce_events",
        "Bounce events by edition and kind",
        ["week", "kind"],
        registry=registry,
    )
    with rt.session() as session:
        for status, count in store.count_subscribers(session).items():
            subscribers.labels(status).set(count)
        for edition in store.list_editions(session)[:8]:
            assert edition.id is not None
            for status, count in store.count_deliveries(session, edition.id).items():
                deliveries.labels(edition.week, status).set(count)
            for kind, count in store.count_bounce_kinds(session, edition.id).items():
                bounces.labels(edition.week, kind).set(count)
    return generate_latest(registry), CONTENT_TYPE_LATEST
