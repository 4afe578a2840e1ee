"""Templates + context → subject, HTML and text, compiled once per edition and category set.

MJML is compiled once per distinct set of comparisons, and its ``<mj-style inline="inline">``
rules are inlined into the elements (css-inline) so that clients which drop ``<head>`` keep
the look. What differs per subscriber (the name, the unsubscribe and preferences links) is left
in the output as slots and spliced in afterwards, which costs a few string joins per message
instead of a template render, an MJML compile and an inlining pass.
"""

from __future__ import annotations

import binascii
import html
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import jinja2
from mjml import mjml2html

from worker.catalog.views import ComparisonView
from worker.sending import digest
from worker.sending.planning import alert_key

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
SLOTS = ("name", "greeting_name", "unsubscribe_url", "preferences_url")
HTML_LIMIT_BYTES = 102 * 1024
"""Gmail clips a message's HTML past this."""
HTML_BUDGET_BYTES = 80 * 1024
"""What a digest's HTML part may weigh once quoted-printable encoded: room under the clip for
whatever a relay or a client adds."""
SLOT_ALLOWANCE_BYTES = 600  # a 200-character name escaped, or a link with its signed token


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
_ROW_EDGE = re.compile(r"(<tr\b[^>]*>|</tr>)")
# The parser puts back a table body left implicit, in every client: fourteen bytes saved each.
_TBODY = re.compile(r"</?tbody>")


def _break_lines(html_text: str) -> str:
    return _ROW_EDGE.sub("\\1\n", _TBODY.sub("", html_text))


def _split(rendered: str, marker: re.Pattern[str]) -> Spliced:
    pieces = marker.split(rendered)
    return Spliced(parts=tuple(pieces[0::2]), slots=tuple(pieces[1::2]))


_INLINE_STYLE = re.compile(r'<mj-style\s+inline="inline"\s*>(.*?)</mj-style>', re.S)


def compile_mjml(source: str) -> str:
    """MJML → HTML, with the ``<mj-style inline="inline">`` rules moved into style attributes.

    MRML keeps every mj-style in ``<head>``; MJML's ``inline="inline"`` is honoured here.
    The other style blocks (media queries, dark mode, MJML's resets) stay in ``<head>``.
    """
    css = "\n".join(_INLINE_STYLE.findall(source))
    compiled = mjml2html(_INLINE_STYLE.sub("", source))
    if not css:
        return compiled
    inliner = css_inline.CSSInliner(
        inline_style_tags=False,
        keep_style_tags=True,
        load_remote_stylesheets=False,
        extra_css=css,
        minify_css=True,
    )
    return _drop_unused_classes(inliner.inline(compiled))


_CLASS_ATTR = re.compile(r'(<[a-zA-Z][^<>]*?) class="([^"]*)"')
_CLASS_NAME = re.compile(r"\.(-?[_a-zA-Z][\w-]*)")


def _drop_unused_classes(html_text: str) -> str:
    """Remove class names that only the inlined rules used: the bytes count (quoted-printable
    makes every attribute dearer) and the styles are in the elements now. What ``<head>``
    still refers to (media queries, dark mode, Outlook fixes) is kept."""
    head = html_text[: html_text.find("</head>")]
    used = set(_CLASS_NAME.findall(head))

    def keep(match: re.Match[str]) -> str:
        names = [name for name in match.group(2).split() if name in used]
        return match.group(1) + (f' class="{" ".join(names)}"' if names else "")

    return _CLASS_ATTR.sub(keep, html_text)


def digest_subject(comparisons: Sequence[ComparisonView]) -> str:
    """The subject line of a digest: its lead comparison and how many more follow."""
    lead = comparisons[0].title
    more = len(comparisons) - 1
    return f"AI Tool Verdicts: {lead}" + (f" (+{more} more)" if more else "")


