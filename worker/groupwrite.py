"""Group commit for the delivery hot path: the claims and sent-marks of a process's threads,
written together.

Sending one delivery takes two writes: the claim before the message goes out, the outcome after.
A thread that comes to write while another thread of the process is writing leaves its work in a
list and waits; the next thread to write takes the whole list, writes it in one transaction, and
hands every waiting thread its own result. No thread goes on before its own write is committed,
so what the guarantees rest on is unchanged: a claim is committed before its message is sent, and
a killed worker leaves at most one unrecorded message per thread. What drops is the number of
transactions (and, on SQLite, the turns at the one writer lock), by as many as there are threads
waiting: under load, where it counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from worker import store
from worker.models import utcnow


class _Pending:
    """One thread's write, waiting for a transaction to carry it."""

    __slots__ = ("kind", "args", "done", "result", "error", "wake", "batch")

    def __init__(self, kind: str, args: Any) -> None:
        self.kind = kind
        self.args = args
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake: threading.Lock | None = None
        self.batch: list[_Pending] = []

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupWriter:
    """Claims and sent-marks from many threads, committed in shared transactions.

    One thread writes at a time. The others park on a lock of their own and are woken once:
    with their result, or to write the next batch, which the writer before them hands over
    (so no thread is woken just to find out that it must wait on).
    """

    def __init__(
        self, engine: Engine, lock: Callable[[], AbstractContextManager[None]], stuck_after_s: float
    ) -> None:
        self._engine = engine
        self._lock = lock
        self._conn: Connection | None = None
        self._stuck_after_s = stuck_after_s
        self._mutex = threading.Lock()
        self._waiting: list[_Pending] = []
        self._busy = False
        self.transactions = 0
        self.writes = 0

    def claim(self, delivery_id: int) -> store.Claim | None:
        """Take a delivery (see ``store.claim_deliveries``); None when it is not owed."""
        result: store.Claim | None = self._submit(_Pending("claim", delivery_id))
        return result

    def mark_sent(self, delivery_id: int, message_id: str) -> None:
        """Record a delivery this thread holds as accepted by the server (at the commit's time)."""
        self._submit(_Pending("sent", (delivery_id, message_id)))

    def _submit(self, item: _Pending) -> Any:
        with self._mutex:
            if self._busy:
                item.wake = threading.Lock()
                item.wake.acquire()
                self._waiting.append(item)
            else:
                self._busy = True
                item.batch = [item]
        if item.wake is not None:
            item.wake.acquire()  # released by a writer: done, or this thread writes next
            if item.done:
                return item.outcome()
        batch, item.batch = item.batch, []
        try:
            self._write(batch)
        finally:
            with self._mutex:
                following, self._waiting = self._waiting, []
                if following:
                    following[0].batch = following
                else:
                    self._busy = False
            for p in batch:
                if p.wake is not None:
                    p.wake.release()
            if following:
                following[0].wake.release()  # type: ignore[union-attr]
        return item.outcome()

    def _write(self, batch: list[_Pending]) -> None:
        claims = [p for p in batch if p.kind == "claim"]
        sent = [p.args for p in batch if p.kind == "sent"]
        try:
            with self._lock():
                try:
                    got = self._transaction([p.args for p in claims], sent)
                except DBAPIError as exc:
                    if not exc.connection_invalidated:
                        raise
                    # The connection died (a database restart). Once more, on a new one:
                    # either nothing was written, or the commit went through and its claims
                    # now find nothing owed (those rows wait for the sweep's stuck timeout).
                    got = self._transaction([p.args for p in claims], sent)
        except BaseException as exc:
            # Everyone in the batch learns that their write did not happen; this thread gets the
            # exception itself. An interruption aimed at this thread (a time limit, a shutdown)
            # is only this thread's: the others get a plain error saying so.
            for p in batch:
                p.error = exc if isinstance(exc, Exception) else _interrupted(exc)
                p.done = True
            raise
        self.transactions += 1
        self.writes += len(batch)
        for p in claims:
            # The same delivery asked for twice in one batch (a job and its duplicate): the
            # claim goes to the first asker only.
            p.result = got.pop(p.args, None)
        for p in batch:
            p.done = True

    def _transaction(
        self, claim_ids: list[int], sent: list[tuple[int, str]]
    ) -> dict[int, store.Claim]:
        """One transaction on the connection this writer keeps (no pool checkout, no ping)."""
        if self._conn is None or self._conn.invalidated:
            self.close()
            self._conn = self._engine.connect()
        try:
            with self._conn.begin():
                now = utcnow()
                stuck = store.stuck_before(now, self._stuck_after_s)
                got = store.claim_deliveries(self._conn, claim_ids, now, stuck) if claim_ids else {}
                if sent:
                    store.mark_sent(self._conn, sent, now)
            return got
        except BaseException:
            if self._conn.invalidated:
                self.close()
            raise

    def close(self) -> None:
        """Give the connection back."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a dead connection: nothing to give back
                pass


def _interrupted(exc: BaseException) -> Exception:
    return RuntimeError(f"the write was interrupted ({type(exc).__name__}); nothing was written")
