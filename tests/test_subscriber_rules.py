"""Subscriber input rules and the status-transition table, by table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.errors import InputError
from worker.models import SubscriberStatus
from worker.subscribers.rules import (
    EXPORT_COLUMNS,
    MOVES,
    NAME_MAX,
    NEVER_AGAIN,
    SubscriberInput,
    can_move,
    clean_cadence,
    clean_categories,
    clean_email,
    clean_name,
    clean_timestamp,
    email_key,
    join_categories,
    moves_into,
    read_csv,
    split_categories,
)

# --- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("ada@example.com", "ada@example.com"),
        ("  Ada@EXAMPLE.com  ", "Ada@example.com"),  # the domain is lowered, the local part kept
        ("zoë@exämple.com", "zoë@exämple.com"),
    ],
)
def test_an_address_is_normalised(raw: str, clean: str) -> None:
    assert clean_email(raw) == clean


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ada@example.com\r\nBcc: x@example.com", "email: control characters"),
        ("ada\t@example.com", "email: control characters"),
        ("", "email: an address is required"),
        ("   ", "email: an address is required"),
        ("a" * 64 + "@" + "b" * 186 + ".com", "email: the address is too long"),
        ("not-an-address", "email: "),
        ("ann@example.test", "email: "),
    ],
)
def test_a_bad_address_is_refused_naming_the_field(raw: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        clean_email(raw)
    assert str(info.value).startswith(message)


def test_an_address_of_254_characters_is_the_longest_allowed() -> None:
    local = "a" * 64
    longest = f"{local}@{'b' * 60}.{'c' * 60}.{'d' * 60}.{'e' * 2}.com"
    assert len(longest) == 254
    assert clean_email(longest) == longest
    with pytest.raises(InputError, match="too long"):
        clean_email("a" * 250 + "@b.com")  # 256


def test_the_email_key_ignores_case_and_surrounding_space() -> None:
    assert email_key("  Ada@Example.COM ") == "ada@example.com"
    assert SubscriberInput(email="Ada@Example.com").key == "ada@example.com"


# --- names, categories, cadence, times -----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [(None, ""), ("", ""), ("  Ada   Lovelace ", "Ada Lovelace"), ("x" * NAME_MAX, "x" * NAME_MAX)],
)
def test_a_name_is_squeezed(raw: str | None, clean: str) -> None:
    assert clean_name(raw) == clean


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("Eve\r\nBcc: x@example.com", "name: control characters"),
        ("Eve\u200b", "name: control characters"),  # a format character hides text
        ("x" * (NAME_MAX + 1), f"name: too long ({NAME_MAX + 1} characters, {NAME_MAX} at most)"),
    ],
)
def test_a_bad_name_is_refused(raw: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        clean_name(raw)
    assert str(info.value).startswith(message)


def test_categories_are_stripped_and_deduplicated_keeping_the_first_spelling() -> None:
    assert clean_categories([" Writing ", "writing", "", "  ", "Dev Tools", "WRITING"]) == (
        "Writing",
        "Dev Tools",
    )
    assert clean_categories(["x" * 100]) == ("x" * 100,)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["Writ\ning"], "categories: control characters"),
        (["x" * 101], "categories: a category name is too long (100 characters at most)"),
    ],
)
def test_bad_categories_are_refused(values: list[str], message: str) -> None:
    with pytest.raises(InputError) as info:
        clean_categories(values)
    assert str(info.value) == message or str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [(None, "weekly"), ("", "weekly"), ("weekly", "weekly"), (" Instant ", "instant")],
)
def test_a_cadence_defaults_to_weekly(raw: str | None, clean: str) -> None:
    assert clean_cadence(raw) == clean


def test_an_unknown_cadence_is_refused_showing_what_was_given() -> None:
    with pytest.raises(InputError, match="cadence: must be weekly or instant, got 'daily'"):
        clean_cadence("daily")


@pytest.mark.parametrize(
    ("raw", "when"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("2026-11-20T15:00:00", datetime(2026, 11, 20, 15, tzinfo=UTC)),
        (
            " 2026-11-20T15:00:00+01:00 ",
            datetime(2026, 11, 20, 15, tzinfo=timezone(timedelta(hours=1))),
        ),
    ],
)
def test_a_timestamp_is_iso_and_naive_means_utc(raw: str | None, when: datetime | None) -> None:
    parsed = clean_timestamp("created_at", raw)
    assert parsed == when
    if when is not None:
        assert parsed is not None and parsed.utcoffset() == when.utcoffset()


def test_a_bad_timestamp_names_its_field_and_shows_at_most_40_characters() -> None:
    with pytest.raises(InputError) as info:
        clean_timestamp("created_at", "yesterday")
    assert str(info.value) == "created_at: not an ISO 8601 time: 'yesterday'"
    with pytest.raises(InputError) as long:
        clean_timestamp("confirmed_at", "y" * 50)
    assert str(long.value) == f"confirmed_at: not an ISO 8601 time: {'y' * 40!r}"


def test_categories_split_and_join_on_semicolons() -> None:
    assert split_categories(" Writing ; ;Dev Tools;") == ["Writing", "Dev Tools"]
    assert split_categories("") == []
    assert join_categories(["Writing", "Dev Tools"]) == "Writing;Dev Tools"


# --- the CSV ----------------------------------------------------------------------------------


def _read(text: str) -> list[tuple[int, object]]:
    return list(read_csv(text.splitlines(keepends=True)))


def test_a_csv_yields_each_row_with_its_line_number() -> None:
    rows = _read(
        "Email,Name,Categories\n"
        "ada@example.com,Ada,Writing;Dev Tools\n"
        "bad,Bob,\n"
        '"eve@example.com","Eve\nSmith",\n'
        "zoe@example.org,,\n"
    )
    assert [line for line, _ in rows] == [2, 3, 4, 6]
    ada = rows[0][1]
    assert ada == SubscriberInput("ada@example.com", "Ada", ("Writing", "Dev Tools"), "weekly")
    assert isinstance(rows[1][1], InputError) and str(rows[1][1]).startswith("email: ")
    assert isinstance(rows[2][1], InputError) and "name: control" in str(rows[2][1])
    assert rows[3][1] == SubscriberInput("zoe@example.org")


def test_an_export_row_comes_back_whole() -> None:
    header = ",".join(EXPORT_COLUMNS)
    assert header == "email,name,status,categories,cadence,created_at,confirmed_at"
    [(line, row)] = _read(
        f"{header}\n"
        "ada@example.com,Ada,Active,Writing,instant,2026-01-02T03:04:05,2026-01-03T00:00:00\n"
    )
    assert line == 2
    assert row == SubscriberInput(
        "ada@example.com",
        "Ada",
        ("Writing",),
        "instant",
        "active",
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 3, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("ada@example.com,Ada,,lost", "status: unknown status 'lost'"),
        ("ada@example.com,Ada,,,,,,extra", "more fields than the header has"),
        ("ada@example.com,Ada,,active,daily", "cadence: "),
        ("ada@example.com,Ada,,active,weekly,then,", "created_at: not an ISO 8601 time: 'then'"),
        ("ada@example.com,Ada,,active,weekly,,soon", "confirmed_at: not an ISO 8601 time: 'soon'"),
        (",Ada,,,,,", "email: an address is required"),
    ],
)
def test_a_bad_row_is_an_error_for_that_line(row: str, message: str) -> None:
    header = "email,name,categories,status,cadence,created_at,confirmed_at"
    [(line, error)] = _read(f"{header}\n{row}\n")
    assert line == 2
    assert isinstance(error, InputError) and str(error).startswith(message), error


def test_a_csv_without_an_email_column_is_refused() -> None:
    with pytest.raises(InputError) as info:
        _read("name,categories\nAda,\n")
    assert str(info.value) == (
        "line 1: the header must have an 'email' column (email,name,categories)"
    )
    with pytest.raises(InputError, match="line 1"):
        _read("")


def test_a_csv_the_parser_cannot_read_stops_there_with_its_reason() -> None:
    rows = _read(
        "email,name\nada@example.com,Ada\nbob@example.com," + "x" * 200_000 + "\nz@x.org,\n"
    )
    assert rows[0] == (2, SubscriberInput("ada@example.com", "Ada"))
    [(line, error)] = rows[1:]  # nothing read after it
    assert line == 3
    assert str(error).startswith("unreadable CSV: field larger than field limit")


def test_an_unreadable_csv_stops_at_the_bad_line() -> None:
    rows = _read('email,name\nada@example.com,Ada\nbob@example.com,"Bob\x00\n')
    assert rows[0] == (2, SubscriberInput("ada@example.com", "Ada"))
    # Either the parser refuses the line, or the name does: never a stored control character.
    assert isinstance(rows[-1][1], InputError) and rows[-1][0] == 3


# --- status transitions -------------------------------------------------------------------

S = SubscriberStatus
ALLOWED = {
    ("pending", "active"),
    ("pending", "unsubscribed"),
    ("pending", "bounced"),
    ("pending", "complained"),
    ("active", "unsubscribed"),
    ("active", "bounced"),
    ("active", "complained"),
    ("unsubscribed", "pending"),
    ("unsubscribed", "active"),
    ("unsubscribed", "bounced"),
    ("unsubscribed", "complained"),
    ("bounced", "complained"),
}


@pytest.mark.parametrize("wanted", [s.value for s in S])
@pytest.mark.parametrize("current", [s.value for s in S])
def test_every_move_is_allowed_or_not_by_the_table(current: str, wanted: str) -> None:
    assert can_move(current, wanted) == (current == wanted or (current, wanted) in ALLOWED)


def test_a_dead_address_is_never_revived() -> None:
    assert NEVER_AGAIN == {S.bounced, S.complained}
    for status in NEVER_AGAIN:
        assert not ({S.pending, S.active} & MOVES[status])


@pytest.mark.parametrize("wanted", list(S))
def test_moves_into_lists_where_a_move_may_start(wanted: SubscriberStatus) -> None:
    expected = tuple(c for c in [s.value for s in S] if (c, wanted.value) in ALLOWED)
    assert moves_into(wanted) == expected
