"""Rendering: the digest's size budget (measured on the real encoded part), escaped store
content, markup rules (no script, alt, lang, role=presentation, contrast), the plain-text
part against its golden file, and the per-reader slots."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.factories import view
from worker.catalog.views import ComparisonView, ReviewView, ToolView
from worker.sending.message import Identity, QpTemplate, Recipient, build_message, prepare
from worker.sending.render import (
    HTML_BUDGET_BYTES,
    RenderedMail,
    Renderer,
    encoded_html_bytes,
    sample_values,
)

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden" / "digest.txt"
PUBLIC_URL = "https://news.example.com"
POSTAL = "Weekly AI Tool Verdicts, 12 Rue de la Paix, 75002 Paris, France"
INTRO = "Three head-to-heads this week, and the panel could not agree on the fine-tuning one."
IDENTITY = Identity(
    "Weekly AI Tool Verdicts <verdicts@news.example.com>",
    "Weekly AI Tool Verdicts <verdicts.news.example.com>",
)
PERSONAS = ("The Builder", "The Skeptic", "The Futurist", "The Creator", "The Strategist")
# Long quotes in the panel's voice, several sentences each, like the site's longest.
SENTENCES = (
    "Cutting memory use forty-fold moves fine-tuning from a data-centre card to a gaming GPU.",
    "Benchmarks tuned to one batch size say little about a mixed workload on older hardware.",
    "When one researcher can adapt a sparse model at home, the large labs' lead shrinks.",
    "The licence is the moat: anything built on these weights can ship in a product.",
    "Setup still takes an afternoon of YAML before the first run, which will put many off.",
)


def _long_view(i: int) -> ComparisonView:
    """A comparison as heavy as the site makes them: five reviewers on each tool, quotes of
    about 900 characters, long taglines and titles, five-digit votes."""

    def quote(k: int) -> str:
        text = ""
        while len(text) < 900:
            text += SENTENCES[(k + len(text)) % len(SENTENCES)] + " "
        return text.strip()

    def tool(name: str, ships: int, votes: int | None) -> ToolView:
        return ToolView(
            name=name,
            version="v0.16",
            category="Developer Tools",
            tagline="Fifteen times faster mixture-of-experts fine-tuning with LoRA adapters "
            "and forty times less memory on one consumer GPU",
            summary="s" * 1500,
            pricing="Open source",
            community_votes=votes,
            ship_percent=round(100 * ships / len(PERSONAS)),
            reviews=tuple(
                ReviewView(p, "ship" if k < ships else "skip", quote(k + i))
                for k, p in enumerate(PERSONAS)
            ),
        )

    slug = f"axolotl-v0-16-vs-mistral-3-small-24b-for-edge-fine-tuning-round-{i}"
    return ComparisonView(
        id=i,
        slug=slug,
        title=f"Axolotl v0.16 vs Mistral 3 Small (24B): which one to fine-tune at the edge, #{i}",
        category="Developer Tools",
        url=f"https://verdicts.example.com/compare/{slug}",
        published_at=NOW,
        tool_a=tool(f"Axolotl {i}", 3, 12045),
        tool_b=tool(f"Mistral 3 Small {i}", 5, None),
    )


def _sample() -> list[ComparisonView]:
    records = json.loads((DATA / "digest" / "sample.json").read_text())
    return [view(record, i) for i, record in enumerate(records, start=1)]


def _renderer() -> Renderer:
    return Renderer(public_url=PUBLIC_URL, postal_address=POSTAL, intro=INTRO)


def _reader_values() -> dict[str, str]:
    return {
        "name": "Ada Lovelace",
        "greeting_name": "Ada",
        "unsubscribe_url": f"{PUBLIC_URL}/unsubscribe/preview",
        "preferences_url": f"{PUBLIC_URL}/preferences/preview",
    }


def _message(mail: RenderedMail) -> bytes:
    """The message the pipeline builds, for a reader with a long name and long signed links."""
    token = "t" * 160
    return build_message(
        prepare(mail),
        Recipient(
            "ada.lovelace@example.com",
            "Augusta Ada King, Countess of Lovelace",
            f"{PUBLIC_URL}/unsubscribe/{token}",
            f"{PUBLIC_URL}/preferences/{token}",
        ),
        IDENTITY,
        "<d1.2026-W48@news.example.com>",
        NOW,
        extra_headers={"X-Newsletter-Delivery": "d1." + "x" * 40},
    )


def _encoded_part(data: bytes, subtype: str) -> bytes:
    """The body of one part exactly as it travels (quoted-printable, CRLF)."""
    boundary = message_from_bytes(data, policy=policy.default).get_boundary()
    assert boundary
    for chunk in data.split(f"--{boundary}".encode()):
        head, sep, body = chunk.partition(b"\r\n\r\n")
        if sep and f"Content-Type: text/{subtype};".encode() in head:
            return body.removesuffix(b"\r\n")
    raise AssertionError(f"no text/{subtype} part")


def _html(mail: RenderedMail) -> str:
    return mail.html.fill(_reader_values(), escape=True)


def _text(mail: RenderedMail) -> str:
    return mail.text.fill(_reader_values(), escape=False)


def _flat(text: str) -> str:
    """Text with its wrapping undone, to look for a sentence in it."""
    return " ".join(text.split())


# --- size -------------------------------------------------------------------------------------


def test_ten_long_comparisons_fit_the_budget_in_full() -> None:
    views = [_long_view(i) for i in range(10)]
    mail = _renderer().render_digest("2026-W48", views)
    encoded = _encoded_part(_message(mail), "html")
    assert len(encoded) <= 80 * 1024, f"HTML part is {len(encoded) / 1024:.1f} KB encoded"
    assert encoded_html_bytes(mail) >= len(encoded)  # the renderer's estimate is not optimistic
    html = _html(mail)
    assert "Also this week" not in html
    for v in views:  # every comparison in full: its title, both tools and two quotes
        assert v.title in html and v.tool_a.name in html and v.tool_b.name in html
    assert html.count('class="q"') == 0  # classes only the inlined styles used are gone
    assert len(re.findall(r"<p[^>]*>“", html)) == 2 * len(views)


def test_past_the_budget_quotes_go_first_then_comparisons_become_links() -> None:
    views = [_long_view(i) for i in range(30)]
    mail = _renderer().render_digest("2026-W48", views)
    assert len(_encoded_part(_message(mail), "html")) <= HTML_BUDGET_BYTES
    html = _html(mail)
    assert "“" not in html and "Also this week" in html
    for v in views:  # every comparison is still there, at least as a link
        assert v.url in html and v.title in html
        assert v.title in _flat(_text(mail))


# --- content --------------------------------------------------------------------------------


def test_store_content_is_escaped_and_arrives_intact() -> None:
    [c] = _sample()[:1]
    hostile = '<script>alert(1)</script> & "quotes" 🚀 Café'
    review = ReviewView("The <b>Builder</b>", "ship", f"Ships it {hostile}")
    c = ComparisonView(
        **{
            **c.__dict__,
            "title": f"{hostile} @@deadbeef0000:name@@",
            "tool_a": ToolView(**{**c.tool_a.__dict__, "reviews": (review,)}),
        }
    )
    mail = _renderer().render_digest("2026-W48", [c])
    html = mail.html.fill({**_reader_values(), "name": "SLOT"}, escape=True)
    assert "<script" not in html.lower() and "<b>Builder" not in html
    assert '&lt;script&gt;alert(1)&lt;/script&gt; &amp; "quotes" 🚀 Café' in html
    assert "The &lt;b&gt;Builder&lt;/b&gt;" in html
    assert "@@deadbeef0000:name@@" in html and "SLOT" not in html
    text = _text(mail)
    assert hostile in _flat(text) and "The <b>Builder</b>" in text
    # The same bytes survive the message: the quote reads back as sent.
    received = message_from_bytes(_message(mail), policy=policy.default)
    assert hostile in _flat(received.get_body(("plain",)).get_content())
    assert "🚀 Café" in received.get_body(("html",)).get_content()


def test_the_header_shows_the_brand_the_week_the_intro_and_what_is_inside() -> None:
    views = _sample()
    html = _html(_renderer().render_digest("2026-W48", views))
    assert "Weekly AI Tool Verdicts" in html and "Week 48 · 23–29 November 2026" in html
    assert INTRO in html and "In this issue: 3 comparisons" in html
    anchors = re.findall(r'href="#([^"]+)"', html)
    assert len(anchors) == 3
    for anchor in anchors:  # each entry opens its section
        assert f'id="{anchor}"' in html


@pytest.mark.parametrize(
    ("intro", "shown"), [(None, INTRO), ("This week: one to watch.", "This week: one to watch.")]
)
def test_an_edition_can_bring_its_own_intro(intro: str | None, shown: str) -> None:
    mail = _renderer().render_digest("2026-W48", _sample(), intro=intro)
    assert shown in _html(mail) and shown in _flat(_text(mail))


def test_an_empty_intro_shows_no_line() -> None:
    mail = _renderer().render_digest("2026-W48", _sample(), intro="")
    assert INTRO not in _html(mail)
    assert _text(mail).split("Hi Ada,\n", 1)[1].startswith("\nIN THIS ISSUE")


def test_one_comparison_is_not_an_issue_list_and_says_so_in_the_singular() -> None:
    mail = _renderer().render_digest("2026-W48", _sample()[:1])
    html = _html(mail)
    assert "In this issue" not in html and "comparisons" not in html
    assert "1 side-by-side verdict this week" in html  # the preheader


def test_each_tool_shows_its_facts_in_words_and_each_verdict_as_a_badge() -> None:
    html = _html(_renderer().render_digest("2026-W48", _sample()))
    for fact in ("3 of 4 reviewers ship it", "75%", "100%", "412 votes", "1 vote", "1,530 votes"):
        assert fact in html
    assert ">—</td>" in html  # unknown community vote
    assert html.count(">SHIP</b>") + html.count(">SKIP</b>") == 4 + 4 + 3 + 3 + 3 + 3
    assert 'width="75%"' in html  # the bar, drawn with table cells


def test_one_call_to_action_per_comparison_naming_what_it_opens() -> None:
    views = _sample()
    html = _html(_renderer().render_digest("2026-W48", views))
    buttons = re.findall(r"<a [^>]*border:2px[^>]*>([^<]+)</a>", html)
    assert buttons == [
        "Compare Axolotl v0.16 and Mistral 3 Small 24B →",
        "Compare Draftsmith 2.0 and Quillwright 1.4 →",
        "Compare Pixelforge XL 1.0 and Lumen Canvas 3 →",
    ]
    for v in views:  # and each tool's name opens its section of the comparison page
        assert f'href="{v.url}#{v.tool_a.name.lower().replace(" ", "-")}"' in html


def test_the_footer_says_why_and_offers_preferences_unsubscribe_web_version_and_address() -> None:
    mail = _renderer().render_digest("2026-W48", _sample())
    html, text = _html(mail), _text(mail)
    for part in (html, _flat(text)):
        assert "You get this because you subscribed" in part
        assert f"{PUBLIC_URL}/editions/2026-W48" in part
        assert f"{PUBLIC_URL}/unsubscribe/preview" in part
        assert f"{PUBLIC_URL}/preferences/preview" in part
        assert POSTAL in part
    assert "Unsubscribe in one click" in html
    no_address = Renderer(public_url=PUBLIC_URL).render_digest("2026-W48", _sample())
    assert "Rue de la Paix" not in _html(no_address)


def test_an_alert_links_to_its_own_web_version_and_lists_nothing() -> None:
    [c] = _sample()[:1]
    mail = _renderer().render_alert(c)
    html = _html(mail)
    assert f'href="{PUBLIC_URL}/editions/A{c.id}"' in html
    assert "In this issue" not in html and "New verdict · Developer Tools" in html
    assert "3 of 4 reviewers ship it" in _text(mail)


# --- markup -----------------------------------------------------------------------------------


class _Markup(HTMLParser):
    """Tags and attributes of a document, and every text with its colour and background as
    the inline styles alone make them (what a client that drops <head> shows)."""

    VOID = {"br", "img", "meta", "link", "hr", "input", "col", "area", "base", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.pairs: list[tuple[str, str, str]] = []
        self.stack: list[tuple[str, str, str, bool]] = [("", "#000000", "#ffffff", False)]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append((tag, values))
        _, color, background, hidden = self.stack[-1]
        style = dict(
            (k.strip(), v.strip())
            for k, _, v in (d.partition(":") for d in values.get("style", "").split(";"))
            if v
        )
        if tag == "a":
            color = "#0000ee"  # a link's own colour, not inherited
        color = style.get("color", color)
        for key in ("background-color", "background"):
            found = re.search(r"#[0-9a-fA-F]{6}\b", style.get(key, ""))
            if found:
                background = found.group(0)
                break
        if "bgcolor" in values:
            background = values["bgcolor"]
        hidden = hidden or style.get("display") == "none"
        if tag not in self.VOID:
            self.stack.append((tag, color, background, hidden))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        tag, color, background, hidden = self.stack[-1]
        if data.strip() and not hidden and tag not in ("style", "title"):
            self.pairs.append((color, background, data.strip()[:40]))


def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_is_computed_as_wcag_defines_it() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def _markup(html: str) -> _Markup:
    parser = _Markup()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("kind", ["digest", "alert"])
def test_the_markup_has_no_script_alt_on_images_lang_and_presentational_tables(
    kind: str,
) -> None:
    renderer = _renderer()
    mail = (
        renderer.render_digest("2026-W48", _sample())
        if kind == "digest"
        else renderer.render_alert(_sample()[0])
    )
    markup = _markup(_html(mail))
    tags = markup.tags
    assert not [a for t, a in tags if t == "script" or any(k.startswith("on") for k in a)]
    assert all(a.get("alt") is not None for t, a in tags if t == "img")
    assert [a.get("lang") for t, a in tags if t == "html"] == ["en"]
    tables = [a for t, a in tags if t == "table"]
    assert tables and all(a.get("role") == "presentation" for a in tables)
    metas = {a.get("name"): a.get("content") for t, a in tags if t == "meta"}
    assert metas.get("color-scheme") == "light dark"


def test_every_text_keeps_a_contrast_of_4_5_with_its_background_on_inline_styles_alone() -> None:
    html = _html(_renderer().render_digest("2026-W48", _sample()))
    pairs = _markup(html).pairs
    assert len(pairs) > 100
    failing = {(fg, bg, text) for fg, bg, text in pairs if contrast(fg, bg) < 4.5}
    assert not failing
    colours = {(fg, bg) for fg, bg, _ in pairs}
    assert ("#14532d", "#dcfce7") in colours and ("#7f1d1d", "#fee2e2") in colours  # badges


def test_styles_are_inlined_so_the_look_survives_without_head() -> None:
    html = _html(_renderer().render_digest("2026-W48", _sample()))
    body = html[html.index("<body") :]
    assert "background:#dcfce7" in body  # a ship badge
    assert "display:inline-block" in body and "min-width:240px" in body  # the tool columns
    assert 'inline="inline"' not in html and "mj-style" not in html


# --- plain text -------------------------------------------------------------------------------


def test_the_plain_text_part_matches_its_golden_file() -> None:
    text = _text(_renderer().render_digest("2026-W48", _sample()))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_plain_text_lines_fit_72_columns_except_links() -> None:
    for views in (_sample(), [_long_view(i) for i in range(3)]):
        text = _text(_renderer().render_digest("2026-W48", views))
        long_lines = [
            line for line in text.splitlines() if len(line) > 72 and "https://" not in line
        ]
        assert not long_lines


def test_every_link_in_the_plain_text_is_numbered_once_at_the_end() -> None:
    text = _text(_renderer().render_digest("2026-W48", _sample()))
    body, _, links = text.rpartition("\n\n")
    numbered = re.findall(r"^\[(\d+)\] (\S+)$", links, re.M)
    assert [int(n) for n, _ in numbered] == list(range(1, 7))
    assert "https://" not in body
    for n, _ in numbered:
        assert f"[{n}]" in body


# --- slots ------------------------------------------------------------------------------------


def test_per_reader_work_is_a_fill_of_a_few_short_lines() -> None:
    mail = _renderer().render_digest("2026-W48", [_long_view(i) for i in range(10)])
    for spliced in (mail.html, mail.text):
        per_reader = [c for c in QpTemplate.of(spliced).chunks if not isinstance(c, bytes)]
        assert 1 <= len(per_reader) <= 4
        assert sum(len("".join(c.parts)) for c in per_reader) < 600


def test_sample_values_fill_every_slot() -> None:
    mail = _renderer().render_digest("2026-W48", _sample())
    assert "@@" not in mail.html.fill(sample_values(PUBLIC_URL), escape=True)
