"""The console in a real browser, as an operator uses it: headless Chromium (Playwright) against
the app served by uvicorn, while a real dramatiq worker sends to an aiosmtpd server. Sign in,
see the editions, open one, watch its counts move, pause it (no mail after it settles), resume
it (everyone mailed once), preview it at 320 px, find a subscriber's history, sign out.
Screenshots land in test-artifacts/console/ (gitignored); the browser logs no error.

Skipped locally when Chromium is not installed; in CI (``CI`` set) a missing Chromium fails.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn

from tests.conftest import ROOT, SmtpHandler, free_port, wait_until
from tests.test_resilience import publish_this_week, readers, subscribe_all, this_week
from worker.config import Settings
from worker.models import utcnow
from worker.runtime import Runtime, open_runtime
from worker.sending import control
from worker.supervisor import running_worker
from worker.web import create_app

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--headless"]
ARTIFACTS = ROOT / "test-artifacts" / "console"
READERS = 240
SEND_RATE = 20  # messages per second: slow enough to watch, pause and resume mid-edition


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


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def rt(
    make_settings: Callable[..., Settings], redis_client: redis.Redis, port: int
) -> Iterator[Runtime]:
    # The console is served over plain http here, at the public URL the browser uses.
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", send_rate=SEND_RATE)
    runtime = open_runtime(settings, redis_client=redis_client)
    yield runtime
    runtime.close()


@pytest.fixture
def site(rt: Runtime, port: int) -> Iterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(rt.settings, rt),
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


def live_number(page: Any, key: str) -> int:
    return int(page.locator(f'[data-live="{key}"]').first.inner_text().replace(",", ""))


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def confirm(page: Any, button: str) -> None:
    """Press an action's button, then "Yes" on its confirmation page."""
    page.get_by_role("button", name=f"{button}…").click()
    page.wait_for_url("**/confirm/**")
    page.get_by_role("button", name=f"Yes: {button}").click()
    page.wait_for_url("**?done=*")


def test_an_operator_watches_pauses_resumes_previews_and_finds_a_reader_in_the_console(
    browser: Any, site: str, rt: Runtime, smtp: SmtpHandler
) -> None:
    week, now = this_week()
    publish_this_week(rt, now)
    everyone = readers(READERS)
    subscribe_all(rt, everyone)
    control.ensure_edition(rt, week, utcnow())

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    with running_worker(rt, threads=4, sweep=True):
        # Sign in: the console sends a stranger to the form, then back where they were going.
        page.goto(f"{site}/admin")
        assert "/admin/login" in page.url
        page.get_by_label("Operator token").fill(rt.settings.operator_token or "")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{site}/admin")
        assert page.get_by_role("link", name=week).is_visible()
        shot(page, "01-editions")

        # Health: the worker is alive, the stores answer.
        page.get_by_role("link", name="Health").click()
        page.wait_for_url("**/admin/health")
        assert page.get_by_role("heading", name="Workers (1)").is_visible()
        shot(page, "01-health")
        page.get_by_role("link", name="Editions").click()
        page.wait_for_url(f"{site}/admin")

        # Open the edition and send it; the numbers move without a reload.
        page.get_by_role("link", name=week).click()
        page.wait_for_url(f"**/admin/editions/{week}")
        confirm(page, "Send")
        page.wait_for_function(
            "() => Number(document.querySelector('[data-live=sent]').textContent) > 0",
            timeout=30_000,
        )
        first = live_number(page, "sent")
        page.wait_for_function(
            f"() => Number(document.querySelector('[data-live=sent]').textContent) > {first}",
            timeout=30_000,
        )
        assert live_number(page, "sent") < READERS
        shot(page, "02-sending")

        # Pause: once the deliveries in workers' hands have landed, no more mail comes.
        confirm(page, "Pause")
        assert page.locator('[data-live="status"]').inner_text() == "paused"
        wait_until(lambda: control.status(rt, week).sending == 0)
        time.sleep(1.5)
        mails_after_pause = len(smtp.received)
        time.sleep(2.5)
        assert len(smtp.received) == mails_after_pause < READERS
        assert "paused by an operator" in page.content()
        shot(page, "03-paused")

        # Resume: everyone is mailed, each exactly once.
        confirm(page, "Resume")
        page.wait_for_function(
            "() => document.querySelector('[data-live=status]').textContent === 'sent'",
            timeout=60_000,
        )
        assert live_number(page, "sent") == READERS
        shot(page, "04-sent")
    mailed = [a.lower() for r in smtp.received for a in r.rcpt_tos]
    assert sorted(mailed) == sorted(everyone)

    # Preview at 320 px: nothing in the mail is wider than its frame.
    page.get_by_role("link", name="Preview and test send").click()
    page.wait_for_url("**/preview")
    frame = page.locator('iframe[data-width="320"]').element_handle().content_frame()
    assert frame is not None
    frame.wait_for_load_state()
    widest = frame.evaluate(
        "() => Math.max(document.documentElement.scrollWidth,"
        " ...[...document.querySelectorAll('body *')]"
        ".map(e => e.getBoundingClientRect().right))"
    )
    assert 0 < widest <= 320, widest
    assert "Quote" in frame.content() or frame.locator("body").inner_text()
    shot(page, "05-preview")

    # Find a reader and open their history.
    page.get_by_role("link", name="Subscribers").click()
    page.get_by_label("Address or name").fill("reader00007")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="reader00007@example.com").click()
    page.wait_for_url("**/admin/subscribers/*")
    history = page.locator("table").first.inner_text()
    assert week in history and "sent" in history
    shot(page, "06-subscriber")

    # Sign out: the console is closed again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/admin/login")
    page.goto(f"{site}/admin")
    assert "/admin/login" in page.url
    shot(page, "07-signed-out")

    context.close()
    assert problems == []
