"""Each noun's queries, called directly, on SQLite and (when configured) PostgreSQL: the
``rt`` fixture runs every test on each stack."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.factories import comparison, load, subscribe
from worker.bounces import queries as bounces
from worker.catalog import queries as catalog
from worker.models import (
    BounceEvent,
    Delivery,
    DeliveryStatus,
    EditionKind,
    EditionStatus,
    SubscriberStatus,
    utcnow,
)
from worker.runtime import Runtime
from worker.sending import queries as sending
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import SubscriberInput

NOW = utcnow()


def _ids(rt: Runtime, *emails: str) -> list[int]:
    with rt.session() as session:
        found = [subscribers.get_subscriber_by_email(session, e) for e in emails]
    return [s.id for s in found if s is not None and s.id is not None]


def _edition_with_rows(rt: Runtime, week: str, emails: list[str]) -> tuple[int, list[int]]:
    """An edition in `sending` with one queued delivery per reader; (edition id, delivery ids)."""
    load(rt, comparison("dev-duel", "Developer Tools", NOW - timedelta(days=1)))
    subscribe(rt, *[(e, "", ()) for e in emails])
    with rt.session() as session:
        [candidate] = catalog.list_candidates(session, NOW - timedelta(days=2), NOW)
    edition, created = sending.create_edition(rt.engine, week, [candidate.id], "Subject", "<p>")
    assert created and edition.id is not None
    with rt.session() as session, session.begin():
        sending.mark_edition_status(session, edition.id, EditionStatus.sending, ("draft",))
        sending.insert_deliveries(
            session,
            [
                {"edition_id": edition.id, "subscriber_id": sid, "status": "queued", "attempts": 0}
                for sid in _ids(rt, *emails)
            ],
        )
    with rt.session() as session:
        ids = session.execute(
            select(Delivery.id).where(Delivery.edition_id == edition.id).order_by(Delivery.id)
        ).scalars()
        return edition.id, [int(i) for i in ids]


def _statuses(rt: Runtime, edition_id: int) -> dict[str, int]:
    with rt.session() as session:
        return {k: v for k, v in sending.count_deliveries(session, edition_id).items() if v}


# --- catalog ------------------------------------------------------------------------------


def test_catalog_upserts_by_slug_and_lists_candidates_in_a_window(rt: Runtime) -> None:
    load(
        rt,
        comparison("old", "Writing", NOW - timedelta(days=10)),
        comparison("new", "Developer Tools", NOW - timedelta(hours=1), title="First title"),
    )
    load(rt, comparison("new", "Developer Tools", NOW - timedelta(hours=1), title="Second"))
    with rt.session() as session:
        found = catalog.list_candidates(session, NOW - timedelta(days=2), NOW)
        assert [c.category for c in found] == ["Developer Tools"]
        assert catalog.list_candidates(session, NOW, NOW + timedelta(days=1)) == []
        assert catalog.list_categories(session) == ["Developer Tools", "Writing"]
        [view] = catalog.get_comparison_views(session, [found[0].id])
        assert (view.slug, view.title) == ("new", "Second")  # updated, not duplicated
        assert catalog.get_comparison_views(session, []) == []
        assert catalog.get_comparison_views(session, [found[0].id + 1000]) == []


def test_catalog_knows_which_comparisons_a_digest_carries(rt: Runtime) -> None:
    load(rt, comparison("a", "Writing", NOW - timedelta(hours=2)))
    with rt.session() as session:
        [a] = catalog.list_candidates(session, NOW - timedelta(days=1), NOW)
    digest, _ = sending.create_edition(rt.engine, "2026-W01", [a.id], "s", "h")
    sending.create_edition(rt.engine, "alert:1", [a.id], "s", "h", kind=EditionKind.alert)
    with rt.session() as session:
        assert catalog.list_carried_ids(session) == {a.id}
        assert catalog.list_carried_ids(session, except_edition_id=digest.id) == set()


# --- subscribers --------------------------------------------------------------------------


def test_subscribers_merge_by_address_and_never_revive_a_dead_one(rt: Runtime) -> None:
    with rt.session() as session, session.begin():
        first = subscribers.merge_subscribers(
            session,
            [
                SubscriberInput("ada@example.com", "Ada", ("Writing",)),
                SubscriberInput("bob@example.com"),
                SubscriberInput("ADA@example.com", "Ada L."),  # a later row wins
            ],
            True,
            "test",
        )
    assert (first.added, first.updated, first.unchanged) == (2, 0, 0)
    [ada, bob] = _ids(rt, "ada@example.com", "bob@example.com")
    with rt.session() as session, session.begin():
        assert subscribers.mark_subscriber_status(session, bob, SubscriberStatus.bounced)
        again = subscribers.merge_subscribers(
            session,
            [SubscriberInput("Ada@Example.com", "Ada L."), SubscriberInput("bob@example.com")],
            True,
            "test",
        )
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)
    with rt.session() as session:
        found = subscribers.get_subscriber_by_email(session, "ADA@EXAMPLE.COM")
        assert found is not None and (found.id, found.name) == (ada, "Ada L.")
        assert subscribers.count_subscribers(session) == {"active": 1, "bounced": 1}
        bob_row = subscribers.get_subscriber_by_id(session, bob)
        assert bob_row is not None and bob_row.status == "bounced"
        assert subscribers.get_subscriber_by_token(session, bob_row.token) == bob_row


def test_subscriber_status_moves_follow_the_table(rt: Runtime) -> None:
    subscribe(rt, ("pat@example.com", "", ()), confirmed=False)
    [pat] = _ids(rt, "pat@example.com")
    with rt.session() as session, session.begin():
        assert subscribers.mark_subscriber_confirmed(session, pat, NOW)
        assert not subscribers.mark_subscriber_confirmed(session, pat, NOW)  # replayed
        assert subscribers.mark_subscriber_status(session, pat, SubscriberStatus.complained)
        assert not subscribers.mark_subscriber_status(session, pat, SubscriberStatus.active)
        assert not subscribers.mark_subscriber_status(session, pat, SubscriberStatus.bounced)
    with rt.session() as session:
        assert subscribers.count_subscribers(session) == {"complained": 1}


def test_keyset_pages_and_active_pages_go_by_id(rt: Runtime) -> None:
    subscribe(rt, *[(f"r{i}@example.com", "", ()) for i in range(5)])
    subscribe(rt, ("p@example.com", "", ()), confirmed=False)
    with rt.session() as session:
        page = subscribers.list_subscribers_page(session, 0, 3)
        assert [s.email for s in page] == ["r0@example.com", "r1@example.com", "r2@example.com"]
        rest = subscribers.list_subscribers_page(session, page[-1].id or 0, 10)
        assert [s.email for s in rest] == ["r3@example.com", "r4@example.com", "p@example.com"]
        pending = subscribers.list_subscribers_page(session, 0, 10, "pending")
        assert [s.email for s in pending] == ["p@example.com"]
        active = subscribers.list_active_page(session, 0, 10)
        assert len(active) == 5 and [a[0] for a in active] == sorted(a[0] for a in active)
        assert subscribers.list_active_page(session, active[1][0], 2) == active[2:4]
        assert [s.email for s in subscribers.iter_subscribers(session, page_size=2)] == [
            *(f"r{i}@example.com" for i in range(5)),
            "p@example.com",
        ]


def test_a_confirmation_mail_is_due_once_per_interval(rt: Runtime) -> None:
    subscribe(rt, ("pat@example.com", "", ()), confirmed=False)
    [pat] = _ids(rt, "pat@example.com")
    with rt.session() as session, session.begin():
        assert subscribers.mark_confirmation_due(session, pat, NOW, 600)
        assert not subscribers.mark_confirmation_due(
            session, pat, NOW + timedelta(seconds=599), 600
        )
        assert subscribers.mark_confirmation_due(session, pat, NOW + timedelta(seconds=600), 600)


def test_suppression_is_by_keyed_hash_of_the_address(rt: Runtime) -> None:
    digest = subscribers.suppression_hash(rt.secret_key, "Gone@Example.com")
    assert digest == subscribers.suppression_hash(rt.secret_key, " gone@example.COM ")
    assert digest != subscribers.suppression_hash("another-key", "gone@example.com")
    with rt.session() as session, session.begin():
        subscribers.create_suppression(session, digest, "bounced")
        subscribers.create_suppression(session, digest, "bounced")  # once
    with rt.session() as session:
        assert subscribers.is_suppressed(session, rt.secret_key, "GONE@example.com")
        assert not subscribers.is_suppressed(session, rt.secret_key, "other@example.com")


# --- sending ------------------------------------------------------------------------------


def test_an_edition_is_created_once_per_week(rt: Runtime) -> None:
    load(rt, comparison("a", "Writing", NOW - timedelta(hours=2)))
    with rt.session() as session:
        [a] = catalog.list_candidates(session, NOW - timedelta(days=1), NOW)
    first, created = sending.create_edition(rt.engine, "2026-W10", [a.id], "s", "h")
    again, created_again = sending.create_edition(rt.engine, "2026-W10", [a.id], "other", "h")
    assert (created, created_again) == (True, False)
    assert again.id == first.id and again.subject == "s"
    with rt.session() as session:
        assert sending.list_edition_comparison_ids(session, first.id or 0) == [a.id]
        assert sending.get_edition(session, "2026-W10") is not None


def test_a_claim_goes_to_one_caller_and_carries_the_reader(rt: Runtime) -> None:
    edition_id, ids = _edition_with_rows(rt, "2026-W11", ["a@example.com", "b@example.com"])
    with rt.engine.begin() as conn:
        claims = sending.claim_deliveries(conn, ids, NOW)
        assert sorted(claims) == ids
        assert [claims[i].email for i in ids] == ["a@example.com", "b@example.com"]
        assert {c.attempts for c in claims.values()} == {1}
        assert {c.edition_id for c in claims.values()} == {edition_id}
        assert sending.claim_deliveries(conn, ids, NOW) == {}  # already taken
    assert _statuses(rt, edition_id) == {"sending": 2}
    with rt.engine.begin() as conn:
        assert sending.confirm_claim(conn, ids[0], 1, NOW)
        assert not sending.confirm_claim(conn, ids[0], 2, NOW)  # another attempt's claim
        sending.mark_sent(conn, [(ids[0], "<m0@x>"), (ids[1], "<m1@x>")], NOW)
    with rt.session() as session:
        sent = sending.get_delivery_by_message_id(session, "<m1@x>")
        assert sent is not None and (sent.id, sent.status) == (ids[1], "sent")
        assert sending.finish_edition_if_done(session, edition_id) is False  # fan-out not done


def test_stuck_claims_are_taken_back_and_failed_ones_requeued(rt: Runtime) -> None:
    edition_id, ids = _edition_with_rows(rt, "2026-W12", ["a@example.com", "b@example.com"])
    with rt.engine.begin() as conn:
        sending.claim_deliveries(conn, ids, NOW)
    with rt.session() as session, session.begin():
        assert sending.release_stuck(session, edition_id, NOW) == 0  # claimed at NOW: not before
        assert sending.release_stuck(session, edition_id, NOW + timedelta(seconds=1)) == 2
        assert sending.mark_delivery(session, ids[0], DeliveryStatus.failed, only_from=("queued",))
    assert _statuses(rt, edition_id) == {"queued": 1, "failed": 1}
    with rt.session() as session, session.begin():
        assert sending.requeue_failed(session, edition_id) == 1
        row = sending.get_delivery(session, ids[0])
        assert row is not None and (row.status, row.attempts) == ("queued", 0)


def test_jobs_are_stamped_once_and_only_when_the_backoff_is_over(rt: Runtime) -> None:
    edition_id, ids = _edition_with_rows(rt, "2026-W13", [f"r{i}@example.com" for i in range(3)])
    with rt.session() as session, session.begin():
        sending.mark_delivery(
            session,
            ids[2],
            DeliveryStatus.queued,
            only_from=("queued",),
            retry_at=NOW + timedelta(minutes=5),
        )
        assert sending.stamp_jobs(session, edition_id, 0, NOW) == []
        first = sending.stamp_jobs(session, edition_id, 1, NOW)
        assert [d for d, _ in first] == [ids[0]]
        more = sending.stamp_jobs(session, edition_id, 10, NOW)
        assert [d for d, _ in more] == [ids[1]]  # ids[2] waits out its backoff
        assert sending.count_in_flight(session, edition_id) == 2
        later = sending.stamp_jobs(session, edition_id, 10, NOW + timedelta(minutes=5))
        assert [d for d, _ in later] == [ids[2]]
        jobs = first + more + later
        assert len({job for _, job in jobs}) == 3
        carried = sending.list_carried(session, edition_id, NOW + timedelta(minutes=6))
        assert sorted(carried) == sorted(jobs)
        assert sending.list_carried(session, edition_id, NOW) == []
        # Only a row that still names the lost job is cleared.
        assert sending.clear_jobs(session, [(ids[0], first[0][1]), (ids[1], "other-job")]) == 1
        assert sending.count_in_flight(session, edition_id) == 2


def test_a_cancelled_edition_skips_what_is_owed_and_a_done_one_finishes(rt: Runtime) -> None:
    edition_id, ids = _edition_with_rows(rt, "2026-W14", ["a@example.com", "b@example.com"])
    with rt.session() as session, session.begin():
        assert sending.mark_fanout_done(session, edition_id) == 2
        assert sending.has_owed(session, edition_id)
        assert not sending.finish_edition_if_done(session, edition_id)
        assert sending.skip_owed(session, edition_id, "the edition was cancelled") == 2
        assert not sending.has_owed(session, edition_id)
        assert sending.finish_edition_if_done(session, edition_id)
        edition = sending.get_edition_by_id(session, edition_id)
        assert edition is not None and (edition.status, edition.total) == ("sent", 2)
    assert _statuses(rt, edition_id) == {"skipped": 2}


# --- bounces ------------------------------------------------------------------------------


def test_a_provider_event_is_recorded_once(rt: Runtime) -> None:
    fields = {
        "recipient": "a@example.com",
        "kind": "hard",
        "reason": "userunknown",
        "source": "ses",
        "diagnostic": "550",
        "received_at": NOW,
        "provider_event_id": "evt-1",
    }
    with rt.session() as session, session.begin():
        assert bounces.create_bounce_event(session, **fields)
        assert not bounces.create_bounce_event(session, **fields)
        assert bounces.create_bounce_event(session, **{**fields, "provider_event_id": None})
        assert bounces.create_bounce_event(session, **{**fields, "provider_event_id": None})
    with rt.session() as session:
        assert len(session.execute(select(BounceEvent)).scalars().all()) == 3


def test_soft_bounces_and_the_last_acceptance_of_a_subscriber(rt: Runtime) -> None:
    edition_id, [delivery] = _edition_with_rows(rt, "2026-W15", ["a@example.com"])
    [sid] = _ids(rt, "a@example.com")
    with rt.session() as session, session.begin():
        assert bounces.get_last_accepted(session, sid) is None
        for days, delayed in ((3, False), (2, True), (40, False)):
            bounces.create_bounce_event(
                session,
                subscriber_id=sid,
                recipient="a@example.com",
                kind="soft",
                reason="mailboxfull",
                source="dsn",
                diagnostic="full",
                delayed=delayed,
                received_at=NOW - timedelta(days=days),
            )
        soft = bounces.list_soft_bounces(session, sid, NOW - timedelta(days=30))
        assert sorted((NOW - b.received_at).days for b in soft) == [2, 3]
        assert sorted(b.delayed for b in soft) == [False, True]
        sending.mark_delivery(session, delivery, DeliveryStatus.sent, only_from=("queued",))
    with rt.session() as session, session.begin():
        sent_at = bounces.get_last_accepted(session, sid)
        assert sent_at is not None
        subscribers.mark_accepted(session, sid, sent_at + timedelta(hours=1))
        subscribers.mark_accepted(session, sid, sent_at - timedelta(hours=1))  # never backwards
        assert bounces.get_last_accepted(session, sid) == sent_at + timedelta(hours=1)
        assert bounces.count_bounce_kinds(session, edition_id) == {}
