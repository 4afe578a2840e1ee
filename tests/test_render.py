"""Rendering: escaped content, the 102 KB limit, and the digest in a real browser at 320/600 px."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from worker.render import HTML_LIMIT_BYTES, Renderer, html_bytes, sample_values
from worker.store import ComparisonView, ReviewView, ToolView

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")


def _view(i: int, quote_words: int = 60, title: str | None = None) -> ComparisonView:
    def tool(name: str, ships: int) -> ToolView:
        reviews = tuple(
            ReviewView(
                f"Reviewer {r}",
                "ship" if r < ships else "skip",
                " ".join(["verdict"] * quote_words),
            )
            for r in range(8)
        )
        return ToolView(
            name=name,
            version="2.0",
            category="Writing",
            tagline="t" * 120,
            summary="s" * 2000,
            pricing="Freemium",
            community_votes=1234,
            ship_percent=round(100 * ships / 8),
            reviews=reviews,
        )

    return ComparisonView(
        id=i,
        slug=f"c{i}",
        title=title or f"Comparison number {i}",
        category="Writing",
        url=f"https://verdicts.example.com/compare/c{i}",
        published_at=NOW,
        tool_a=tool(f"Alpha {i}", 6),
        tool_b=tool(f"Beta {i}", 2),
    )


def test_a_full_digest_of_ten_long_comparisons_stays_under_gmails_clip_limit() -> None:
    views = [_view(i, quote_words=45) for i in range(10)]
    mail = Renderer().render_digest("2026-W48", views)
    filled = mail.html.fill(sample_values("https://news.example.com"), escape=True)
    assert html_bytes(mail) < HTML_LIMIT_BYTES
    assert len(filled.encode()) < HTML_LIMIT_BYTES
    for view in views:  # every comparison is still there, at least as a link
        assert view.url in filled and view.title in filled
        assert view.title in mail.text.fill(sample_values("x"), escape=False)


def test_store_content_is_escaped_and_cannot_forge_a_slot() -> None:
    title = '<script>alert(1)</script> & "quotes" @@deadbeef0000:name@@'
    mail = Renderer().render_digest("2026-W48", [_view(1, title=title)])
    filled = mail.html.fill({**sample_values("x"), "name": "SLOT"}, escape=True)
    assert "<script>" not in filled
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;" in filled
    assert "@@deadbeef0000:name@@" in filled and "SLOT" not in filled.split("Hi")[0]


def test_percentages_votes_and_pricing_are_shown_as_the_site_shows_them() -> None:
    view = _view(1)
    unknown_votes = ToolView(**{**view.tool_b.__dict__, "community_votes": None})
    mail = Renderer().render_digest(
        "2026-W48", [ComparisonView(**{**view.__dict__, "tool_b": unknown_votes})]
    )
    text = mail.text.fill(sample_values("x"), escape=False)
    assert "Panel ship: 75% · Community: 1,234 · Entry: Freemium" in text
    assert "Panel ship: 25% · Community: — · Entry: Freemium" in text
    assert "6 of 8 reviewers ship it." in text


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI and {CHROMIUM} is missing")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--headless"],
        )
        yield browser.new_page()
        browser.close()


@pytest.mark.slow
@pytest.mark.parametrize("width", [320, 600])
def test_the_digest_reads_at_phone_and_desktop_widths(page: Any, width: int) -> None:
    mail = Renderer().render_digest("2026-W48", [_view(1), _view(2)])
    page.set_viewport_size({"width": width, "height": 900})
    page.set_content(mail.html.fill(sample_values("https://news.example.com"), escape=True))
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width, f"horizontal scroll at {width}px: content is {overflow}px wide"
    assert page.get_by_role("link", name="Comparison number 1").is_visible()
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate("[...document.images].every(img => img.hasAttribute('alt'))")
    artifacts = ROOT / "test-artifacts" / "email"
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / f"digest-{width}.png"), full_page=True)
