"""How the pipeline hands work to the queue, without knowing the queue.

The dramatiq actors (``worker.actors.Actors``) implement this protocol; the pipeline, the
operator controls and the scheduler call it. The database stays the truth: a job only carries
the id of a row that says what is owed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Dispatch(Protocol):
    """The queue, as the pipeline sees it."""

    def start_fan_out(self, edition_id: int) -> None:
        """Have a worker give every active subscriber a delivery row (idempotent)."""
        ...

    def start_refill(self, edition_id: int) -> None:
        """Keep the edition's queue topped up and finish it when nothing is owed; one chain
        of refills per edition, however often this is called."""
        ...

    def enqueue(self, jobs: list[tuple[int, str]]) -> None:
        """One deliver job per (delivery id, job id); the job id is the broker's message id."""
        ...

    def jobs_alive(self, job_ids: Iterable[str]) -> set[str]:
        """Which of these deliver jobs the queue still holds (waiting or being run)."""
        ...

    def send_transactional(self, kind: str, subscriber_id: int) -> None:
        """Send a transactional mail (a confirmation) ahead of any edition in progress."""
        ...
