"""One delivery: claim, load, render, build, send, record."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from worker.bounces.policy import refusal_facts
from worker.bounces.record import policy_of, record_bounce
from worker.config import Settings
from worker.errors import (
    ConfigError,
    PermanentFailure,
    RecipientRefused,
    TemporaryFailure,
    UncertainDelivery,
)
from worker.models import (
    DeliveryStatus,
    EditionStatus,
    utcnow,
)
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.sending.caches import editions_of
from worker.sending.counters import Counters, reply_class
from worker.sending.fanout import skip_at_send
from worker.sending.message import Recipient, build_message, message_id_for
from worker.sending.queries import Claim, EditionInfo
from worker.sending.retry import backoff_s
from worker.sending.throttle import Throttle
from worker.sending.tokens import sign_link, verp_address, verp_token
from worker.sending.writer import Outcome
from worker.subscribers.rules import split_categories

log = logging.getLogger(__name__)


def links_for(rt: Runtime, subscriber_token: str) -> tuple[str, str]:
    """The unsubscribe and preferences URLs of a subscriber, with signed tokens."""
    base = rt.settings.public_url
    key = rt.secret_key
    return (
        f"{base}/unsubscribe/{sign_link(key, 'unsubscribe', subscriber_token)}",
        f"{base}/preferences/{sign_link(key, 'preferences', subscriber_token)}",
    )


def check_can_mail_readers(settings: Settings) -> None:
    """Refuse to mail real readers (an SMTP server is set) without the sender's postal address:
    every edition's footer carries it (anti-spam law, e.g. CAN-SPAM). The outbox needs none."""
    if settings.smtp_url and not settings.postal_address:
        raise ConfigError(
            "NEWSLETTER_POSTAL_ADDRESS",
            "required to mail readers: every edition's footer carries the sender's postal"
            " address (leave NEWSLETTER_SMTP_URL unset to write mail to the outbox instead)",
        )


def deliver(rt: Runtime, delivery_id: int) -> str:
    """Send one delivery: claim, load, render, build, send, record. Returns its new status.

    Safe to run twice or concurrently: only the run whose claim succeeds sends, and it keeps
    the claim (its lease renewed by the writer) until the outcome is recorded. Every write
    goes through ``Runtime.writes``. The edition is marked sent by the refill chain and the
    sweep, not here.
    """
    claim = rt.writes.claim(delivery_id)
    if claim is None:
        return "not owed"
    try:
        return _deliver_claimed(rt, claim, time.monotonic())
    except Exception as exc:
        # Before the server took the message (after, nothing raises): counted as an attempt,
        # so a delivery whose job keeps failing ends `failed` after NEWSLETTER_MAX_ATTEMPTS.
        # Should even that write fail, the row stays `sending` and the sweep takes it back.
        log.exception("delivery %s: unexpected error", delivery_id)
        return _retry_or_fail(rt, claim, f"internal error: {exc}")
    finally:
        rt.writes.forget(delivery_id)


def counters_of(rt: Runtime) -> Counters:
    """The process's delivery counters, summed over every worker in Redis (``/metrics``)."""
    return rt.kept("sending.counters", lambda: Counters(rt.redis))


def _deliver_claimed(rt: Runtime, claim: Claim, claimed_at: float) -> str:
    writes, delivery_id = rt.writes, claim.delivery_id
    edition = editions_of(rt).edition_info(claim.edition_id)
    if edition.status == EditionStatus.paused.value:
        # Back to the database's list of owed work; `resume` hands it to a job again.
        writes.release(delivery_id)
        return "paused"
    has_picks = bool(editions_of(rt).picks_for(claim.edition_id, claim.categories))
    skip_reason = skip_at_send(edition.status, claim.subscriber_status, has_picks)
    if skip_reason:
        writes.record(delivery_id, Outcome(DeliveryStatus.skipped, error=skip_reason))
        counters_of(rt).delivery("skipped", None)
        return DeliveryStatus.skipped.value
    try:
        envelope_from, message_id, data = _build(rt, claim, edition)
    except Exception as exc:
        # A damaged row or a template that fails: counted as an attempt, so it ends `failed`.
        log.exception("delivery %s: cannot build the message", delivery_id)
        return _retry_or_fail(rt, claim, f"cannot build the message: {exc}")
    if rt.settings.send_rate > 0 or rt.settings.domain_rates:
        throttle_of(rt).wait(claim.email)
    if not writes.still_held(claim):
        # Held past the lease by a stall of this process: the sweep took it back and it is
        # someone else's now. Sending would be the duplicate.
        log.warning("delivery %s: claim taken back while waiting; not sending", delivery_id)
        return "claim lost"
    counters = counters_of(rt)
    try:
        rt.transport.send(envelope_from, claim.email, data)
    except RecipientRefused as exc:
        status = _refused(rt, claim, exc)
        counters.delivery(status, reply_class(exc.code))
        return status
    except PermanentFailure as exc:
        writes.record(delivery_id, Outcome(DeliveryStatus.failed, error=str(exc)))
        counters.delivery("failed", reply_class(exc.code))
        return DeliveryStatus.failed.value
    except UncertainDelivery as exc:
        status = _retry_or_fail(rt, claim, str(exc), uncertain=True)
        counters.delivery("retried" if status == "retrying" else status, "none")
        return status
    except TemporaryFailure as exc:
        status = _retry_or_fail(rt, claim, str(exc))
        counters.delivery("retried" if status == "retrying" else status, reply_class(exc.code))
        return status
    # The server took it: from here on, nothing may send it again.
    _record_sent(rt, delivery_id, message_id)
    counters.delivery("sent", "2xx", time.monotonic() - claimed_at)
    return DeliveryStatus.sent.value


