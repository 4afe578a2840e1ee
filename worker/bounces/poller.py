"""The bounce mailbox poller: a thread of each worker process reads the IMAP bounce mailbox
every ``NEWSLETTER_BOUNCE_POLL_INTERVAL_S``, whatever the sweep's interval.

Single flight across hosts: a poll starts only for the process that sets the Redis key
``newsletter:bounce-poll``. The key is held while the poll runs, then left to expire one
interval after the poll began, so the mailbox is read at most once per interval however many
workers run, and never by two at once.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING

from worker.bounces.intake import intake_for
from worker.bounces.mailbox import DEFAULT_TIMEOUT_S, poll
from worker.errors import NewsletterError

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger(__name__)

POLL_LOCK = "newsletter:bounce-poll"
POLL_LEASE_S = 600.0
"""Longest a poll may hold the lock: a process that died mid-poll frees it after this."""

# Shorten our own lease to what is left of the interval (or free it); never someone else's.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    if tonumber(ARGV[2]) > 0 then
        return redis.call('pexpire', KEYS[1], ARGV[2])
    end
    return redis.call('del', KEYS[1])
end
return 0
"""


def poll_mailbox(rt: Runtime) -> int:
    """Read the configured bounce mailbox once; returns how many messages were handed over."""
    settings = rt.settings
    if not settings.bounce_mailbox:
        raise NewsletterError("NEWSLETTER_BOUNCE_MAILBOX is not set")
    return poll(settings.bounce_mailbox, intake_for(rt), ca_file=settings.bounce_mailbox_ca_file)


class BouncePoller:
    """Polls the bounce mailbox on its own interval in a background thread, until stopped."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.interval_s = rt.settings.bounce_poll_interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bounce-poller", daemon=True)

    def start(self) -> None:
        """Start polling (at once, then every interval); nothing to do without a mailbox."""
        if self.rt.settings.bounce_mailbox:
            self._thread.start()

    def stop(self) -> None:
        """Stop, letting a poll in progress finish."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=DEFAULT_TIMEOUT_S + 5)

    def poll_once(self) -> int | None:
        """Poll if no process on any host did within the interval; None when skipped."""
        token = secrets.token_hex(8)
        lease_ms = int(max(self.interval_s, POLL_LEASE_S) * 1000)
        if not self.rt.redis.set(POLL_LOCK, token, nx=True, px=lease_ms):
            return None
        started = time.monotonic()
        try:
            return poll_mailbox(self.rt)
        finally:
            left_ms = int((self.interval_s - (time.monotonic() - started)) * 1000)
            self.rt.redis.eval(_RELEASE, 1, POLL_LOCK, token, max(left_ms, 0))

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                handled = self.poll_once()
                if handled:
                    log.info("bounce mailbox: %d messages processed", handled)
            except NewsletterError as exc:
                log.error("%s; trying again in %ss", exc, self.interval_s)
            except Exception:
                log.exception("bounce mailbox poll failed; trying again in %ss", self.interval_s)
            self._stopped.wait(self.interval_s)
