"""What readers see around the mail: the web version and the archive, the welcome mail, the
unsubscribed page, the site's error pages, test-send links; and for operators, the CSV
import's unknown categories and `newsletter preview --serve`.

The app runs on the test's runtime over HTTP; mail goes through a real dramatiq worker to the
aiosmtpd server, and the tests follow the links in it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import SmtpHandler
from tests.factories import comparison, load, send, subscribe
from tests.test_cli import run
from tests.test_readers import add_active, confirm_path, link, open_client, subscriber, text_of
from worker.actors import actors_of
from worker.config import Settings
from worker.models import Subscriber, utcnow
from worker.runtime import Runtime, open_runtime
from worker.sending import control, pipeline, transactional
from worker.sending.planning import week_of
from worker.sending.weekly import schedule_words
from worker.subscribers import service as readers

SITE = "https://news.example.com"
BRAND = "Weekly <span>AI Tool</span> Verdicts"


@pytest.fixture
def client(settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with open_client(settings, rt) as test_client:
        yield test_client


def _flat(text: str) -> str:
    return " ".join(text.split())


def _sent_week(rt: Runtime, worker: Callable[[], None], now: datetime, *titles: str) -> str:
    """This week's edition, carrying comparisons named ``titles``, sent to its readers."""
    load(
        rt,
        *(
            comparison(f"duel-{i}", "Writing", now - timedelta(hours=1 + i), title=t)
            for i, t in enumerate(titles)
        ),
    )
    week = week_of(now, UTC)
    send(rt, week, now)
    worker()
    return week


# --- the web version and the archive ----------------------------------------------------------