class Renderer:
    """Compiles the email templates; one per process, reused for every edition.

    ``public_url`` is the base of the web version's link, ``postal_address`` the sender's
    address for the footer (none: no line), ``intro`` the editor's line under the greeting
    when a digest is rendered without one of its own (empty: no line).
    """

    def __init__(
        self,
        templates_dir: Path = TEMPLATES_DIR,
        *,
        public_url: str = "http://localhost:8000",
        postal_address: str = "",
        intro: str = "",
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.postal_address = postal_address
        self.intro = intro
        loader = jinja2.FileSystemLoader(str(templates_dir / "email"))
        common: dict[str, Callable[..., Any]] = {
            "wrap": digest.wrap,
            "columns": digest.columns,
            "verdict_rows": digest.verdict_rows,
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
        compiled = _break_lines(compile_mjml(mjml_source))
        text = self._text.get_template(f"{template}.txt.j2").render(full)
        return RenderedMail(
            subject=subject, html=_split(compiled, marker), text=_split(text, marker)
        )

    def _context(self, heading: str, web_url: str, web: bool = False) -> dict[str, Any]:
        return {
            "heading": heading,
            "web_url": web_url,
            "postal_address": self.postal_address,
            "web": web,
            "archive_url": f"{self.public_url}/editions",
            "subscribe_url": f"{self.public_url}/subscribe",
        }

    def render_digest(
        self,
        week: str,
        comparisons: Sequence[ComparisonView],
        intro: str | None = None,
        *,
        web: bool = False,
    ) -> RenderedMail:
        """The weekly digest of ``comparisons`` for ISO week ``week``.

        ``intro`` is the editor's line for this edition; None takes the renderer's default and
        an empty string shows none. ``web``: the web version, with no greeting and no personal
        link (no slot to fill).
        """
        count = len(comparisons)
        names = ", ".join(c.title for c in comparisons[:2])
        every = digest.sections(comparisons)
        context = {
            **self._context(digest.week_label(week), f"{self.public_url}/editions/{week}", web),
            "title": f"Weekly AI Tool Verdicts — {week}",
            "preheader": f"{digest.count(count, 'side-by-side verdict')} this week: {names}",
            "intro": self.intro if intro is None else intro,
            "issue_count": digest.count(count, "comparison"),
            "footer_reason": "You get this because you subscribed to the weekly digest of "
            "Weekly AI Tool Verdicts.",
        }
        subject = digest_subject(comparisons)
        # The normal case fits the budget. Past it, drop the quotes first, then move the last
        # comparisons into an "also this week" list of links, until the mail fits.
        attempts = [(False, count)] + [(True, shown) for shown in range(count, 0, -1)]
        for compact, shown in attempts:
            mail = self.render(
                "digest",
                subject,
                {**context, "compact": compact, "sections": every[:shown], "more": every[shown:]},
            )
            if encoded_html_bytes(mail) <= HTML_BUDGET_BYTES:
                return mail
        return mail

    def render_alert(
        self,
        comparisons: ComparisonView | Sequence[ComparisonView],
        *,
        key: str | None = None,
        follows_all: bool = False,
        web: bool = False,
    ) -> RenderedMail:
        """The instant alert about one comparison or a batch published together.

        ``key`` is the alert's edition key (default: that of the first comparison), which
        names its web version; ``follows_all`` words it for a reader who follows every
        category; ``web`` renders the web version (no greeting, no personal link).
        """
        views = [comparisons] if isinstance(comparisons, ComparisonView) else list(comparisons)
        key = key or alert_key(views[0].id)
        count = len(views)
        categories = sorted({v.category for v in views}, key=str.casefold)
        if web:
            intro = (
                f"{digest.count(count, 'new side-by-side comparison')}, as readers of "
                "instant alerts got " + ("it." if count == 1 else "them, published together.")
            )
        elif follows_all:
            intro = (
                f"Just published: {digest.count(count, 'new side-by-side comparison')}. "
                "You follow every category, so every new verdict comes to you as it is out."
            )
        else:
            intro = (
                f"Just published in {digest.join_words(categories)}, "
                f"{'a category' if len(categories) == 1 else 'categories'} you follow: "
                f"{digest.count(count, 'new side-by-side comparison')}."
            )
        heading = (
            f"New verdict · {views[0].category}"
            if count == 1
            else f"{digest.count(count, 'new verdict')} · {digest.join_words(categories)}"
            if len(categories) <= 3
            else f"{digest.count(count, 'new verdict')} in {len(categories)} categories"
        )
        context = {
            **self._context(heading, f"{self.public_url}/editions/{key}", web),
            "title": alert_subject(views),
            "preheader": (
                f"{views[0].tool_a.name} vs {views[0].tool_b.name}: the panel's verdict, "
                "pricing and the community vote"
                if count == 1
                else ", ".join(v.title for v in views[:3])
            ),
            "intro": intro,
            "issue_count": digest.count(count, "comparison"),
            "footer_reason": "You get this because you asked for instant alerts from "
            "Weekly AI Tool Verdicts"
            + (", on every category." if follows_all else ", on the categories you chose."),
            "sections": digest.sections(views),
            "compact": False,
            "more": [],
        }
        return self.render("digest", alert_subject(views), context)


def alert_subject(comparisons: ComparisonView | Sequence[ComparisonView]) -> str:
    """The subject line of an instant alert: its lead comparison and how many more came."""
    views = [comparisons] if isinstance(comparisons, ComparisonView) else list(comparisons)
    if len(views) == 1:
        return f"New verdict: {views[0].title}"
    return f"{len(views)} new verdicts: {views[0].title} (+{len(views) - 1} more)"


def encoded_html_bytes(mail: RenderedMail) -> int:
    """Size of the mail's HTML part once filled and quoted-printable encoded (CRLF line ends),
    allowing generously for the slot values."""
    filled = mail.html.fill(dict.fromkeys(mail.html.slots, "x" * SLOT_ALLOWANCE_BYTES), False)
    encoded = binascii.b2a_qp(filled.encode(), istext=True)
    return len(encoded) + encoded.count(b"\n")


def sample_values(public_url: str) -> dict[str, str]:
    """Slot values for a preview that no subscriber receives."""
    return {
        "name": "Reader",
        "greeting_name": "Reader",
        "unsubscribe_url": f"{public_url}/unsubscribe/preview",
        "preferences_url": f"{public_url}/preferences/preview",
    }
