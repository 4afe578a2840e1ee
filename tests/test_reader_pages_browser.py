"""The web version, the archive, the unsubscribed page and the 404 page in headless Chromium at
320 px: nothing wider than the viewport. Screenshots land in test-artifacts/reader-pages/.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.factories import comparison, load, send
from tests.test_readers import add_active, comparisons, link, now  # noqa: F401 (fixtures used by `site`)
from tests.test_readers_browser import _fits, _page, browser, site  # noqa: F401 (fixtures)
from worker.models import utcnow
from worker.runtime import Runtime
from worker.sending.planning import week_of

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "test-artifacts" / "reader-pages"
WIDTH_PX = 320


def test_the_web_version_archive_and_error_page_fit_a_320_px_screen(
    browser: Any,  # noqa: F811
    site: str,  # noqa: F811
    rt: Runtime,
    worker: Callable[[], None],
) -> None:
    moment = utcnow()
    load(
        rt,
        comparison(
            "long-duel",
            "Developer Tools",
            moment - timedelta(minutes=30),
            title="A comparison with a rather long title that has to wrap on a phone",
        ),
    )
    add_active(rt, "reader@example.com")
    week = week_of(moment, UTC)
    send(rt, week, moment)
    worker()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = _page(browser, WIDTH_PX)
    for name, path in (
        ("web-version", f"/editions/{week}"),
        ("archive", "/editions"),
        ("not-found", "/no/such/page"),
    ):
        page.goto(f"{site}{path}")
        page.screenshot(path=str(ARTIFACTS / f"{name}-{WIDTH_PX}.png"), full_page=True)
        assert _fits(page), f"{path} is wider than {WIDTH_PX} px"
    page.context.close()


def test_the_unsubscribed_page_fits_a_320_px_screen(
    browser: Any,  # noqa: F811
    site: str,  # noqa: F811
    rt: Runtime,
) -> None:
    reader = add_active(rt, "leaving-with-a-long-address@example.com", "Leaving")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = _page(browser, WIDTH_PX)
    page.goto(f"{site}{link(rt, 'unsubscribe', reader)}")
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    page.screenshot(path=str(ARTIFACTS / f"unsubscribed-{WIDTH_PX}.png"), full_page=True)
    assert _fits(page)
    page.get_by_label("Too many mails").check()
    page.get_by_role("button", name="Send my answer").click()
    page.get_by_role("status").wait_for()
    assert _fits(page)
    page.get_by_role("button", name="Subscribe again").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    assert _fits(page)
    page.context.close()
    with rt.session() as session:
        from worker.subscribers import queries as subscribers

        stored = subscribers.get_subscriber_by_email(session, reader.email)
    assert stored is not None
    assert (stored.status, stored.unsubscribe_reason) == ("pending", "Too many mails")