def test_the_web_version_shows_the_edition_without_anything_personal_or_tracking(
    client: TestClient, rt: Runtime, smtp: SmtpHandler, worker: Callable[[], None]
) -> None:
    ada = add_active(rt, "ada@example.com", "Ada Lovelace")
    now = utcnow()
    week = _sent_week(rt, worker, now, "Quill vs Ink", "Pen vs Paper")
    [mail] = smtp.to("ada@example.com")
    web_url = f"{SITE}/editions/{week}"
    assert web_url in text_of(mail) and f'href="{web_url}"' in text_of(mail, "html")

    page = client.get(urlsplit(web_url).path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "Quill vs Ink" in html and "Pen vs Paper" in html
    # Nothing personal: no name, no greeting, no token, no unsubscribe or preferences link.
    assert "Ada" not in html and "Hi " not in html
    assert ada.token not in html
    assert "/unsubscribe/" not in html and "/preferences/" not in html
    # Nothing that tracks: no script, no image (no pixel), no tagged links back to us.
    assert "<script" not in html.lower() and "<img" not in html.lower()
    own_links = re.findall(r'href="(https://news\.example\.com[^"]*)"', html)
    assert own_links and all("?" not in href for href in own_links)
    assert f'href="{SITE}/editions"' in html and f'href="{SITE}/subscribe"' in html


def test_the_web_version_is_public_and_cached(
    client: TestClient, rt: Runtime, worker: Callable[[], None]
) -> None:
    add_active(rt, "ada@example.com")
    week = _sent_week(rt, worker, utcnow(), "Quill vs Ink")
    page = client.get(f"/editions/{week}")
    assert page.status_code == 200
    assert page.headers["cache-control"].startswith("public, max-age=")
    etag, modified = page.headers["etag"], page.headers["last-modified"]
    assert "set-cookie" not in page.headers

    same = client.get(f"/editions/{week}", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    assert (
        client.get(f"/editions/{week}", headers={"If-Modified-Since": modified}).status_code == 304
    )
    earlier = format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    assert (
        client.get(f"/editions/{week}", headers={"If-Modified-Since": earlier}).status_code == 200
    )
    assert client.get(f"/editions/{week}", headers={"If-None-Match": '"other"'}).status_code == 200


def test_the_archive_lists_editions_and_alerts_newest_first(
    client: TestClient, rt: Runtime, smtp: SmtpHandler, worker: Callable[[], None]
) -> None:
    now = utcnow()
    this_week = week_of(now, UTC)
    last_week = week_of(now - timedelta(days=7), UTC)
    load(
        rt,
        comparison("old", "Writing", now - timedelta(days=7, hours=1), title="Last week's duel"),
        comparison("new", "Writing", now - timedelta(hours=2), title="This week's duel"),
    )
    subscribe(rt, ("weekly@example.com", "", ()))
    subscribe(rt, ("quick@example.com", "", ()), cadence="instant")
    send(rt, last_week, now)
    worker()
    send(rt, this_week, now)
    worker()
    [alert_key] = pipeline.send_alerts(rt, now, actors_of(rt))
    worker()
    control.ensure_edition(rt, week_of(now + timedelta(days=7), UTC), now + timedelta(days=8))

    archive = client.get("/editions")
    assert archive.status_code == 200 and BRAND in archive.text
    assert archive.headers["cache-control"].startswith("public")
    keys = re.findall(r'href="/editions/([^"]+)"', archive.text)
    assert keys == [alert_key, this_week, last_week]  # newest first; no draft
    flat = _flat(archive.text)
    assert "Instant alert · 1 comparison" in flat
    assert f"Week {int(this_week[-2:])}, {this_week[:4]} · 1 comparison" in flat
    assert client.get(f"/editions/{alert_key}").status_code == 200

    sitemap = client.get("/sitemap.xml")
    assert sitemap.status_code == 200 and sitemap.headers["content-type"] == "application/xml"
    locs = re.findall(r"<loc>([^<]+)</loc>", sitemap.text)
    assert locs == [f"{SITE}/editions"] + [f"{SITE}/editions/{k}" for k in keys]
    [alert] = smtp.to("quick@example.com")
    assert f"{SITE}/editions/{alert_key}" in text_of(alert)


@pytest.mark.parametrize("path", ["/editions/2020-W01", "/editions/garbage", "/editions/A999"])
def test_an_unknown_edition_is_the_html_404_page(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert BRAND in answer.text and "No such edition" in answer.text
    assert 'href="/editions"' in answer.text


def test_a_draft_edition_has_no_web_version(client: TestClient, rt: Runtime) -> None:
    now = utcnow()
    load(rt, comparison("draft", "Writing", now - timedelta(hours=1)))
    week = week_of(now, UTC)
    control.ensure_edition(rt, week, now)
    assert client.get(f"/editions/{week}").status_code == 404
    assert f"/editions/{week}" not in client.get("/editions").text


# --- the site's error pages -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/no/such/page", "/confirm", "/editions/2026-W48/extra"])
def test_a_reader_who_gets_lost_sees_an_html_page_in_the_site_layout(
    client: TestClient, path: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert BRAND in answer.text and "Page not found" in answer.text
    assert 'href="/editions"' in answer.text and 'href="/subscribe"' in answer.text
    assert "{" not in answer.text.split("<body", 1)[1]  # no JSON


def test_a_wrong_method_on_a_reader_path_is_an_html_page(client: TestClient) -> None:
    answer = client.delete("/subscribe")
    assert answer.status_code == 405 and BRAND in answer.text


def test_the_api_keeps_machine_errors(client: TestClient, settings: Settings) -> None:
    for path in ("/api/no-such-thing", "/webhooks/nothing"):
        answer = client.get(path)
        assert answer.status_code in (404, 405)
        assert "html" not in answer.headers["content-type"]
    token = {"Authorization": f"Bearer {settings.operator_token}"}
    unknown = client.get("/api/editions/2020-W01", headers=token)
    assert unknown.status_code == 404 and "html" not in unknown.headers["content-type"]


# --- the welcome mail -------------------------------------------------------------------------


def test_the_welcome_mail_arrives_once_after_confirming(
    client: TestClient, rt: Runtime, smtp: SmtpHandler, worker: Callable[[], None]
) -> None:
    client.post("/subscribe", data={"email": "ada@example.com", "name": "Ada"})
    worker()
    path = confirm_path(smtp, "ada@example.com")
    assert "welcome mail" in client.post(path).text
    worker()
    assert client.post(path).status_code == 200  # a second click: already confirmed
    worker()

    subjects = [m.message["Subject"] for m in smtp.to("ada@example.com")]
    assert subjects == [
        "Confirm your subscription to Weekly AI Tool Verdicts",
        "Welcome to Weekly AI Tool Verdicts",
    ]
    welcome = smtp.to("ada@example.com")[-1]
    assert welcome.message["List-Unsubscribe"] is None  # a transactional mail
    text = _flat(text_of(welcome))
    assert "Hi Ada," in text
    assert "One digest a week, every Friday at 15:00 (UTC)," in text
    assert f"{SITE}/editions" in text
    preferences = re.search(rf"{SITE}(/preferences/\S+)", text)
    unsubscribe = re.search(rf"{SITE}(/unsubscribe/\S+)", text)
    assert preferences and unsubscribe
    assert "ada@example.com" in client.get(preferences.group(1)).text
    assert "<button" in client.get(unsubscribe.group(1)).text
    html = text_of(welcome, "html")
    assert preferences.group(0) in html and unsubscribe.group(0) in html


def test_the_welcome_mail_follows_the_schedule_and_the_cadence(
    make_settings: Callable[..., Settings], rt: Runtime
) -> None:
    paris = open_runtime(
        make_settings(weekly_cron="30 8 * * mon", timezone="Europe/Paris"),
        redis_client=rt.redis,
    )
    try:
        texts = {}
        for cadence, categories in (("weekly", "Writing;Developer Tools"), ("instant", "")):
            reader = Subscriber(
                email=f"{cadence}@example.com",
                email_key=f"{cadence}@example.com",
                token=cadence,
                name="Ada",
                cadence=cadence,
                categories=categories,
                status="active",
            )
            mail, values = transactional.render(paris, readers.MAIL_WELCOME, reader)
            texts[cadence] = _flat(mail.text.fill(values, escape=False))
    finally:
        paris.close()
    assert "One digest a week, every Monday at 08:30 (Europe/Paris)," in texts["weekly"]
    assert "in Writing and Developer Tools" in texts["weekly"]
    assert "An instant alert as soon as a new side-by-side comparison" in texts["instant"]
    assert "every Monday" not in texts["instant"]


@pytest.mark.parametrize(
    ("crontab", "zone", "words"),
    [
        ("0 15 * * fri", "UTC", "every Friday at 15:00 (UTC)"),
        ("30 8 * * mon", "Europe/Paris", "every Monday at 08:30 (Europe/Paris)"),
        ("0 8 * * mon,thu", "UTC", "on a schedule of its own; the next one on Monday 07 December"),
    ],
)
def test_the_schedule_in_words(crontab: str, zone: str, words: str) -> None:
    now = datetime(2026, 12, 5, 12, tzinfo=UTC)  # a Saturday
    assert schedule_words(crontab, ZoneInfo(zone), now).startswith(words)


# --- the unsubscribed page --------------------------------------------------------------------


def test_the_unsubscribed_page_stores_a_reason_and_offers_to_come_back_by_confirmation(
    client: TestClient,
    rt: Runtime,
    env: dict[str, str],
    smtp: SmtpHandler,
    worker: Callable[[], None],
) -> None:
    reader = add_active(rt, "linus@example.com", "Linus", ("Writing",))
    page = client.post(link(rt, "unsubscribe", reader))
    assert page.status_code == 200
    assert "You are unsubscribed" in page.text
    assert "Would you tell us why?" in page.text and "Subscribe again" in page.text
    assert 'href="/editions"' in page.text
    assert "Deliveries already queued" not in page.text

    refused = client.post(link(rt, "unsubscribe", reader) + "/reason", data={"reason": "<script>"})
    assert refused.status_code == 422 and "Choose one of the reasons listed" in refused.text
    assert subscriber(rt, "linus@example.com").unsubscribe_reason is None  # type: ignore[union-attr]

    saved = client.post(
        link(rt, "unsubscribe", reader) + "/reason",
        data={"reason": "Too many mails", "detail": "  once a month\nwould do  "},
    )
    assert saved.status_code == 200 and "Thank you" in saved.text
    stored = subscriber(rt, "linus@example.com")
    assert stored is not None
    assert stored.unsubscribe_reason == "Too many mails: once a month would do"

    shown = run(env, "subscribers", "show", "linus@example.com")
    assert shown.returncode == 0, shown.stderr
    assert "unsubscribe reason  Too many mails: once a month would do" in shown.stdout
    assert "status              unsubscribed" in shown.stdout

    back = client.post(link(rt, "unsubscribe", reader) + "/resubscribe")
    assert back.status_code == 200 and "Check your inbox" in back.text
    pending = subscriber(rt, "linus@example.com")
    assert pending is not None and (pending.status, pending.categories) == ("pending", "Writing")
    worker()
    [mail] = smtp.to("linus@example.com")
    assert mail.message["Subject"] == "Confirm your subscription to Weekly AI Tool Verdicts"
    client.post(confirm_path(smtp, "linus@example.com"))
    assert subscriber(rt, "linus@example.com").status == "active"  # type: ignore[union-attr]


def test_a_bounced_reader_cannot_come_back_from_the_unsubscribed_page(
    client: TestClient, rt: Runtime, smtp: SmtpHandler, worker: Callable[[], None]
) -> None:
    from tests.test_readers import set_status
    from worker.models import SubscriberStatus

    reader = add_active(rt, "gone@example.com")
    set_status(rt, "gone@example.com", SubscriberStatus.bounced)
    page = client.get(link(rt, "unsubscribe", reader))
    assert "Subscribe again" not in page.text
    client.post(link(rt, "unsubscribe", reader) + "/resubscribe")
    worker()
    assert smtp.to("gone@example.com") == []
    assert subscriber(rt, "gone@example.com").status == "bounced"  # type: ignore[union-attr]


# --- the test send --------------------------------------------------------------------------


def test_a_test_send_greets_a_subscriber_by_name_and_its_links_say_it_is_a_test(
    client: TestClient, rt: Runtime, smtp: SmtpHandler
) -> None:
    now = utcnow()
    load(rt, comparison("duel", "Writing", now - timedelta(hours=1)))
    add_active(rt, "grace@example.com", "Grace Hopper")
    week = week_of(now, UTC)
    control.test_send(rt, "grace@example.com", week, now)
    control.test_send(rt, "editor@example.com", week, now)

    [to_grace] = smtp.to("grace@example.com")
    assert "Hi Grace Hopper," in text_of(to_grace)
    assert "Hi there," in text_of(smtp.to("editor@example.com")[0])
    unsubscribe = to_grace.message["List-Unsubscribe"].strip("<>")
    preferences = re.search(rf"{SITE}/preferences/\S+", text_of(to_grace))
    assert preferences
    for url in (unsubscribe, preferences.group(0)):
        path = urlsplit(url).path
        for answer in (client.get(path), client.post(path)):
            assert answer.status_code == 200
            assert "This was a test mail" in answer.text and "unsubscribes nobody" in answer.text
    assert subscriber(rt, "grace@example.com").status == "active"  # type: ignore[union-attr]


# --- operators: CSV categories, plurals, preview --serve --------------------------------------


def test_unknown_categories_in_a_csv_import_are_reported_by_line_and_name(
    rt: Runtime, env: dict[str, str], tmp_path: Path
) -> None:
    now = utcnow()
    load(
        rt,
        comparison("w", "Writing", now - timedelta(hours=1)),
        comparison("d", "Developer Tools", now - timedelta(hours=2)),
    )
    source = tmp_path / "people.csv"
    source.write_text(
        "email,name,categories\n"
        "ada@example.com,Ada,writing;Developer Tools\n"
        "bob@example.com,Bob,Wrting\n"
        "cy@example.com,Cy,\n"
    )
    result = run(env, "subscribers", "import", str(source))
    assert result.returncode == 0, result.stderr
    assert "skipped line 3: categories: unknown category 'Wrting'" in _flat(result.stderr)
    assert "2 added, 0 updated, 0 unchanged, 1 bad row skipped" in result.stderr
    assert subscriber(rt, "bob@example.com") is None
    ada = subscriber(rt, "ada@example.com")
    assert ada is not None and ada.categories == "Writing;Developer Tools"  # catalog spelling

    strict = run(env, "subscribers", "import", str(source), "--strict")
    assert strict.returncode != 0 and "line 3: categories: unknown category" in strict.stderr


def test_preview_serve_shows_the_four_mails_at_two_widths_and_stops_on_ctrl_c(
    rt: Runtime, env: dict[str, str]
) -> None:
    load(rt, comparison("duel", "Writing", utcnow() - timedelta(hours=1), title="Quill vs Ink"))
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "preview", "--serve", "--port", "0"],
        env={**env, "COLUMNS": "200"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, line
        base = found.group(0)
        page = httpx.get(base, timeout=30)
        assert page.status_code == 200
        for title in ("Weekly digest", "Instant alert", "Confirmation", "Welcome"):
            assert title in page.text
        for name in ("digest", "alert", "confirm", "welcome"):
            for width in (320, 600):
                assert f'src="/mail/{name}.html" width="{width}"' in page.text
            html = httpx.get(f"{base}mail/{name}.html", timeout=30)
            assert html.status_code == 200 and "<html" in html.text
            text = httpx.get(f"{base}mail/{name}.txt", timeout=30)
            assert text.status_code == 200 and "Hi Reader," in text.text
        assert "Quill vs Ink" in httpx.get(f"{base}mail/alert.txt", timeout=30).text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_preview_serve_has_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "preview", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0 and "--serve" in result.stdout and "320 and 600" in result.stdout
