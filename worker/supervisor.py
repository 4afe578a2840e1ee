"""Running processes: a worker (dramatiq threads, the sweep, the bounce mailbox poller), and `up`
(everything at once)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq

from worker.actors import Actors, Sweeper, actors_of
from worker.bounces.poller import BouncePoller
from worker.runtime import Runtime

log = logging.getLogger(__name__)

PREFETCH_PER_THREAD = 8


@contextmanager
def running_worker(
    rt: Runtime, threads: int | None = None, sweep: bool = True
) -> Iterator[tuple[Actors, dramatiq.Worker]]:
    """A dramatiq worker (the periodic sweep, the bounce poller) running in this process."""
    actors = actors_of(rt)
    threads = threads or rt.settings.worker_threads
    worker = dramatiq.Worker(rt.broker, worker_threads=threads, worker_timeout=200)
    # dramatiq fetches 2 jobs per thread; once they are all in hand its consumer sleeps, in
    # growing steps, before it fetches again, and the threads run dry. Deliveries are short,
    # so hold more: a job fetched by a worker that dies goes back to the queue all the same.
    worker.queue_prefetch = max(worker.queue_prefetch, threads * PREFETCH_PER_THREAD)
    worker.start()
    sweeper = Sweeper(actors)
    poller = BouncePoller(rt)
    if sweep:
        sweeper.start()
        poller.start()
    try:
        yield actors, worker
    finally:
        poller.stop()
        sweeper.stop()
        worker.stop(timeout=30_000)
        rt.broker.close()
        if "writes" in rt.__dict__ and rt.writes.writes:
            log.info(
                "delivery writes: %d in %d transactions",
                rt.writes.writes,
                rt.writes.transactions,
            )


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.wait(1.0):
        pass


def run_worker(rt: Runtime, threads: int | None = None) -> None:
    """Consume jobs until SIGINT/SIGTERM, then finish the messages in hand and exit."""
    with running_worker(rt, threads):
        log.info(
            "worker running with %s threads (pid %s)",
            threads or rt.settings.worker_threads,
            os.getpid(),
        )
        wait_for_signal()


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    """Start ``newsletter <args>`` as a child process with our environment."""
    return subprocess.Popen([sys.executable, "-m", "worker.cli", *args])


def supervise(children: dict[str, subprocess.Popen[bytes]]) -> int:
    """Wait for Ctrl-C (or a child dying), then stop every child; returns an exit code."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    while not stop.wait(0.5):
        dead = [name for name, proc in children.items() if proc.poll() is not None]
        if dead:
            log.error(
                "%s exited (code %s); stopping the rest", dead[0], children[dead[0]].returncode
            )
            code = 1
            break
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 40
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return code
