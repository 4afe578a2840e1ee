"""The delivery hot path's writes, made by one writer thread per process.

Sending one delivery takes at least two writes: the claim before the message goes out, the
outcome after. Worker threads hand them to the writer and wait on a future of their own; the
writer takes everything that piled up, writes it in one transaction (group commit), and resolves
each future. No thread goes on before its own write is committed, so a claim is committed before
its message is sent and a killed worker leaves at most one unrecorded message per thread.

The writer is a thread of its own so that nothing that happens to a worker thread can stop it:
a thread interrupted while it waits (dramatiq's time limit raises asynchronously) leaves the
others' writes alone, and a claim it no longer wants is handed back. A failed transaction fails
the claims and outcomes it carried (their jobs retry), but never a sent-mark: once the server
took a message, its sent-mark is written again until it sticks.

The writer also keeps the leases of the claims this process holds: their ``claimed_at`` is
renewed every quarter of ``NEWSLETTER_STUCK_AFTER_S``, so the sweep, which takes back only
claims nobody renewed for that long, never takes one from a live worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from worker.models import DeliveryStatus, utcnow
from worker.sending import queries as sending

log = logging.getLogger(__name__)

SENT_MARK_PATIENCE_S = 120.0
"""How long a sent-mark is written again before its caller is told it could not be."""
RETRY_PAUSE_S = (0.05, 2.0)
"""First and longest pause between attempts at a failing sent-mark (doubling)."""


_CALLBACKS = threading.Lock()
"""Guards the (rarely used) callbacks of every future."""


class _Future:
    """One write's result, waited for by one thread (a lock is the cheapest wait)."""

    __slots__ = ("_lock", "_callbacks", "done", "result", "error")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._callbacks: list[Callable[[_Future], None]] = []
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        with _CALLBACKS:
            self.done = True
            callbacks, self._callbacks = self._callbacks, []
        self._lock.release()
        for callback in callbacks:
            callback(self)

    def wait(self) -> Any:
        self._lock.acquire()
        self._lock.release()
        if self.error is not None:
            raise self.error
        return self.result

    def then(self, callback: Callable[[_Future], None]) -> None:
        """Call ``callback`` once resolved (now, if it is)."""
        with _CALLBACKS:
            if not self.done:
                self._callbacks.append(callback)
                return
        callback(self)


@dataclass
class _Write:
    """A write waiting for the writer: what to do, and the future its caller waits on."""

    kind: str  # claim | confirm | sent | outcome | release
    delivery_id: int
    args: Any
    future: _Future
    failing_since: float | None = None
    next_try: float = 0.0
    pause_s: float = RETRY_PAUSE_S[0]


@dataclass
class _Hold:
    """A claim this process holds: which attempt, and when its lease was last renewed."""

    attempts: int
    renewed: float  # time.monotonic()


@dataclass(frozen=True)
class Outcome:
    """How a held delivery ended (see ``sending.mark_delivery``)."""

    status: DeliveryStatus
    error: str | None = None
    retry_at: datetime | None = None
    uncertain: bool = False
    only_from: tuple[str, ...] = (DeliveryStatus.sending.value,)


