"""What a mail shows of a comparison: plurals, the split in words, the two most telling quotes,
anchors, and the plain-text columns."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.catalog.views import ComparisonView, ReviewView, ToolView
from worker.sending import digest

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def _tool(name: str, reviews: tuple[ReviewView, ...], version: str = "1.0") -> ToolView:
    ships = sum(1 for r in reviews if r.verdict == "ship")
    return ToolView(
        name=name,
        version=version,
        category="Developer Tools",
        tagline=f"{name} tagline",
        summary="",
        pricing="Free",
        community_votes=None,
        ship_percent=round(100 * ships / len(reviews)) if reviews else None,
        reviews=reviews,
    )


def _comparison(a: tuple[ReviewView, ...], b: tuple[ReviewView, ...]) -> ComparisonView:
    return ComparisonView(
        id=1,
        slug="axolotl-v0-16-vs-mistral-3-small-24b",
        title="Axolotl v0.16 vs Mistral 3 Small (24B)",
        category="Developer Tools",
        url="https://verdicts.example.com/compare/axolotl-v0-16-vs-mistral-3-small-24b",
        published_at=NOW,
        tool_a=_tool("Axolotl", a, "v0.16"),
        tool_b=_tool("Mistral 3 Small", b, "24B"),
    )


def _r(reviewer: str, verdict: str, words: int) -> ReviewView:
    return ReviewView(reviewer, verdict, " ".join([reviewer.split()[-1].lower()] * words))


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0 comparisons"), (1, "1 comparison"), (2, "2 comparisons"), (1204, "1,204 comparisons")],
)
def test_a_count_agrees_with_its_noun(n: int, expected: str) -> None:
    assert digest.count(n, "comparison") == expected


@pytest.mark.parametrize(
    ("ships", "reviews", "expected"),
    [
        (3, 4, "3 of 4 reviewers ship it"),
        (1, 4, "1 of 4 reviewers ships it"),
        (1, 1, "1 of 1 reviewer ships it"),
        (0, 1, "0 of 1 reviewer ship it"),
        (0, 3, "0 of 3 reviewers ship it"),
        (0, 0, "No panel reviews yet"),
    ],
)
def test_the_split_reads_as_a_sentence(ships: int, reviews: int, expected: str) -> None:
    assert digest.split_words(ships, reviews) == expected


@pytest.mark.parametrize(
    ("votes", "expected"),
    [(None, "—"), (0, "0 votes"), (1, "1 vote"), (1204, "1,204 votes")],
)
def test_the_community_vote_carries_its_unit(votes: int | None, expected: str) -> None:
    assert digest.votes_words(votes) == expected


@pytest.mark.parametrize(
    ("week", "expected"),
    [
        ("2026-W48", "Week 48 · 23–29 November 2026"),
        ("2026-W40", "Week 40 · 28 September – 4 October 2026"),
        ("2026-W53", "Week 53 · 28 December 2026 – 3 January 2027"),
        ("A12", "A12"),
    ],
)
def test_a_week_is_named_by_its_days(week: str, expected: str) -> None:
    assert digest.week_label(week) == expected


def test_a_long_quote_is_cut_at_a_word_and_marked() -> None:
    text = "word " * 100
    cut = digest.shorten(text, 40)
    assert len(cut) <= 40 and cut.endswith("word…")
    assert digest.shorten("fits as it is", 40) == "fits as it is"


def test_a_split_panel_shows_one_ship_and_one_skip_about_both_tools() -> None:
    quotes = digest.telling_quotes(
        _comparison(
            (_r("The Builder", "ship", 40), _r("The Creator", "skip", 5)),
            (_r("The Skeptic", "ship", 30), _r("The Futurist", "ship", 50)),
        )
    )
    assert [(q.reviewer, q.ship, q.tool) for q in quotes] == [
        ("The Creator", False, "Axolotl v0.16"),
        ("The Futurist", True, "Mistral 3 Small 24B"),
    ]


def test_a_unanimous_panel_shows_the_two_fullest_quotes_one_per_tool() -> None:
    quotes = digest.telling_quotes(
        _comparison(
            (_r("The Builder", "ship", 10), _r("The Creator", "ship", 60)),
            (_r("The Skeptic", "ship", 5), _r("The Futurist", "ship", 20)),
        )
    )
    assert [q.reviewer for q in quotes] == ["The Creator", "The Futurist"]


def test_quotes_longer_than_a_mail_shows_tie_and_the_panel_order_decides() -> None:
    long_words = digest.QUOTE_CHARS  # every one of these is cut to the same length
    quotes = digest.telling_quotes(
        _comparison(
            (_r("The Builder", "ship", long_words), _r("The Creator", "ship", 2 * long_words)),
            (_r("The Skeptic", "ship", long_words), _r("The Futurist", "ship", 3 * long_words)),
        )
    )
    assert [q.reviewer for q in quotes] == ["The Builder", "The Skeptic"]
    assert all(len(q.text) <= digest.QUOTE_CHARS and q.text.endswith("…") for q in quotes)


def test_a_panel_without_quotes_shows_none_and_one_quote_shows_alone() -> None:
    silent = ReviewView("The Builder", "ship", "  ")
    assert digest.telling_quotes(_comparison((silent,), ())) == ()
    [only] = digest.telling_quotes(_comparison((silent,), (_r("The Skeptic", "skip", 3),)))
    assert (only.reviewer, only.ship) == ("The Skeptic", False)


def test_sections_are_numbered_with_anchors_unique_in_the_mail() -> None:
    c = _comparison((_r("The Builder", "ship", 3),), ())
    first, second = digest.sections([c, c])
    assert (first.number, second.number) == (1, 2)
    assert first.anchor == "c-axolotl-v0-16-vs-mistral-3-small-24b"
    assert second.anchor != first.anchor
    assert first.tools[0].url == c.url + "#axolotl"
    assert first.tools[1].split == "No panel reviews yet"
    assert first.tools[1].percent_words == "—"


def test_columns_wrap_inside_their_column_and_keep_the_width() -> None:
    block = digest.columns(
        "The Strategist",
        "Open-source diffusion studio with layers and inpainting",
        "Sentence-level rewrites for non-native writers",
    )
    lines = block.splitlines()
    assert len(lines) > 1 and all(len(line) <= digest.TEXT_WIDTH for line in lines)
    right_column = digest.LABEL_WIDTH + (digest.TEXT_WIDTH - digest.LABEL_WIDTH) // 2
    assert lines[0].index("Sentence-level") == right_column
    assert lines[0].index("Open-source") == digest.LABEL_WIDTH


def test_each_reviewer_has_one_row_with_a_dash_for_the_tool_they_did_not_review() -> None:
    c = _comparison(
        (_r("The Builder", "ship", 3), _r("The Creator", "skip", 3)),
        (_r("The Builder", "skip", 3), _r("The Strategist", "ship", 3)),
    )
    [section] = digest.sections([c])
    assert digest.verdict_rows(section) == [
        ("The Builder", "ship", "skip"),
        ("The Creator", "skip", "—"),
        ("The Strategist", "—", "ship"),
    ]
