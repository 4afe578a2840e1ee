"""Prometheus metrics. Counters come from the hash every worker process adds to in Redis
(``worker.sending.counters``), so they are the sum over all workers; gauges are read from the
database (the truth) and the queue at scrape time. No label grows without bound: the current
edition's progress has no week label, statuses, kinds, reasons and reply classes are closed
sets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from worker.actors import QUEUE_DELIVERIES, QUEUE_EDITIONS, QUEUE_TRANSACTIONAL, count_workers
from worker.bounces import queries as bounces
from worker.models import EditionStatus
from worker.runtime import Runtime
from worker.sending import control
from worker.sending import queries as sending
from worker.sending.counters import (
    LATENCY_BUCKETS_S,
    OUTCOMES,
    REPLY_CLASSES,
    bucket_of,
    read_counters,
)
from worker.subscribers import queries as subscribers


class NewsletterCollector(Collector):
    """Everything ``/metrics`` shows, collected at scrape time."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._queue()
        yield from self._database()

    def _counters(self) -> Iterator[Metric]:
        counts = read_counters(self.rt.redis)
        deliveries = CounterMetricFamily(
            "newsletter_deliveries",
            "Delivery attempts by outcome, over all workers",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            deliveries.add_metric([outcome], counts.get(f"deliveries:{outcome}", 0.0))
        yield deliveries
        replies = CounterMetricFamily(
            "newsletter_smtp_replies",
            "SMTP replies to delivery attempts by class (none: no reply, connection lost)",
            labels=["class"],
        )
        for reply in REPLY_CLASSES:
            replies.add_metric([reply], counts.get(f"replies:{reply}", 0.0))
        yield replies
        cumulative, buckets = 0.0, []
        for bound in LATENCY_BUCKETS_S:
            cumulative += counts.get(f"latency:{bucket_of(bound)}", 0.0)
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
        latency = HistogramMetricFamily(
            "newsletter_claim_to_sent_seconds",
            "From a worker's claim of a delivery to the server's acceptance (rate limit included)",
        )
        latency.add_metric([], buckets, counts.get("latency:sum", 0.0))
        yield latency

    def _queue(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "newsletter_queue_depth", "Jobs waiting in the queue", labels=["queue"]
        )
        namespace = self.rt.broker.namespace
        for queue in (QUEUE_DELIVERIES, QUEUE_EDITIONS, QUEUE_TRANSACTIONAL):
            depth.add_metric([queue], float(self.rt.redis.llen(f"{namespace}:{queue}")))
        yield depth
        yield GaugeMetricFamily(
            "newsletter_workers", "Worker processes alive", value=count_workers(self.rt)
        )

    def _database(self) -> Iterator[Metric]:
        with self.rt.session() as session:
            by_status = subscribers.count_subscribers(session)
            by_reason = bounces.count_bounce_reasons(session)
        people = GaugeMetricFamily(
            "newsletter_subscribers", "Subscribers by status", labels=["status"]
        )
        for status, count in sorted(by_status.items()):
            people.add_metric([status], count)
        yield people
        events = CounterMetricFamily(
            "newsletter_bounces",
            "Bounce and complaint events on record by kind and reason",
            labels=["kind", "reason"],
        )
        for (kind, reason), count in sorted(by_reason.items()):
            events.add_metric([kind, reason], count)
        yield events
        yield from self._current()

    def _current(self) -> Iterator[Metric]:
        with self.rt.session() as session:
            week = sending.get_current_week(session)
        progress = GaugeMetricFamily(
            "newsletter_current_edition_deliveries",
            "Deliveries of the current edition (the newest sending or paused, else the newest)"
            " by status",
            labels=["status"],
        )
        state = GaugeMetricFamily(
            "newsletter_current_edition_status",
            "1 for the current edition's status, 0 for the others",
            labels=["status"],
        )
        rates = GaugeMetricFamily(
            "newsletter_current_edition_rate",
            "The current edition's hard-bounce and complaint rates",
            labels=["kind"],
        )
        if week is not None:
            view = control.status(self.rt, week)
            for name in ("total", "queued", "sending", "sent", "failed", "bounced", "skipped"):
                progress.add_metric([name], getattr(view, name))
            for status in EditionStatus:
                state.add_metric([status.value], 1.0 if view.status == status.value else 0.0)
            rates.add_metric(["hard_bounce"], view.rates.hard_rate)
            rates.add_metric(["complaint"], view.rates.complaint_rate)
        yield progress
        yield state
        yield rates


def render_metrics(rt: Runtime) -> tuple[bytes, str]:
    """The exposition text of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NewsletterCollector(rt))
    return generate_latest(registry), CONTENT_TYPE_LATEST