class DeliveryWriter:
    """Claims, lease checks, sent-marks and outcomes of a process's threads, written by one
    writer thread in shared transactions."""

    def __init__(
        self,
        engine: Engine,
        lock: Callable[[], AbstractContextManager[None]],
        stuck_after_s: float,
        sent_mark_patience_s: float = SENT_MARK_PATIENCE_S,
    ) -> None:
        self._engine = engine
        self._lock = lock
        self.lease_every_s = stuck_after_s / 4
        self._patience_s = sent_mark_patience_s
        self._mutex = threading.Lock()
        self._wake = threading.Condition(self._mutex)
        self._queue: list[_Write] = []
        self._failing: list[_Write] = []
        self._held: dict[int, _Hold] = {}
        self._conn: Connection | None = None
        self._closing = False
        self.transactions = 0
        self.writes = 0
        self._thread = threading.Thread(target=self._run, name="delivery-writer", daemon=True)
        self._thread.start()

    # --- what worker threads call ---------------------------------------------------------

    def claim(self, delivery_id: int) -> sending.Claim | None:
        """Take a delivery (``sending.claim_deliveries``) and hold it; None when it is not owed."""
        write = self._submit("claim", delivery_id, None)
        try:
            claim: sending.Claim | None = write.future.wait()
        except BaseException:
            # Interrupted while waiting: whatever the writer did for us, undo it.
            write.future.then(self._abandon)
            raise
        return claim

    def still_held(self, claim: sending.Claim) -> bool:
        """True when the claim is certainly still ours: renewed lately, or confirmed now with a
        write (which also renews it). False when the sweep took it back meanwhile."""
        with self._mutex:
            hold = self._held.get(claim.delivery_id)
            fresh = hold is not None and time.monotonic() - hold.renewed < self.lease_every_s
        if fresh:
            return True
        confirmed: bool = self._submit("confirm", claim.delivery_id, claim.attempts).future.wait()
        return confirmed

    def mark_sent(self, delivery_id: int, message_id: str) -> None:
        """Record a held delivery as accepted by the server. Written again and again on
        failure; raises only once ``sent_mark_patience_s`` went by without success."""
        self._submit("sent", delivery_id, message_id).future.wait()

    def record(self, delivery_id: int, outcome: Outcome) -> bool:
        """Record how a held delivery ended; True if the row changed."""
        changed: bool = self._submit("outcome", delivery_id, outcome).future.wait()
        return changed

    def release(self, delivery_id: int) -> None:
        """Hand a held delivery back untouched (``sending.release_delivery``)."""
        self._submit("release", delivery_id, None).future.wait()

    def forget(self, delivery_id: int) -> None:
        """Stop renewing a delivery's lease: this thread is done with it, one way or another.
        A row left `sending` is then taken back by the sweep once the lease runs out."""
        with self._mutex:
            self._held.pop(delivery_id, None)

    def close(self) -> None:
        """Write what is waiting, stop the writer thread and give the connection back."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=30)
        self._close_connection()

    # --- the writer thread ----------------------------------------------------------------

    def _submit(self, kind: str, delivery_id: int, args: Any) -> _Write:
        write = _Write(kind, delivery_id, args, _Future())
        with self._wake:
            if self._closing:
                raise RuntimeError("the delivery writer is closed")
            self._queue.append(write)
            self._wake.notify()
        return write

    def _abandon(self, future: _Future) -> None:
        claim = future.result if future.error is None else None
        if isinstance(claim, sending.Claim):
            self.forget(claim.delivery_id)
            try:
                self._submit("release", claim.delivery_id, None)
            except RuntimeError:
                pass  # closing: the sweep takes it back

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing and not self._due():
                    self._wake.wait(timeout=self._tick_s())
                batch, self._queue = self._queue, []
                closing = self._closing
            now = time.monotonic()
            failing = [w for w in self._failing if w.next_try <= now]
            if failing:
                self._failing = [w for w in self._failing if w.next_try > now]
                self._write(failing, [])
            renew = self._renewals_due(now)
            if batch or renew:
                self._write(batch, renew)
            if closing and not self._queue:
                for write in self._failing:
                    write.future.resolve(error=RuntimeError("closed before the write stuck"))
                return

    def _tick_s(self) -> float | None:
        if self._failing:
            return max(0.01, min(w.next_try for w in self._failing) - time.monotonic())
        return min(1.0, self.lease_every_s / 2) if self._held else None

    def _due(self) -> bool:
        now = time.monotonic()
        if any(w.next_try <= now for w in self._failing):
            return True
        return any(now - hold.renewed >= self.lease_every_s for hold in self._held.values())

    def _renewals_due(self, now: float) -> list[int]:
        with self._mutex:
            return [i for i, h in self._held.items() if now - h.renewed >= self.lease_every_s]

    def _write(self, batch: list[_Write], renew: list[int]) -> None:
        try:
            with self._lock():
                try:
                    results = self._transaction(batch, renew)
                except DBAPIError as exc:
                    if not exc.connection_invalidated:
                        raise
                    # The connection died (a database restart). Once more, on a new one: either
                    # nothing was written, or the commit went through and its claims now find
                    # nothing owed (those rows wait for the sweep's stuck timeout).
                    results = self._transaction(batch, renew)
        except Exception as exc:
            log.warning("delivery writes failed (%d waiting): %s", len(batch), exc)
            self._failed(batch, exc)
            return
        self.transactions += 1
        self.writes += len(batch)
        now = time.monotonic()
        with self._mutex:
            for delivery_id in renew:
                if delivery_id in self._held:
                    self._held[delivery_id].renewed = now
            for write in batch:
                result = results.get(id(write))
                if write.kind == "claim" and isinstance(result, sending.Claim):
                    self._held[write.delivery_id] = _Hold(result.attempts, now)
                elif write.kind == "confirm" and result and write.delivery_id in self._held:
                    self._held[write.delivery_id].renewed = now
        for write in batch:
            write.future.resolve(results.get(id(write)))

    def _failed(self, batch: list[_Write], exc: Exception) -> None:
        now = time.monotonic()
        for write in batch:
            if write.kind != "sent":
                write.future.resolve(error=exc)
                continue
            # The server took this message: its sent-mark is tried again, never dropped.
            if write.failing_since is None:
                write.failing_since = now
            elif now - write.failing_since > self._patience_s:
                write.future.resolve(error=exc)
                continue
            write.next_try = now + write.pause_s
            write.pause_s = min(write.pause_s * 2, RETRY_PAUSE_S[1])
            self._failing.append(write)

    def _transaction(self, batch: list[_Write], renew: list[int]) -> dict[int, Any]:
        """One transaction on the connection this writer keeps (no pool checkout, no ping)."""
        if self._conn is None or self._conn.invalidated:
            self._close_connection()
            self._conn = self._engine.connect()
        conn = self._conn
        results: dict[int, Any] = {}
        try:
            with conn.begin():
                now = utcnow()
                claims = [w for w in batch if w.kind == "claim"]
                if claims:
                    got = sending.claim_deliveries(conn, [w.delivery_id for w in claims], now)
                    for write in claims:
                        # The same delivery asked for twice in one batch (a job and its
                        # duplicate): the claim goes to the first asker only.
                        results[id(write)] = got.pop(write.delivery_id, None)
                sent = [w for w in batch if w.kind == "sent"]
                if sent:
                    sending.mark_sent(conn, [(w.delivery_id, w.args) for w in sent], now)
                for write in batch:
                    if write.kind == "confirm":
                        results[id(write)] = sending.confirm_claim(
                            conn, write.delivery_id, write.args, now
                        )
                    elif write.kind == "outcome":
                        outcome: Outcome = write.args
                        results[id(write)] = sending.mark_delivery(
                            conn,
                            write.delivery_id,
                            outcome.status,
                            error=outcome.error,
                            retry_at=outcome.retry_at,
                            uncertain=outcome.uncertain,
                            only_from=outcome.only_from,
                        )
                    elif write.kind == "release":
                        sending.release_delivery(conn, write.delivery_id)
                if renew:
                    sending.renew_claims(conn, renew, now)
            return results
        except BaseException:
            if conn.invalidated:
                self._close_connection()
            raise

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a dead connection: nothing to give back
                pass
