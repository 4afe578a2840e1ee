"""The delivery writer: claims, sent-marks and outcomes of a process's threads, written by one
writer thread in shared transactions (SQLite and PostgreSQL).

Threads that write at the same moment share one transaction and each gets exactly its own
result; a thread interrupted while it waits (dramatiq's time limit raises asynchronously in a
worker thread) neither blocks the others nor undoes their writes.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlmodel import select

from tests.factories import FanOutHere
from tests.test_resilience import publish_this_week, readers, subscribe_all, this_week
from worker.models import Delivery
from worker.runtime import Runtime, open_runtime
from worker.sending import control
from worker.sending.writer import DeliveryWriter


def owed(rt: Runtime, count: int) -> list[int]:
    """An edition fanned out to ``count`` readers, with no job carrying any delivery."""
    week, now = this_week()
    publish_this_week(rt, now)
    subscribe_all(rt, readers(count))

    control.start_send(rt, week, now, FanOutHere(rt, enqueue=lambda jobs: None))
    with rt.session() as session:
        return sorted(i for i in session.exec(select(Delivery.id)).all() if i is not None)


class Gate:
    """Holds the writer's transactions back until the test lets them through, one at a time
    or all at once, so that writes pile up behind them."""

    def __init__(self) -> None:
        self.arrived = threading.Semaphore(0)
        self.passes = threading.Semaphore(0)
        self.opened = False
        self.failure: Exception | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        self.arrived.release()
        if not self.opened:
            self.passes.acquire()
        if self.failure is not None:
            raise self.failure
        yield

    def transaction_waiting(self) -> None:
        """Wait until a transaction is held at the gate."""
        assert self.arrived.acquire(timeout=10), "no transaction came to the gate"

    def let_one_through(self) -> None:
        self.passes.release()

    def close(self) -> None:
        """Hold transactions back again, counting arrivals from now on."""
        self.opened = False
        self.arrived = threading.Semaphore(0)
        self.passes = threading.Semaphore(0)

    def open(self) -> None:
        self.opened = True
        for _ in range(100):
            self.passes.release()


class Calls:
    """Calls run on threads of their own, started one after the other."""

    def __init__(self, gap_s: float = 0.05) -> None:
        self.gap_s = gap_s
        self.threads: list[threading.Thread] = []
        self.results: dict[int, Any] = {}

    def start(self, call: Callable[[], Any]) -> threading.Thread:
        index = len(self.threads)

        def run() -> None:
            try:
                self.results[index] = call()
            except BaseException as exc:  # noqa: BLE001 - the test looks at what each got
                self.results[index] = exc

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()
        time.sleep(self.gap_s)  # in this order: each call waits before the next one comes
        return thread

    def join(self, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def unfinished(self) -> list[int]:
        return [i for i, thread in enumerate(self.threads) if thread.is_alive()]


def interrupt(thread: threading.Thread) -> None:
    """What dramatiq's time limit does to a worker thread: raise in it asynchronously."""
    assert thread.ident is not None
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(TimeLimitExceeded)
    )
    assert done == 1


def rows(rt: Runtime) -> dict[int, Delivery]:
    with rt.session() as session:
        return {d.id or 0: d for d in session.exec(select(Delivery)).all()}


@pytest.fixture
def gated(rt: Runtime) -> Iterator[tuple[Gate, DeliveryWriter]]:
    """A writer whose transactions wait behind a gate the test holds."""
    gate = Gate()
    writer = DeliveryWriter(rt.engine, gate, rt.settings.stuck_after_s)
    yield gate, writer
    gate.open()
    writer.close()


def test_writes_that_pile_up_share_one_transaction_and_each_gets_its_own_result(
    rt: Runtime, gated: tuple[Gate, DeliveryWriter]
) -> None:
    gate, writer = gated
    ids = owed(rt, 10)
    calls = Calls()
    calls.start(lambda: writer.claim(ids[0]))
    gate.transaction_waiting()
    # Every delivery asked for three times at once (a job and two duplicates).
    for delivery_id in ids * 3:
        calls.start(lambda i=delivery_id: writer.claim(i))
    gate.open()
    calls.join()

    assert writer.transactions == 2  # the first claim's, then all the others' together
    claims = list(calls.results.values())
    assert not [c for c in claims if isinstance(c, BaseException)]
    won = [c for c in claims if c is not None]
    assert sorted(c.delivery_id for c in won) == ids  # each once, none twice
    # Each thread got the claim of the delivery it asked for, with that reader's address.
    for index, claim in calls.results.items():
        asked = ([ids[0]] + ids * 3)[index]
        assert claim is None or claim.delivery_id == asked
    by_id = {c.delivery_id: c for c in won}
    assert [by_id[i].email for i in ids] == readers(10)
    assert {d.status for d in rows(rt).values()} == {"sending"}

    marks = Calls()
    for claim in won:
        marks.start(lambda c=claim: writer.mark_sent(c.delivery_id, f"<m{c.delivery_id}@x>"))
    marks.join()
    for delivery_id, row in rows(rt).items():
        assert (row.status, row.message_id) == ("sent", f"<m{delivery_id}@x>")
        assert row.sent_at is not None
    # A delivery that is sent is not owed: claiming it again gets nothing.
    assert writer.claim(ids[0]) is None


