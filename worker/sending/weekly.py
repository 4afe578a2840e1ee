"""The weekly fire decision: does a scheduler, right now, owe a week its edition?

Pure: the crontab, the time zone, the clock and what the database says about one week come in
as arguments. The scheduler asks this at start and at each fire, so a scheduler that was down
at fire time catches up, and however many schedulers ask, the week is sent once.

| the fire's week in the database | fire at most ``grace_s`` ago | longer ago   |
|---------------------------------|------------------------------|--------------|
| no edition                      | send                         | missed       |
| ``draft``                       | send                         | missed       |
| ``sending``, ``sent``           | already done                 | already done |
| ``paused``, ``cancelled``       | already done                 | already done |
| (the crontab never fired)       | nothing due                  | nothing due  |

A draft is an edition an operator created ahead of the fire (to preview it, say): it has not
gone out, so the fire sends it, as ``newsletter send`` would. A paused or cancelled edition is
an operator's call that a fire never overrides. The week a fire belongs to is the ISO week of
the fire time in the configured zone, so a catch-up on Monday after a Sunday fire sends
Sunday's week.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from worker.models import EditionStatus
from worker.sending.planning import week_of

DONE = frozenset(
    {EditionStatus.sending, EditionStatus.sent, EditionStatus.paused, EditionStatus.cancelled}
)
"""Statuses of an edition that a fire leaves alone."""

_FIRST_LOOKBACK = timedelta(hours=1)
_MAX_LOOKBACK = timedelta(days=366 * 8)
"""A crontab for 29 February fires every four years, and skips 2100: eight years covers it."""


class Action(enum.StrEnum):
    """What the scheduler does about the weekly edition, now."""

    send = "send"
    nothing_due = "nothing-due"
    already_done = "already-done"
    missed = "missed"


@dataclass(frozen=True)
class Fire:
    """The crontab's last fire at or before now (None if it never fired) and its next one.

    Times are aware and in the configured zone, as real local times: a fire APScheduler puts in
    the hour a spring change skips shows as the instant it happens (02:30 → 03:30 CEST).
    """

    at: datetime | None
    week: str | None
    next_at: datetime | None


@dataclass(frozen=True)
class Decision:
    """The answer, with what it was decided from, for the scheduler to act on and log."""

    action: Action
    week: str | None
    fire_at: datetime | None
    next_fire_at: datetime | None
    late_s: float
    grace_s: int
    status: EditionStatus | None

    def describe(self) -> str:
        """One line for the scheduler's log."""
        upcoming = f"next fire {_show(self.next_fire_at)}"
        if self.action is Action.nothing_due:
            return f"the weekly crontab has not fired yet; {upcoming}"
        fired = f"the weekly fire of {_show(self.fire_at)} ({self.week})"
        if self.action is Action.send:
            draft = ", its draft" if self.status is EditionStatus.draft else ""
            return f"{fired} is due{draft}, {_duration(self.late_s)} late"
        if self.action is Action.already_done:
            return f"{fired}: {self.week} is already {self.status}; {upcoming}"
        return (
            f"{fired} was missed: {_duration(self.late_s)} ago, beyond the grace of "
            f"{_duration(self.grace_s)} (NEWSLETTER_MISFIRE_GRACE_S); not sending it "
            f"(`newsletter send --week {self.week}` would); {upcoming}"
        )


def fire_times(crontab: str, tz: ZoneInfo, now: datetime) -> Fire:
    """The last time ``crontab`` fired in ``tz`` at or before ``now``, and the next time.

    APScheduler only looks forward, so this walks forward from ever further back until a fire
    at or before now turns up, then up to now. Both sides of a DST change are as APScheduler
    fires them: a skipped wall time fires once, at the same offset after the change; a
    repeated wall time fires twice (both in the same week, so the second finds it done).
    """
    trigger = CronTrigger.from_crontab(crontab, timezone=tz)
    now_utc = now.astimezone(UTC)
    lookback = _FIRST_LOOKBACK
    while True:
        fire = trigger.get_next_fire_time(None, (now_utc - lookback).astimezone(tz))
        if fire is None or _utc(fire) <= now_utc or lookback >= _MAX_LOOKBACK:
            break
        lookback *= 4
    last = None
    while fire is not None and _utc(fire) <= now_utc:
        last = fire
        fire = trigger.get_next_fire_time(last, last)
    at = _local(last, tz)
    return Fire(at=at, week=week_of(at, tz) if at is not None else None, next_at=_local(fire, tz))


def decide(fire: Fire, now: datetime, grace_s: int, status: EditionStatus | None) -> Decision:
    """What to do about ``fire``'s week, whose edition the database says is ``status``."""
    if fire.at is None or fire.week is None:
        return Decision(Action.nothing_due, None, None, fire.next_at, 0.0, grace_s, status)
    late_s = (_utc(now) - _utc(fire.at)).total_seconds()
    if status in DONE:
        action = Action.already_done
    elif late_s <= grace_s:
        action = Action.send
    else:
        action = Action.missed
    return Decision(action, fire.week, fire.at, fire.next_at, late_s, grace_s, status)


def _utc(moment: datetime) -> datetime:
    # Aware times in one zone compare by wall clock; across a DST change only UTC is safe.
    return moment.astimezone(UTC)


def _local(moment: datetime | None, tz: ZoneInfo) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).astimezone(tz)


def _show(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.strftime("%a %Y-%m-%d %H:%M %Z")


def _duration(seconds: float) -> str:
    """``2 h 05 min``, ``45 s``: lateness as an operator reads it."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, _ = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def schedule_words(crontab: str, tz: ZoneInfo, now: datetime) -> str:
    """When the digest goes out, as a reader reads it: "every Friday at 15:00 (UTC)", or the
    next send for a crontab that is not once a week at one time."""
    trigger = CronTrigger.from_crontab(crontab, timezone=tz)
    first = trigger.get_next_fire_time(None, now.astimezone(tz))
    if first is None:
        return "on the editors' schedule"
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    first = first.astimezone(tz)
    at = f"{first:%H:%M} ({tz.key})"
    if second is not None and second.astimezone(tz) - first == timedelta(days=7):
        return f"every {first:%A} at {at}"
    return f"on a schedule of its own; the next one on {first:%A %d %B} at {at}"
