"""What a reader sees of a comparison in a mail: facts in words, the two most telling quotes,
anchors and links, and the plain-text columns. Pure; the templates only print these.

The two most telling quotes of a comparison are chosen among every review that has a quote:

1. one that ships and one that skips, when the panel disagrees: the reader sees both sides;
2. then a pair that speaks about both tools rather than one of them twice;
3. then the pair with the most to say: quotes are scored by their length up to the length a
   mail shows (``QUOTE_CHARS``), so a long quote that would be cut anyway does not beat one
   that fits, and a one-liner loses to a reasoned verdict;
4. ties go to the panel's order.

They are shown tool A first, ship before skip.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from itertools import combinations

from worker.catalog.views import ComparisonView, ReviewView, ToolView

QUOTE_CHARS = 280
TAGLINE_CHARS = 90
TEXT_WIDTH = 72
LABEL_WIDTH = 16  # "The Strategist" and two spaces
UNKNOWN = "—"


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` and the noun that agrees with it: "1 comparison", "2 comparisons"."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def join_words(items: Sequence[str]) -> str:
    """Items as a sentence lists them: "A", "A and B", "A, B and C"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def split_words(ships: int, reviews: int) -> str:
    """The panel's split in words: "3 of 4 reviewers ship it", "1 of 1 reviewer ships it"."""
    if reviews == 0:
        return "No panel reviews yet"
    noun = "reviewer" if reviews == 1 else "reviewers"
    verb = "ships" if ships == 1 else "ship"
    return f"{ships} of {reviews} {noun} {verb} it"


def votes_words(votes: int | None) -> str:
    """The community vote with its unit, or a dash when nobody knows it."""
    return UNKNOWN if votes is None else count(votes, "vote")


def percent_words(value: int | None) -> str:
    """A panel ship percentage as the site shows it."""
    return UNKNOWN if value is None else f"{value}%"


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, marked with "…"."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.—-") + "…"


def slugify(text: str) -> str:
    """A fragment id: ASCII letters, digits and dashes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "x"


def tool_label(tool: ToolView) -> str:
    """Name and version, without repeating a version the name already carries."""
    if tool.version and tool.version not in tool.name:
        return f"{tool.name} {tool.version}"
    return tool.name


def week_label(week: str) -> str:
    """``2026-W48`` as a reader says it: "Week 48 · 23–29 November 2026"."""
    match = re.fullmatch(r"(\d{4})-W(\d{2})", week)
    if not match:
        return week
    year, number = int(match.group(1)), int(match.group(2))
    try:
        monday = date.fromisocalendar(year, number, 1)
        sunday = date.fromisocalendar(year, number, 7)
    except ValueError:
        return week
    if monday.month == sunday.month:
        span = f"{monday.day}–{sunday.day} {sunday:%B %Y}"
    elif monday.year == sunday.year:
        span = f"{monday.day} {monday:%B} – {sunday.day} {sunday:%B %Y}"
    else:
        span = f"{monday.day} {monday:%B %Y} – {sunday.day} {sunday:%B %Y}"
    return f"Week {number} · {span}"


@dataclass(frozen=True)
class Verdict:
    """One reviewer's verdict on one tool."""

    reviewer: str
    ship: bool


@dataclass(frozen=True)
class ToolCard:
    """One tool as a digest shows it."""

    label: str
    url: str
    tagline: str
    pricing: str
    percent: int | None
    ships: int
    reviews: int
    split: str
    votes: str
    verdicts: tuple[Verdict, ...]

    @property
    def percent_words(self) -> str:
        """The ship percentage as text, or a dash."""
        return percent_words(self.percent)


@dataclass(frozen=True)
class Quote:
    """A reviewer's quote, already cut to what a mail shows."""

    reviewer: str
    ship: bool
    tool: str
    text: str


@dataclass(frozen=True)
class Section:
    """One comparison in a digest: its anchor in the mail and everything it shows."""

    number: int
    anchor: str
    title: str
    category: str
    url: str
    tools: tuple[ToolCard, ToolCard]
    quotes: tuple[Quote, ...]

    @property
    def call_to_action(self) -> str:
        """The words of the comparison's one link button, naming what it opens."""
        a, b = self.tools
        return f"Compare {a.label} and {b.label}"


def tool_url(comparison: ComparisonView, tool: ToolView) -> str:
    """The tool's section on the comparison page (the site's fragments are slugged names)."""
    return f"{comparison.url}#{slugify(tool.name)}"


