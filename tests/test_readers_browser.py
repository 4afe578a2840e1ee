"""Reader pages in a real browser: headless Chromium, driven by Playwright, against the app
served by uvicorn. Screenshots land in test-artifacts/ (gitignored) for a human to look at.

Skipped locally when Chromium is not installed; in CI (``CI`` set) a missing Chromium fails.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.conftest import ROOT, SmtpHandler
from tests.test_readers import comparisons, confirm_path, now, subscriber  # noqa: F401 (fixtures)
from worker.config import Settings
from worker.runtime import Runtime
from worker.web import create_app

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--headless"]
ARTIFACTS = ROOT / "test-artifacts" / "readers"
WIDTHS = (375, 1280)
SNIPPET = ROOT / "tests" / "data" / "forms" / "embed_snippet.html"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(
                f"Chromium is required in CI and {CHROMIUM} is missing (apt-get install chromium)"
            )
        pytest.skip(f"Chromium is not installed ({CHROMIUM}); apt-get install chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def site(
    settings: Settings,
    rt: Runtime,
    comparisons: list[dict[str, Any]],  # noqa: F811
) -> Iterator[str]:
    """The app served by uvicorn on a free port of 127.0.0.1."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, rt),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


def _page(browser: Any, width: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900})
    return context.new_page()


def _fits(page: Any) -> bool:
    """True when nothing sticks out sideways (no horizontal scrolling)."""
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_a_reader_fills_in_the_form_and_is_told_to_check_their_inbox(
    browser: Any,
    site: str,
    rt: Runtime,
    width: int,
) -> None:
    page = _page(browser, width)
    page.goto(f"{site}/subscribe")
    assert _fits(page)
    page.get_by_label("Email address").fill(f"reader{width}@example.com")
    page.get_by_label("Name").fill("Ada")
    page.get_by_label("Writing").check()
    page.get_by_label("Instant alert").check()
    page.screenshot(path=str(ARTIFACTS / f"subscribe-{width}.png"), full_page=True)

    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    assert _fits(page)
    page.screenshot(path=str(ARTIFACTS / f"subscribe-sent-{width}.png"), full_page=True)
    page.context.close()

    reader = subscriber(rt, f"reader{width}@example.com")
    assert reader is not None
    assert (reader.status, reader.categories, reader.cadence) == ("pending", "Writing", "instant")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_mistake_is_shown_next_to_its_field(
    browser: Any, site: str, rt: Runtime, width: int
) -> None:
    page = _page(browser, width)
    page.goto(f"{site}/subscribe")
    # The browser's own check lets this through; the server's does not.
    page.get_by_label("Email address").fill("reader@localhost")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("alert").wait_for()
    email = page.get_by_label("Email address")
    assert email.get_attribute("aria-invalid") == "true"
    described = (email.get_attribute("aria-describedby") or "").split()
    assert "email-error" in described
    assert "period" in page.locator("#email-error").inner_text()
    assert email.input_value() == "reader@localhost"  # what was typed is kept
    assert _fits(page)
    page.screenshot(path=str(ARTIFACTS / f"subscribe-error-{width}.png"), full_page=True)
    page.context.close()
    assert subscriber(rt, "reader@localhost") is None


def test_the_form_works_framed_in_another_site(browser: Any, site: str, rt: Runtime) -> None:
    page = _page(browser, 1280)
    page.set_content(
        f'<h1>Pixelforge vs Lumen</h1><iframe src="{site}/subscribe?embed=1" '
        'title="Subscribe" style="width:420px;height:760px;border:1px solid #ccc">'
        "</iframe>"
    )
    frame = page.frame_locator("iframe")
    frame.get_by_label("Email address").fill("framed@example.com")
    page.screenshot(path=str(ARTIFACTS / "subscribe-embedded-form.png"))
    frame.get_by_role("button", name="Subscribe").click()
    frame.get_by_role("heading", name="Check your inbox").wait_for()
    page.screenshot(path=str(ARTIFACTS / "subscribe-embedded.png"))
    page.context.close()
    assert subscriber(rt, "framed@example.com") is not None


def test_the_readme_snippet_subscribes_from_another_origin(
    browser: Any,
    site: str,
    rt: Runtime,
) -> None:
    page = _page(browser, 375)
    page.set_content(SNIPPET.read_text().replace("https://news.example.com", site))
    page.locator("#verdicts-email").fill("snippet@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    page.context.close()
    reader = subscriber(rt, "snippet@example.com")
    assert reader is not None and reader.consent_source == "comparison-site-footer"


def test_a_reader_confirms_with_the_button_from_the_mail(
    browser: Any,
    site: str,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
) -> None:
    page = _page(browser, 375)
    page.goto(f"{site}/subscribe")
    page.get_by_label("Email address").fill("confirming@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    worker()
    [mail] = smtp.to("confirming@example.com")
    html = mail.message.get_body(preferencelist=("html",))
    assert html is not None
    (ARTIFACTS / "confirm-mail.html").write_text(str(html.get_content()))
    page.goto((ARTIFACTS / "confirm-mail.html").as_uri())
    page.screenshot(path=str(ARTIFACTS / "confirm-mail-375.png"), full_page=True)
    page.goto(site + confirm_path(smtp, "confirming@example.com"))
    page.get_by_role("heading", name="Confirm your subscription").wait_for()
    assert subscriber(rt, "confirming@example.com").status == "pending"  # type: ignore[union-attr]
    page.screenshot(path=str(ARTIFACTS / "confirm-375.png"), full_page=True)
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_role("heading", name="You are subscribed").wait_for()
    page.get_by_role("link", name="Choose what you get").click()
    page.get_by_role("heading", name="Your preferences").wait_for()
    assert re.search(r"/preferences/[\w.-]+$", page.url)
    assert _fits(page)
    page.screenshot(path=str(ARTIFACTS / "preferences-375.png"), full_page=True)
    page.context.close()
    assert subscriber(rt, "confirming@example.com").status == "active"  # type: ignore[union-attr]
