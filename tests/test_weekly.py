"""The weekly fire decision, table-driven: which fire is due, whose week it is, what to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker.models import EditionStatus
from worker.sending.weekly import Action, Decision, Fire, decide, fire_times

PARIS = ZoneInfo("Europe/Paris")
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")
GRACE_S = 21600


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


@pytest.mark.parametrize(
    ("title", "crontab", "tz", "now", "fired_at", "week", "next_at"),
    [
        (
            "exactly at the fire time, the fire is the one now",
            "0 15 * * fri",
            UTC_ZONE,
            utc(2026, 11, 27, 15, 0),
            "2026-11-27T15:00:00+00:00",
            "2026-W48",
            "2026-12-04T15:00:00+00:00",
        ),
        (
            "a second before it, the fire is last week's",
            "0 15 * * fri",
            UTC_ZONE,
            utc(2026, 11, 27, 14, 59, 59),
            "2026-11-20T15:00:00+00:00",
            "2026-W47",
            "2026-11-27T15:00:00+00:00",
        ),
        (
            "the crontab is read in the configured zone",
            "0 15 * * fri",
            PARIS,
            utc(2026, 11, 27, 14, 30),
            "2026-11-27T15:00:00+01:00",
            "2026-W48",
            "2026-12-04T15:00:00+01:00",
        ),
        (
            "a catch-up on Monday after a Sunday fire is the Sunday's week",
            "0 23 * * sun",
            PARIS,
            utc(2026, 11, 29, 23, 30),  # Monday 00:30 in Paris
            "2026-11-29T23:00:00+01:00",
            "2026-W48",
            "2026-12-06T23:00:00+01:00",
        ),
        (
            "the week is counted in the zone, not in UTC",
            "30 0 * * mon",
            TOKYO,
            utc(2026, 11, 29, 16, 0),  # still Sunday in UTC, Monday 01:00 in Tokyo
            "2026-11-30T00:30:00+09:00",
            "2026-W49",
            "2026-12-07T00:30:00+09:00",
        ),
        (
            "1 January on a Friday belongs to the last ISO week of the year before",
            "0 15 * * fri",
            UTC_ZONE,
            utc(2027, 1, 1, 16, 0),
            "2027-01-01T15:00:00+00:00",
            "2026-W53",
            "2027-01-08T15:00:00+00:00",
        ),
        (
            "spring forward (Paris, last Sunday of March): before 02:30 CET would have been",
            "30 2 * * sun",
            PARIS,
            utc(2026, 3, 29, 1, 29, 59),
            "2026-03-22T02:30:00+01:00",
            "2026-W12",
            "2026-03-29T03:30:00+02:00",
        ),
        (
            "spring forward: 02:30 does not exist, the fire is at 03:30 CEST, in the same week",
            "30 2 * * sun",
            PARIS,
            utc(2026, 3, 29, 1, 30),
            "2026-03-29T03:30:00+02:00",
            "2026-W13",
            "2026-04-05T02:30:00+02:00",
        ),
        (
            "spring forward: a fire on the hour of the change happens at 03:00 CEST",
            "0 2 * * *",
            PARIS,
            utc(2026, 3, 29, 1, 0),
            "2026-03-29T03:00:00+02:00",
            "2026-W13",
            "2026-03-30T02:00:00+02:00",
        ),
        (
            "fall back (Paris, last Sunday of October): the first 02:30 (CEST)",
            "30 2 * * sun",
            PARIS,
            utc(2026, 10, 25, 0, 30),
            "2026-10-25T02:30:00+02:00",
            "2026-W43",
            "2026-10-25T02:30:00+01:00",
        ),
        (
            "fall back: between the two 02:30s, at 02:10 CET, the last fire is the first",
            "30 2 * * sun",
            PARIS,
            utc(2026, 10, 25, 1, 10),
            "2026-10-25T02:30:00+02:00",
            "2026-W43",
            "2026-10-25T02:30:00+01:00",
        ),
        (
            "fall back: the second 02:30 (CET) is a fire of the same week",
            "30 2 * * sun",
            PARIS,
            utc(2026, 10, 25, 1, 45),
            "2026-10-25T02:30:00+01:00",
            "2026-W43",
            "2026-11-01T02:30:00+01:00",
        ),
        (
            "fall back in New York a week later, the first Sunday of November",
            "30 1 * * sun",
            NEW_YORK,
            utc(2026, 11, 1, 6, 0),  # 01:00 EST: after the first 01:30, before the second
            "2026-11-01T01:30:00-04:00",
            "2026-W44",
            "2026-11-01T01:30:00-05:00",
        ),
        (
            "a crontab firing every minute",
            "* * * * *",
            UTC_ZONE,
            utc(2026, 11, 30, 8, 0, 30),
            "2026-11-30T08:00:00+00:00",
            "2026-W49",
            "2026-11-30T08:01:00+00:00",
        ),
        (
            "a crontab for 29 February looks back years",
            "0 12 29 2 *",
            UTC_ZONE,
            utc(2026, 11, 30, 8, 0),
            "2024-02-29T12:00:00+00:00",
            "2024-W09",
            "2028-02-29T12:00:00+00:00",
        ),
        (
            "a crontab that can never fire has no last fire and no next one",
            "0 0 30 2 *",
            UTC_ZONE,
            utc(2026, 11, 30, 8, 0),
            None,
            None,
            None,
        ),
    ],
)
@pytest.mark.parametrize("clock_zone", ["UTC", "configured"])
def test_the_last_fire_and_its_week(
    title: str,
    crontab: str,
    tz: ZoneInfo,
    now: datetime,
    fired_at: str | None,
    week: str | None,
    next_at: str | None,
    clock_zone: str,
) -> None:
    # The scheduler reads its clock in the configured zone, where aware times compare by wall
    # clock: the fall change's 02:10 CET comes after 02:30 CEST only when counted in UTC.
    fire = fire_times(crontab, tz, now if clock_zone == "UTC" else now.astimezone(tz))
    assert (
        fire.at.isoformat() if fire.at else None,
        fire.week,
        fire.next_at.isoformat() if fire.next_at else None,
    ) == (fired_at, week, next_at), title
    # Real local times: the zone's own offset at that instant, never a wall time that the
    # clock skipped.
    for moment in (fire.at, fire.next_at):
        if moment is not None:
            assert moment.tzinfo is tz
            assert moment == moment.astimezone(UTC).astimezone(tz)


FIRE = Fire(
    at=datetime(2026, 11, 27, 15, 0, tzinfo=PARIS),
    week="2026-W48",
    next_at=datetime(2026, 12, 4, 15, 0, tzinfo=PARIS),
)
FIRED = FIRE.at
assert FIRED is not None
NEVER = Fire(at=None, week=None, next_at=None)


def late(seconds: float) -> datetime:
    assert FIRED is not None
    return FIRED + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("title", "fire", "now", "grace_s", "status", "action"),
    [
        ("on time, no edition: send", FIRE, late(0), GRACE_S, None, Action.send),
        ("missed by 2 h, no edition: send", FIRE, late(7200), GRACE_S, None, Action.send),
        ("exactly at the grace: send", FIRE, late(GRACE_S), GRACE_S, None, Action.send),
        (
            "one second past the grace: missed",
            FIRE,
            late(GRACE_S + 1),
            GRACE_S,
            None,
            Action.missed,
        ),
        ("missed by 8 h: missed", FIRE, late(8 * 3600), GRACE_S, None, Action.missed),
        ("no grace, on time: send", FIRE, late(0), 0, None, Action.send),
        ("no grace, a second late: missed", FIRE, late(1), 0, None, Action.missed),
        ("a draft on time is sent", FIRE, late(0), GRACE_S, EditionStatus.draft, Action.send),
        (
            "a draft within the grace is sent",
            FIRE,
            late(GRACE_S),
            GRACE_S,
            EditionStatus.draft,
            Action.send,
        ),
        (
            "a draft past the grace stays a draft",
            FIRE,
            late(GRACE_S + 1),
            GRACE_S,
            EditionStatus.draft,
            Action.missed,
        ),
        (
            "sending: already done",
            FIRE,
            late(0),
            GRACE_S,
            EditionStatus.sending,
            Action.already_done,
        ),
        ("sent: already done", FIRE, late(60), GRACE_S, EditionStatus.sent, Action.already_done),
        (
            "paused by an operator: the fire does not resume it",
            FIRE,
            late(60),
            GRACE_S,
            EditionStatus.paused,
            Action.already_done,
        ),
        (
            "cancelled by an operator: the fire does not revive it",
            FIRE,
            late(60),
            GRACE_S,
            EditionStatus.cancelled,
            Action.already_done,
        ),
        (
            "sent, and past the grace: done, not missed",
            FIRE,
            late(GRACE_S + 1),
            GRACE_S,
            EditionStatus.sent,
            Action.already_done,
        ),
        (
            "paused, and past the grace: done, not missed",
            FIRE,
            late(3 * 86400),
            GRACE_S,
            EditionStatus.paused,
            Action.already_done,
        ),
        ("the crontab never fired: nothing due", NEVER, late(0), GRACE_S, None, Action.nothing_due),
    ],
)
def test_what_a_fire_decides(
    title: str,
    fire: Fire,
    now: datetime,
    grace_s: int,
    status: EditionStatus | None,
    action: Action,
) -> None:
    decision = decide(fire, now, grace_s, status)
    assert decision.action is action, title
    assert decision.week == fire.week
    assert decision.next_fire_at == fire.next_at


def test_lateness_is_counted_in_real_seconds_across_the_fall_back() -> None:
    # 02:30 CEST to 02:10 CET is 40 minutes, although the wall clock went back 20.
    fire = fire_times("30 2 * * sun", PARIS, utc(2026, 10, 25, 1, 10))
    now = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=PARIS)
    assert decide(fire, now, 2400, None).action is Action.send
    assert decide(fire, now, 2399, None).action is Action.missed
    assert decide(fire, now, 2400, None).late_s == 2400


def test_what_the_log_says() -> None:
    missed = decide(FIRE, late(8 * 3600), GRACE_S, None).describe()
    assert "2026-W48" in missed and "missed" in missed and "8 h 00 min" in missed
    assert "Fri 2026-11-27 15:00 CET" in missed and "next fire Fri 2026-12-04 15:00 CET" in missed
    assert "newsletter send --week 2026-W48" in missed
    due = decide(FIRE, late(7200), GRACE_S, EditionStatus.draft).describe()
    assert "2026-W48" in due and "due" in due and "draft" in due and "2 h 00 min late" in due
    done = decide(FIRE, late(60), GRACE_S, EditionStatus.paused).describe()
    assert "already paused" in done
    assert "not fired yet" in decide(NEVER, late(0), GRACE_S, None).describe()


def run_night(crontab: str, tz: ZoneInfo, start: datetime, hours: int) -> list[tuple[str, str]]:
    """A scheduler asking every minute through a night, with a database of editions: sends."""
    database: dict[str, EditionStatus] = {}
    sends = []
    for minute in range(hours * 60 + 1):
        now = start + timedelta(minutes=minute)
        fire = fire_times(crontab, tz, now)
        decision = decide(fire, now, GRACE_S, database.get(fire.week or ""))
        if decision.action is Action.send:
            assert decision.week is not None and decision.fire_at is not None
            database[decision.week] = EditionStatus.sending
            sends.append((decision.week, decision.fire_at.isoformat()))
    return sends


@pytest.mark.parametrize(
    ("title", "start", "sends"),
    [
        (
            "spring forward: the 02:30 that does not exist is sent once, at 03:30 CEST",
            utc(2026, 3, 28, 23, 0),
            [("2026-W13", "2026-03-29T03:30:00+02:00")],
        ),
        (
            "fall back: the 02:30 that happens twice is sent once, at the first",
            utc(2026, 10, 24, 22, 0),
            [("2026-W43", "2026-10-25T02:30:00+02:00")],
        ),
    ],
)
def test_a_dst_night_sends_the_week_exactly_once(
    title: str, start: datetime, sends: list[tuple[str, str]]
) -> None:
    assert run_night("30 2 * * sun", PARIS, start, hours=6) == sends, title


def test_the_log_lines_word_for_word() -> None:
    due = decide(FIRE, late(7200), GRACE_S, EditionStatus.draft).describe()
    assert due == (
        "the weekly fire of Fri 2026-11-27 15:00 CET (2026-W48) is due, its draft, 2 h 00 min late"
    )
    fresh = decide(FIRE, late(59), GRACE_S, None).describe()
    assert fresh == "the weekly fire of Fri 2026-11-27 15:00 CET (2026-W48) is due, 59 s late"
    never = decide(Fire(None, None, None), late(0), GRACE_S, None)
    assert never == Decision(Action.nothing_due, None, None, None, 0.0, GRACE_S, None)
    assert never.describe() == "the weekly crontab has not fired yet; next fire never"
    first = Fire(None, None, FIRE.next_at)  # a new crontab: its first fire is ahead
    pending = decide(first, late(0), GRACE_S, EditionStatus.draft)
    assert pending == Decision(
        Action.nothing_due, None, None, FIRE.next_at, 0.0, GRACE_S, EditionStatus.draft
    )
    # A fire without a week is no fire either.
    assert decide(Fire(FIRE.at, None, None), late(0), GRACE_S, None).action is Action.nothing_due


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min"),
        (61, "1 min"),
        (3599, "59 min"),
        (3600, "1 h 00 min"),
        (3660, "1 h 01 min"),
        (86399, "23 h 59 min"),
        (86400, "1 d 0 h"),
        (90000, "1 d 1 h"),
        (24 * 3600 * 2 + 7200, "2 d 2 h"),
    ],
)
def test_durations_read_as_an_operator_reads_them(seconds: float, shown: str) -> None:
    from worker.sending.weekly import _duration

    assert _duration(seconds) == shown