def _card(comparison: ComparisonView, tool: ToolView) -> ToolCard:
    ships = sum(1 for r in tool.reviews if r.verdict == "ship")
    return ToolCard(
        label=tool_label(tool),
        url=tool_url(comparison, tool),
        tagline=shorten(tool.tagline, TAGLINE_CHARS),
        pricing=tool.pricing or UNKNOWN,
        percent=tool.ship_percent,
        ships=ships,
        reviews=len(tool.reviews),
        split=split_words(ships, len(tool.reviews)),
        votes=votes_words(tool.community_votes),
        verdicts=tuple(Verdict(r.reviewer, r.verdict == "ship") for r in tool.reviews),
    )


_Candidate = tuple[int, int, ReviewView]  # (tool side, position in its panel, review)


def telling_quotes(comparison: ComparisonView) -> tuple[Quote, ...]:
    """The comparison's two most telling quotes (see the module's docstring for the rule)."""
    candidates: list[_Candidate] = [
        (side, position, review)
        for side, tool in enumerate((comparison.tool_a, comparison.tool_b))
        for position, review in enumerate(tool.reviews)
        if review.quote.strip()
    ]
    candidates.sort(key=lambda c: (c[1], c[0]))  # the panel's order, tool A first in a round

    def score(pair: tuple[_Candidate, _Candidate]) -> tuple[int, int, int]:
        (side_a, _, first), (side_b, _, second) = pair
        return (
            int(first.verdict != second.verdict),
            int(side_a != side_b),
            sum(min(len(r.quote.strip()), QUOTE_CHARS) for r in (first, second)),
        )

    if len(candidates) <= 2:
        chosen = list(candidates)
    else:
        pairs: list[tuple[_Candidate, _Candidate]] = list(combinations(candidates, 2))
        # max() keeps the first of equal pairs, and pairs come in the panel's order.
        best = max(pairs, key=score)
        chosen = list(best)
    chosen.sort(key=lambda c: (c[0], c[2].verdict != "ship"))
    labels = (tool_label(comparison.tool_a), tool_label(comparison.tool_b))
    return tuple(
        Quote(r.reviewer, r.verdict == "ship", labels[side], shorten(r.quote, QUOTE_CHARS))
        for side, _, r in chosen
    )


def sections(comparisons: Sequence[ComparisonView]) -> list[Section]:
    """The digest's sections, numbered from 1, with anchors unique within the mail."""
    out: list[Section] = []
    seen: set[str] = set()
    for number, c in enumerate(comparisons, start=1):
        anchor = "c-" + slugify(c.slug)
        if anchor in seen:
            anchor = f"{anchor}-{number}"
        seen.add(anchor)
        out.append(
            Section(
                number=number,
                anchor=anchor,
                title=c.title,
                category=c.category,
                url=c.url,
                tools=(_card(c, c.tool_a), _card(c, c.tool_b)),
                quotes=telling_quotes(c),
            )
        )
    return out


# --- plain text -------------------------------------------------------------------------------


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """``text`` wrapped to ``width`` columns; ``first`` replaces the indent of the first line."""
    return "\n".join(
        textwrap.wrap(
            " ".join(text.split()),
            width=width,
            initial_indent=indent if first is None else first,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    )


def columns(label: str, left: str, right: str, width: int = TEXT_WIDTH) -> str:
    """One row of a label and two tool columns, each wrapped inside its column."""
    tool_width = (width - LABEL_WIDTH) // 2
    cells = [
        textwrap.wrap(text, cell, break_on_hyphens=False) or [""]
        for text, cell in ((label, LABEL_WIDTH - 2), (left, tool_width - 2), (right, tool_width))
    ]
    lines = []
    for i in range(max(len(c) for c in cells)):
        row = [c[i] if i < len(c) else "" for c in cells]
        line = row[0].ljust(LABEL_WIDTH) + row[1].ljust(tool_width) + row[2]
        lines.append(line.rstrip())
    return "\n".join(lines)


def verdict_rows(section: Section) -> list[tuple[str, str, str]]:
    """(reviewer, verdict on A, verdict on B), every reviewer once, in the panel's order."""
    reviewers: dict[str, list[str]] = {}
    for side, card in enumerate(section.tools):
        for verdict in card.verdicts:
            cells = reviewers.setdefault(verdict.reviewer, [UNKNOWN, UNKNOWN])
            word = "ship" if verdict.ship else "skip"
            cells[side] = word if cells[side] == UNKNOWN else f"{cells[side]}, {word}"
    return [(name, a, b) for name, (a, b) in reviewers.items()]