def throttle_of(rt: Runtime) -> Throttle:
    """The process's handle on the send rate shared by every worker."""
    settings = rt.settings
    return rt.kept(
        "sending.throttle",
        lambda: Throttle(rt.redis, settings.send_rate, settings.domain_rate_per_s),
    )


def _build(rt: Runtime, claim: Claim, edition: EditionInfo) -> tuple[str, str, bytes]:
    """The envelope sender, Message-ID and bytes of a claimed delivery's message."""
    picks = editions_of(rt).picks_for(claim.edition_id, claim.categories)
    follows_all = not split_categories(claim.categories)
    mail = editions_of(rt).mail_for(edition.week, picks, edition.kind, follows_all, edition.intro)
    unsubscribe_url, preferences_url = links_for(rt, claim.token)
    token = verp_token(rt.secret_key, claim.delivery_id)
    message_id = message_id_for(
        claim.delivery_id, edition.week, rt.settings.mail_domain, rt.secret_key, claim.token
    )
    data = build_message(
        mail,
        Recipient(claim.email, claim.name, unsubscribe_url, preferences_url),
        rt.identity,
        message_id,
        utcnow(),
        extra_headers={
            "X-Newsletter-Delivery": token,
            "Feedback-ID": rt.identity.feedback_id(edition.week, edition.kind),
        },
    )
    envelope_from = verp_address(rt.settings.bounce_local_part, rt.settings.bounce_domain, token)
    return envelope_from, message_id, data


def _retry_or_fail(rt: Runtime, claim: Claim, error: str, uncertain: bool = False) -> str:
    """Back to the queue after a backoff, or `failed` once the attempts are used up."""
    settings = rt.settings
    if claim.attempts >= settings.max_attempts:
        rt.writes.record(
            claim.delivery_id,
            Outcome(
                DeliveryStatus.failed,
                error=f"gave up after {claim.attempts} attempts: {error}",
                uncertain=uncertain,
            ),
        )
        return DeliveryStatus.failed.value
    delay_s = backoff_s(claim.attempts, settings.retry_min_s, settings.retry_max_s)
    retry_at = utcnow() + timedelta(seconds=delay_s)
    rt.writes.record(
        claim.delivery_id,
        Outcome(DeliveryStatus.queued, error=error, retry_at=retry_at, uncertain=uncertain),
    )
    return "retrying"


ACCEPTED_KEY = "newsletter:accepted"
"""Redis hash of delivery id → Message-ID: sends the server took whose sent-mark could not be
written; the sweep writes them (the database was down, Redis was not)."""


def _record_sent(rt: Runtime, delivery_id: int, message_id: str) -> None:
    """Mark a delivery the server took as sent; never raises, so nothing after an acceptance
    can put the row back in the queue.

    The writer retries a failing sent-mark (a database blip) while the claim's lease is kept;
    should the database stay away past its patience, the acceptance goes to Redis, where the
    sweep writes it before it takes anything back. Only with both stores gone does the row
    stay `sending`, to be taken back once its lease runs out: a send "in flight" (SPEC §6).
    """
    try:
        rt.writes.mark_sent(delivery_id, message_id)
        return
    except Exception as exc:
        log.error("delivery %s: accepted by the server but not recorded: %s", delivery_id, exc)
    try:
        rt.redis.hset(ACCEPTED_KEY, str(delivery_id), message_id)
    except Exception as exc:
        log.critical(
            "delivery %s: accepted by the server and recorded nowhere (%s): it may go twice",
            delivery_id,
            exc,
        )


def mark_accepted(rt: Runtime) -> int:
    """Write the sent-marks that reached only Redis (see ``_record_sent``); returns how many."""
    pending = rt.redis.hgetall(ACCEPTED_KEY)
    if not pending:
        return 0
    marked = 0
    for raw_id, raw_message_id in pending.items():
        delivery_id = int(raw_id)
        message_id = (
            raw_message_id.decode() if isinstance(raw_message_id, bytes) else raw_message_id
        )
        with rt.session() as session, session.begin():
            sending.mark_delivery(
                session,
                delivery_id,
                DeliveryStatus.sent,
                message_id=message_id,
                only_from=(DeliveryStatus.sending.value, DeliveryStatus.queued.value),
            )
        rt.redis.hdel(ACCEPTED_KEY, raw_id)
        marked += 1
    return marked


def _refused(rt: Runtime, claim: Claim, exc: RecipientRefused) -> str:
    """A 5xx at RCPT: a bounce at send time, recorded and acted on like any other."""
    facts = refusal_facts(
        exc.code,
        exc.text,
        claim.email,
        subscriber_id=claim.subscriber_id,
        delivery_id=claim.delivery_id,
        edition_id=claim.edition_id,
    )
    status = (
        DeliveryStatus.bounced if facts.kind in ("hard", "complaint") else DeliveryStatus.failed
    )
    rt.writes.record(claim.delivery_id, Outcome(status, error=str(exc)))
    with rt.session() as session, session.begin():
        record_bounce(session, facts, policy_of(rt.settings))
    return status.value
