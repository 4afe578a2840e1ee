"""Group commit of claims and sent-marks: threads that write at the same moment share one
transaction, and each still gets exactly its own result (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlmodel import select

from tests.conftest import wait_until
from tests.test_resilience import publish_this_week, readers, subscribe_all, this_week
from worker import editions
from worker.groupwrite import GroupWriter
from worker.models import Delivery
from worker.runtime import Runtime, open_runtime


def owed(rt: Runtime, count: int) -> list[int]:
    """An edition fanned out to ``count`` readers, with no job carrying any delivery."""
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe_all(rt, readers(count))

    def enqueue(ids: list[int]) -> None:
        pass

    editions.start_send(
        rt, week, now, lambda edition_id: editions.fan_out(rt, edition_id, enqueue), enqueue
    )
    with rt.session() as session:
        return sorted(i for i in session.exec(select(Delivery.id)).all() if i is not None)


class Gate:
    """Holds every transaction of a writer back until opened, so that writes pile up."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failure: Exception | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            if self.failure is not None:
                raise self.failure
            yield


def run_all(calls: list[Any]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    return threads, results


def run_together(calls: list[Any]) -> list[Any]:
    """Run ``calls`` on threads at once and wait for all of them."""
    threads, results = run_all(calls)
    for thread in threads:
        thread.join(30)
    return results


def piled_up(writer: GroupWriter, gate: Gate, calls: list[Any]) -> list[Any]:
    """Run ``calls`` on threads while ``gate`` holds the first write back, so that the others
    pile up behind it; then let them through and return what each call got."""
    with gate.lock:
        threads, results = run_all(calls)
        wait_until(lambda: len(writer._waiting) == len(calls) - 1, timeout_s=10)
    for thread in threads:
        thread.join(10)
    return results


def rows(rt: Runtime) -> dict[int, Delivery]:
    with rt.session() as session:
        return {d.id or 0: d for d in session.exec(select(Delivery)).all()}


@pytest.fixture
def gated(rt: Runtime) -> Iterator[tuple[Gate, GroupWriter]]:
    """A group writer whose transactions wait behind a gate the test holds."""
    gate = Gate()
    writer = GroupWriter(rt.engine, gate, rt.settings.stuck_after_s)
    yield gate, writer
    writer.close()


def test_writes_that_pile_up_share_one_transaction_and_each_delivery_is_claimed_once(
    rt: Runtime, gated: tuple[Gate, GroupWriter]
) -> None:
    gate, writer = gated
    ids = owed(rt, 10)
    # Every delivery asked for by three threads at once (a job and two duplicates).
    claims = piled_up(writer, gate, [lambda i=i: writer.claim(i) for i in ids * 3])

    assert writer.transactions == 2  # the first asker's, then all the others' together
    won = [c for c in claims if c is not None]
    assert not [c for c in won if isinstance(c, Exception)]
    assert sorted(c.delivery_id for c in won) == ids  # each once, none twice
    assert {c.email for c in won} == set(readers(10))
    assert {d.status for d in rows(rt).values()} == {"sending"}

    # Their sent-marks, written together, each land on their own row.
    run_together(
        [lambda c=c: writer.mark_sent(c.delivery_id, f"<m{c.delivery_id}@x>") for c in won]
    )
    for delivery_id, row in rows(rt).items():
        assert (row.status, row.message_id) == ("sent", f"<m{delivery_id}@x>")
        assert row.sent_at is not None
    # A delivery that is sent is not owed: claiming it again gets nothing.
    assert writer.claim(ids[0]) is None


def test_a_failed_transaction_fails_every_write_it_carried_and_writes_nothing(
    rt: Runtime, gated: tuple[Gate, GroupWriter]
) -> None:
    gate, writer = gated
    ids = owed(rt, 6)
    gate.failure = RuntimeError("database went away")
    results = piled_up(writer, gate, [lambda i=i: writer.claim(i) for i in ids])

    assert [str(r) for r in results] == ["database went away"] * len(ids)
    assert {d.status for d in rows(rt).values()} == {"queued"}

    gate.failure = None  # the database is back: the next write goes through
    claim = writer.claim(ids[0])
    assert claim is not None and claim.delivery_id == ids[0]


def test_two_writers_racing_through_their_runtimes_claim_everything_once(rt: Runtime) -> None:
    """Two runtimes, as two worker processes have (on SQLite they queue on the lock file)."""
    ids = owed(rt, 120)
    other = open_runtime(rt.settings, redis_client=rt.redis)
    try:
        calls = [lambda i=i: rt.writes.claim(i) for i in ids]
        calls += [lambda i=i: other.writes.claim(i) for i in reversed(ids)]
        claims = run_together(calls)
    finally:
        other.close()
    assert not [c for c in claims if isinstance(c, Exception)]
    assert sorted(c.delivery_id for c in claims if c is not None) == ids
