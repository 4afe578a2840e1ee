"""Templates + context → subject, HTML and text, compiled once per edition and category set.

MJML is compiled once per distinct set of comparisons. What differs per subscriber (the name,
the unsubscribe and preferences links) is left in the output as slots and spliced in afterwards,
which costs a few string joins per message instead of a template render and an MJML compile.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from mjml import mjml2html

from worker.store import ComparisonView, ReviewView, ToolView

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
SLOTS = ("name", "greeting_name", "unsubscribe_url", "preferences_url")
HTML_LIMIT_BYTES = 102 * 1024
SLOT_ALLOWANCE_BYTES = 600  # a 200-character name escaped, or a link with its signed token
QUOTE_CHARS = 280


@dataclass(frozen=True)
class Spliced:
    """A rendered text with per-subscriber slots: ``parts`` interleaved with ``slots``."""

    parts: tuple[str, ...]
    slots: tuple[str, ...]

    def fill(self, values: Mapping[str, str], escape: bool) -> str:
        """The text with every slot replaced by its value (HTML-escaped when ``escape``)."""
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            value = values[slot]
            out.append(html.escape(value, quote=True) if escape else value)
            out.append(part)
        return "".join(out)


@dataclass(frozen=True)
class RenderedMail:
    """One compiled mail, still to be personalised."""

    subject: str
    html: Spliced
    text: Spliced


# MJML writes the body on one line. Line breaks between table rows are invisible (the HTML
# parser drops whitespace there), keep lines short for SMTP, and let the quoted-printable
# encoding of a message redo only the short lines that hold a reader's name or links.
_ROW_EDGE = re.compile(r"(<tr\b[^>]*>|</tr>|<tbody\b[^>]*>|</tbody>)")


def _break_lines(html_text: str) -> str:
    return _ROW_EDGE.sub("\\1\n", html_text)


def _split(rendered: str, marker: re.Pattern[str]) -> Spliced:
    pieces = marker.split(rendered)
    return Spliced(parts=tuple(pieces[0::2]), slots=tuple(pieces[1::2]))


def _pct(value: int | None) -> str:
    return "—" if value is None else f"{value}%"


def _votes(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _reviewer_split(tool: ToolView) -> str:
    if not tool.reviews:
        return "No panel reviews yet."
    ships = sum(1 for r in tool.reviews if r.verdict == "ship")
    return f"{ships} of {len(tool.reviews)} reviewers ship it."


def _best_quote(tool: ToolView) -> ReviewView | None:
    # The shortest "ship" quote reads best in a digest; fall back to any quote.
    quotes = [r for r in tool.reviews if r.quote] or []
    if not quotes:
        return None
    ships = [r for r in quotes if r.verdict == "ship"] or quotes
    chosen = min(ships, key=lambda r: len(r.quote))
    if len(chosen.quote) <= QUOTE_CHARS:
        return chosen
    cut = chosen.quote[:QUOTE_CHARS].rsplit(" ", 1)[0]
    return ReviewView(chosen.reviewer, chosen.verdict, cut + "…")


def digest_subject(comparisons: Sequence[ComparisonView]) -> str:
    """The subject line of a digest: its lead comparison and how many more follow."""
    lead = comparisons[0].title
    more = len(comparisons) - 1
    return f"AI Tool Verdicts: {lead}" + (f" (+{more} more)" if more else "")


class Renderer:
    """Compiles the email templates; one per process, reused for every edition."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR) -> None:
        loader = jinja2.FileSystemLoader(str(templates_dir / "email"))
        common: dict[str, Callable[..., Any]] = {
            "pct": _pct,
            "votes": _votes,
            "split": _reviewer_split,
            "best_quote": _best_quote,
        }
        self._html = jinja2.Environment(
            loader=loader, autoescape=True, undefined=jinja2.StrictUndefined
        )
        self._text = jinja2.Environment(
            loader=loader,
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        for env in (self._html, self._text):
            env.globals.update(common)

    def render(self, template: str, subject: str, context: Mapping[str, Any]) -> RenderedMail:
        """Render ``<template>.mjml.j2`` and ``<template>.txt.j2`` with slots left open."""
        nonce = secrets.token_hex(6)
        marker = re.compile(rf"@@{nonce}:(\w+)@@")
        slots = {name: f"@@{nonce}:{name}@@" for name in SLOTS}
        # Store content cannot forge a slot: it does not know the nonce.
        full = {**context, **slots}
        mjml_source = self._html.get_template(f"{template}.mjml.j2").render(full)
        compiled = _break_lines(mjml2html(mjml_source))
        text = self._text.get_template(f"{template}.txt.j2").render(full)
        return RenderedMail(
            subject=subject, html=_split(compiled, marker), text=_split(text, marker)
        )

    def render_digest(self, week: str, comparisons: Sequence[ComparisonView]) -> RenderedMail:
        """The weekly digest of ``comparisons`` for ISO week ``week``."""
        count = len(comparisons)
        names = ", ".join(c.title for c in comparisons[:2])
        plural = "s" if count != 1 else ""
        context = {
            "title": f"Weekly AI Tool Verdicts — {week}",
            "heading": f"Edition {week}",
            "preheader": f"{count} side-by-side verdict{plural} this week: {names}",
            "intro": (
                f"Here {'is' if count == 1 else 'are'} this week's {count} comparison{plural}: "
                "the panel's ship rate, the entry price and the community vote for each tool, "
                "side by side."
            ),
            "footer_reason": "You get this because you subscribed to the weekly digest of "
            "Weekly AI Tool Verdicts.",
        }
        subject = digest_subject(comparisons)
        # Gmail clips a message past 102 KB: drop the quotes first, then move the last
        # comparisons into an "also this week" list of links, until the mail fits.
        attempts = [(False, len(comparisons))] + [
            (True, shown) for shown in range(len(comparisons), 0, -1)
        ]
        for compact, shown in attempts:
            mail = self.render(
                "digest",
                subject,
                {
                    **context,
                    "compact": compact,
                    "comparisons": comparisons[:shown],
                    "more": comparisons[shown:],
                },
            )
            if html_bytes(mail) < HTML_LIMIT_BYTES:
                return mail
        return mail

    def render_alert(self, comparison: ComparisonView) -> RenderedMail:
        """The instant alert about one newly published comparison."""
        context = {
            "title": f"New verdict: {comparison.title}",
            "heading": f"New verdict · {comparison.category}",
            "preheader": f"{comparison.tool_a.name} vs {comparison.tool_b.name}: the panel's "
            "verdict, pricing and the community vote",
            "intro": "A new side-by-side comparison in a category you follow was just published.",
            "footer_reason": "You get this because you asked for instant alerts from "
            "Weekly AI Tool Verdicts.",
            "comparisons": [comparison],
            "compact": False,
            "more": [],
        }
        return self.render("digest", alert_subject(comparison), context)


def alert_subject(comparison: ComparisonView) -> str:
    """The subject line of an instant alert."""
    return f"New verdict: {comparison.title}"


def html_bytes(mail: RenderedMail) -> int:
    """Size of the mail's HTML once filled, allowing generously for the slot values."""
    return sum(len(part.encode()) for part in mail.html.parts) + SLOT_ALLOWANCE_BYTES * len(
        mail.html.slots
    )


def sample_values(public_url: str) -> dict[str, str]:
    """Slot values for a preview that no subscriber receives."""
    return {
        "name": "Reader",
        "greeting_name": "Reader",
        "unsubscribe_url": f"{public_url}/unsubscribe/preview",
        "preferences_url": f"{public_url}/preferences/preview",
    }


def html_size_ok(html_text: str) -> bool:
    """True when the HTML stays under Gmail's clipping size."""
    return len(html_text.encode()) < HTML_LIMIT_BYTES