def test_a_failed_transaction_fails_the_claims_it_carried_and_writes_nothing(
    rt: Runtime, gated: tuple[Gate, DeliveryWriter]
) -> None:
    gate, writer = gated
    ids = owed(rt, 6)
    gate.failure = RuntimeError("database went away")
    calls = Calls()
    for delivery_id in ids:
        calls.start(lambda i=delivery_id: writer.claim(i))
    gate.open()
    calls.join()

    assert [str(r) for r in calls.results.values()] == ["database went away"] * len(ids)
    assert {d.status for d in rows(rt).values()} == {"queued"}

    gate.failure = None  # the database is back: the next write goes through
    claim = writer.claim(ids[0])
    assert claim is not None and claim.delivery_id == ids[0]


def test_a_thread_interrupted_while_it_waits_never_parks_the_others(
    rt: Runtime, gated: tuple[Gate, DeliveryWriter]
) -> None:
    gate, writer = gated
    ids = owed(rt, 8)
    calls = Calls()
    calls.start(lambda: writer.claim(ids[0]))
    gate.transaction_waiting()
    waiting = [calls.start(lambda i=i: writer.claim(i)) for i in ids[1:]]
    interrupt(waiting[0])  # the first to pile up behind the held transaction
    gate.open()
    calls.join()

    assert calls.unfinished == []
    assert isinstance(calls.results[1], TimeLimitExceeded)
    others = [calls.results[i] for i in range(len(ids)) if i != 1]
    assert sorted(c.delivery_id for c in others) == [i for i in ids if i != ids[1]]
    # Every later write still goes through.
    assert writer.claim(ids[1]) is None or rows(rt)[ids[1]].status == "sending"


def test_a_time_limit_hitting_one_thread_mid_batch_loses_no_one_elses_sent_mark(
    rt: Runtime, gated: tuple[Gate, DeliveryWriter]
) -> None:
    gate, writer = gated
    ids = owed(rt, 6)
    gate.open()
    claims = [writer.claim(i) for i in ids]
    assert all(claims)
    gate.close()

    calls = Calls()
    calls.start(lambda: writer.mark_sent(ids[0], "<m0@x>"))
    gate.transaction_waiting()
    later = [calls.start(lambda i=i: writer.mark_sent(i, f"<m{i}@x>")) for i in ids[1:]]
    gate.let_one_through()  # the first mark; the others now go together
    gate.transaction_waiting()
    interrupt(later[0])  # one thread of the batch being written
    gate.open()
    calls.join()

    assert calls.unfinished == []
    assert all(calls.results[i] is None for i in range(len(ids)) if i != 1), calls.results
    # Every mail the server took is recorded as sent, the interrupted thread's too.
    assert {row.status for row in rows(rt).values()} == {"sent"}


def test_two_writers_racing_through_their_runtimes_claim_everything_once(rt: Runtime) -> None:
    """Two runtimes, as two worker processes have (on SQLite they queue on the lock file)."""
    ids = owed(rt, 120)
    other = open_runtime(rt.settings, redis_client=rt.redis)
    try:
        calls = Calls(gap_s=0)
        for delivery_id in ids:
            calls.start(lambda i=delivery_id: rt.writes.claim(i))
            calls.start(lambda i=delivery_id: other.writes.claim(i))
        calls.join()
    finally:
        other.close()
    claims = list(calls.results.values())
    assert not [c for c in claims if isinstance(c, BaseException)]
    assert sorted(c.delivery_id for c in claims if c is not None) == ids
    # Each thread got the claim of the delivery it asked for (two threads per delivery).
    emails = dict(zip(ids, readers(len(ids)), strict=True))
    for index, claim in calls.results.items():
        asked = ids[index // 2]
        assert claim is None or (claim.delivery_id, claim.email) == (asked, emails[asked])
