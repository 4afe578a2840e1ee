"""The digest in a real browser (headless Chromium, driven by Playwright) at 320, 375 and 600 px,
as sent and with <head> stripped (what a client that drops it shows), in light and dark.
Screenshots land in test-artifacts/email/ (gitignored) for a human to look at.

Skipped locally when Chromium is not installed; in CI (``CI`` set) a missing Chromium fails.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, ROOT
from tests.factories import view
from worker.sending.render import Renderer

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--headless"]
ARTIFACTS = ROOT / "test-artifacts" / "email"
WIDTHS = (320, 375, 600)
VALUES = {
    "name": "Ada",
    "greeting_name": "Ada",
    "unsubscribe_url": "https://news.example.com/unsubscribe/preview",
    "preferences_url": "https://news.example.com/preferences/preview",
}

# Every visible text's colour against the first opaque background behind it, as Chromium
# computes them (both from <head> and inline styles), with the WCAG 2 contrast ratio.
CONTRAST_JS = """() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(c => {
    c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
  }).reduce((acc, c, i) => acc + c * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = el => {
    for (; el; el = el.parentElement) {
      const bg = rgb(getComputedStyle(el).backgroundColor);
      if (bg.length === 3 || (bg.length === 4 && bg[3] > 0)) return bg.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.opacity === '0') continue;
    const fg = rgb(style.color).slice(0, 3), bg = behind(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    out.push({text: node.textContent.trim().slice(0, 40), fg: style.color,
              bg: 'rgb(' + bg.join(', ') + ')', ratio: (hi + 0.05) / (lo + 0.05)});
  }
  return out;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is required in CI and {CHROMIUM} is missing")
        pytest.skip(f"Chromium is not installed ({CHROMIUM}); apt-get install chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def digest_html() -> str:
    records = json.loads((DATA / "digest" / "sample.json").read_text())
    renderer = Renderer(
        public_url="https://news.example.com",
        postal_address="Weekly AI Tool Verdicts, 12 Rue de la Paix, 75002 Paris, France",
        intro="Three head-to-heads this week, and the panel could not agree on one of them.",
    )
    mail = renderer.render_digest("2026-W48", [view(r, i) for i, r in enumerate(records, 1)])
    return mail.html.fill(VALUES, escape=True)


def _without_head(html: str) -> str:
    return re.sub(r"<head>.*?</head>", "", html, flags=re.S)


def _open(browser: Any, html: str, width: int, scheme: str = "light") -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.set_content(html)
    return page


def _boxes(page: Any) -> list[list[dict[str, float]]]:
    """Per comparison: for each tool, its column's box and the top of its facts table."""
    return list(
        page.evaluate(
            """() => {
              const cols = [...document.querySelectorAll('div.col')];
              const out = [];
              for (let i = 0; i < cols.length; i += 2) {
                out.push([cols[i], cols[i + 1]].map(col => {
                  const box = col.getBoundingClientRect();
                  const facts = col.querySelector('table').getBoundingClientRect();
                  const value = col.querySelector('table td + td').getBoundingClientRect();
                  return {left: box.left, top: box.top, bottom: box.bottom, width: box.width,
                          factsTop: facts.top, valueLeft: value.left - box.left};
                }));
              }
              return out;
            }"""
        )
    )


@pytest.mark.parametrize("head", ["with-head", "head-stripped"])
@pytest.mark.parametrize("width", WIDTHS)
def test_the_digest_fits_and_puts_the_tools_side_by_side_only_where_there_is_room(
    browser: Any, digest_html: str, width: int, head: str
) -> None:
    html = digest_html if head == "with-head" else _without_head(digest_html)
    page = _open(browser, html, width)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"horizontal scroll at {width}px: {scroll_width}px wide"
    widest = page.evaluate(
        "Math.max(...[...document.body.querySelectorAll('*')]"
        ".map(e => e.getBoundingClientRect().right))"
    )
    assert widest <= width + 0.5
    comparisons = _boxes(page)
    assert len(comparisons) == 3
    for a, b in comparisons:
        if width >= 480:  # side by side, tops and facts aligned
            assert b["left"] >= a["left"] + a["width"] - 1
            assert abs(a["top"] - b["top"]) < 1
            assert abs(a["factsTop"] - b["factsTop"]) < 1
        else:  # stacked, the second below the first, the facts' values in one column
            assert b["top"] >= a["bottom"] - 1
            assert abs(a["left"] - b["left"]) < 1
            assert abs(a["valueLeft"] - b["valueLeft"]) < 1
    title = page.locator("h2").get_by_role("link", name="Pixelforge XL vs Lumen Canvas 3")
    assert title.is_visible()
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate("[...document.images].every(img => img.hasAttribute('alt'))")
    page.screenshot(path=str(ARTIFACTS / f"digest-{width}-{head}.png"), full_page=True)
    page.context.close()


def test_in_this_issue_links_reach_their_sections(browser: Any, digest_html: str) -> None:
    page = _open(browser, digest_html, 375)
    page.get_by_role("link", name="Pixelforge XL vs Lumen Canvas 3").first.click()
    top = page.evaluate(
        "document.getElementById(location.hash.slice(1)).getBoundingClientRect().top"
    )
    assert abs(top) < 2
    page.context.close()


@pytest.mark.parametrize(("scheme", "width"), [("light", 600), ("dark", 375), ("dark", 600)])
def test_every_text_keeps_a_contrast_of_4_5_in_light_and_dark(
    browser: Any, digest_html: str, scheme: str, width: int
) -> None:
    page = _open(browser, digest_html, width, scheme)
    texts = page.evaluate(CONTRAST_JS)
    assert len(texts) > 100
    failing = [t for t in texts if t["ratio"] < 4.5]
    assert not failing, failing[:5]
    page_background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (page_background == "rgb(11, 15, 25)") == (scheme == "dark")
    page.screenshot(path=str(ARTIFACTS / f"digest-{width}-{scheme}.png"), full_page=True)
    page.context.close()
