"""Readers over HTTP: subscribe, confirm by mail, unsubscribe, preferences, privacy.

The app runs on the test's runtime (SQLite or PostgreSQL, real Redis); confirmation mail goes
through a real dramatiq worker to the aiosmtpd server, and the tests follow the links in it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select, update

from tests.conftest import DATA, SmtpHandler
from worker.actors import QUEUE_TRANSACTIONAL, actors_of
from worker.bounces.policy import BounceFacts, Policy
from worker.bounces.record import record_bounce
from worker.broker import NAMESPACE
from worker.catalog.records import validate_all
from worker.catalog.service import load_comparison_records
from worker.config import Settings
from worker.demo import dated_samples
from worker.models import Delivery, Subscriber, SubscriberStatus, Suppression, utcnow
from worker.runtime import Runtime, open_runtime
from worker.sending import control
from worker.sending.planning import week_of
from worker.sending.tokens import sign_link
from worker.subscribers import privacy
from worker.subscribers import queries as subscribers
from worker.subscribers.rules import SubscriberInput
from worker.web import create_app

SITE = "https://news.example.com"
CHECK_YOUR_INBOX = "Check your inbox"
BAD_FORMS = json.loads((DATA / "forms" / "subscribe_bad.json").read_text())
LONG = {
    "@LONG_LOCAL@": "r" * 65,
    "@LONG_ADDRESS@": "r" * 40 + "@" + "d" * 250 + ".com",
    "@LONG_NAME@": "N" * 201,
}


# --- fixtures and helpers --------------------------------------------------------------------


def open_client(settings: Settings, rt: Runtime) -> TestClient:
    return TestClient(create_app(settings, rt), base_url=SITE, follow_redirects=False)


@pytest.fixture
def client(settings: Settings, rt: Runtime) -> Iterator[TestClient]:
    with open_client(settings, rt) as test_client:
        yield test_client


@pytest.fixture
def now() -> datetime:
    return utcnow()


@pytest.fixture
def comparisons(rt: Runtime, now: datetime) -> list[dict[str, Any]]:
    """The nine sample comparisons, published earlier this week."""
    records = dated_samples(now, rt.settings.tz)
    good, bad = validate_all(records)
    assert not bad
    load_comparison_records(rt.engine, good)
    return records


def subscribe(client: TestClient, email: str, **fields: Any) -> Any:
    return client.post("/subscribe", data={"email": email, **fields})


def subscriber(rt: Runtime, email: str) -> Subscriber | None:
    with rt.session() as session:
        return subscribers.get_subscriber_by_email(session, email)


def add_active(
    rt: Runtime, email: str, name: str = "", categories: tuple[str, ...] = ()
) -> Subscriber:
    with rt.session() as session, session.begin():
        subscribers.merge_subscribers(
            session, [SubscriberInput(email, name, categories)], True, "test"
        )
    found = subscriber(rt, email)
    assert found is not None
    return found


def set_status(rt: Runtime, email: str, status: SubscriberStatus) -> None:
    """Put a reader in ``status`` directly (test setup: any status, whatever the rules say)."""
    with rt.session() as session, session.begin():
        session.execute(
            update(Subscriber).where(Subscriber.email == email).values(status=status.value)
        )


def link(rt: Runtime, purpose: str, who: Subscriber) -> str:
    return f"/{purpose}/{sign_link(rt.secret_key, purpose, who.token)}"


def text_of(received: Any, subtype: str = "plain") -> str:
    body = received.message.get_body(preferencelist=(subtype,))
    assert body is not None
    return str(body.get_content())


def confirm_path(smtp: SmtpHandler, email: str) -> str:
    """The path of the confirmation link in the last mail to ``email``."""
    mails = smtp.to(email)
    assert mails, f"no mail reached {email}"
    found = re.search(r"https://news\.example\.com/confirm/\S+", text_of(mails[-1]))
    assert found, "the mail carries no confirmation link"
    return urlsplit(found.group(0)).path


def queued_mails(rt: Runtime) -> int:
    """Transactional mail jobs waiting in Redis (no worker runs in the test)."""
    return int(rt.redis.llen(f"{NAMESPACE}:{QUEUE_TRANSACTIONAL}"))


def count(rt: Runtime, model: Any) -> int:
    with rt.session() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


# --- the whole path --------------------------------------------------------------------------


def test_a_reader_subscribes_confirms_by_mail_and_becomes_active(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
    comparisons: list[dict[str, Any]],
) -> None:
    form = client.get("/subscribe")
    assert form.status_code == 200
    assert 'name="email"' in form.text and 'value="Writing"' in form.text

    answer = subscribe(
        client,
        "Ada@Example.com",
        name="Ada",
        categories=["Writing"],
        cadence="weekly",
        source="https://compare.example.org/pixelforge",
    )
    assert answer.status_code == 200
    assert CHECK_YOUR_INBOX in answer.text

    pending = subscriber(rt, "ada@example.com")
    assert pending is not None and pending.status == "pending"
    assert pending.consent_ip == "testclient"  # the client address the app saw
    assert pending.consent_source == "https://compare.example.org/pixelforge"
    assert pending.consent_at is not None and pending.consent_user_agent

    worker()
    [mail] = smtp.to("Ada@Example.com")
    message = mail.message
    assert mail.mail_from == "bounces@news.example.com"
    assert message.get_content_type() == "multipart/alternative"
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert message[header], f"the confirmation has no {header}"
    assert "Confirm your subscription" in message["Subject"]
    assert message["List-Unsubscribe"] is None
    assert "Hi Ada," in text_of(mail)

    path = confirm_path(smtp, "Ada@Example.com")
    scanned = client.get(path)  # what a mail scanner does
    assert scanned.status_code == 200
    assert "Confirm my subscription" in scanned.text and 'method="post"' in scanned.text
    assert subscriber(rt, "ada@example.com").status == "pending"  # type: ignore[union-attr]

    confirmed = client.post(path)
    assert confirmed.status_code == 200
    assert "You are subscribed" in confirmed.text
    active = subscriber(rt, "ada@example.com")
    assert active is not None and active.status == "active" and active.confirmed_at


def test_a_confirmation_link_replayed_says_already_confirmed_and_changes_nothing(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
) -> None:
    subscribe(client, "grace@example.com")
    worker()
    path = confirm_path(smtp, "grace@example.com")
    assert "You are subscribed" in client.post(path).text
    again = client.post(path)
    assert again.status_code == 200
    assert "Already confirmed" in again.text
    assert "Already confirmed" in client.get(path).text
    assert subscriber(rt, "grace@example.com").status == "active"  # type: ignore[union-attr]


def test_a_reader_unsubscribes_with_one_click_and_again_changes_nothing(
    client: TestClient,
    rt: Runtime,
) -> None:
    reader = add_active(rt, "linus@example.com")
    for _ in range(2):
        answer = client.post(
            link(rt, "unsubscribe", reader),
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200
        assert "You are unsubscribed" in answer.text
        assert "set-cookie" not in answer.headers and "location" not in answer.headers
    assert subscriber(rt, "linus@example.com").status == "unsubscribed"  # type: ignore[union-attr]


def test_opening_the_unsubscribe_link_only_shows_a_button(client: TestClient, rt: Runtime) -> None:
    reader = add_active(rt, "margaret@example.com")
    page = client.get(link(rt, "unsubscribe", reader))
    assert page.status_code == 200 and "<button" in page.text
    assert subscriber(rt, "margaret@example.com").status == "active"  # type: ignore[union-attr]


def test_coming_back_after_unsubscribing_goes_through_double_opt_in_again(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
) -> None:
    reader = add_active(rt, "alan@example.com")
    client.post(link(rt, "unsubscribe", reader))
    answer = subscribe(client, "alan@example.com", cadence="instant")
    assert CHECK_YOUR_INBOX in answer.text
    back = subscriber(rt, "alan@example.com")
    assert back is not None and (back.status, back.cadence) == ("pending", "instant")
    worker()
    client.post(confirm_path(smtp, "alan@example.com"))
    assert subscriber(rt, "alan@example.com").status == "active"  # type: ignore[union-attr]


def test_preferences_change_what_the_next_digest_carries(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
    comparisons: list[dict[str, Any]],
    now: datetime,
) -> None:
    writer = add_active(rt, "barbara@example.com", name="Barbara")
    instant = add_active(rt, "dennis@example.com")
    page = client.get(link(rt, "preferences", writer))
    assert page.status_code == 200 and "barbara@example.com" in page.text

    saved = client.post(
        link(rt, "preferences", writer),
        data={"name": "Babs", "categories": ["writing"], "cadence": "weekly"},
    )
    assert saved.status_code == 200 and "Saved" in saved.text
    client.post(link(rt, "preferences", instant), data={"cadence": "instant"})
    assert subscriber(rt, "barbara@example.com").categories == "Writing"  # type: ignore[union-attr]
    control.start_send(rt, week_of(now, rt.settings.tz), now, actors_of(rt))
    worker()
    [digest] = smtp.to("barbara@example.com")
    text = " ".join(text_of(digest).split())  # long titles wrap in the 72-column text
    writing = [c["title"] for c in comparisons if c["category"] == "Writing"]
    others = [c["title"] for c in comparisons if c["category"] != "Writing"]
    assert all(title in text for title in writing)
    assert not any(title in text for title in others)
    assert "Hi Babs," in text
    assert smtp.to("dennis@example.com") == []  # instant alerts only: no weekly digest


def test_bad_preferences_are_refused_and_nothing_is_saved(client: TestClient, rt: Runtime) -> None:
    reader = add_active(rt, "frances@example.com", name="Frances")
    answer = client.post(
        link(rt, "preferences", reader),
        data={"name": "F\r\nBcc: x@example.com", "cadence": "daily"},
    )
    assert answer.status_code == 422
    assert 'aria-describedby="name-error"' in answer.text and 'id="cadence-error"' in answer.text
    assert subscriber(rt, "frances@example.com").name == "Frances"  # type: ignore[union-attr]


# --- bad input, table-driven -----------------------------------------------------------------


def _expand(value: Any) -> Any:
    if isinstance(value, list):
        return [_expand(v) for v in value]
    for marker, text in LONG.items():
        value = value.replace(marker, text)
    return value


@pytest.mark.parametrize("case", BAD_FORMS, ids=[c["case"] for c in BAD_FORMS])
def test_bad_input_redisplays_the_form_with_the_reason_and_stores_nothing(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    case: dict[str, Any],
) -> None:
    form = {key: _expand(value) for key, value in case["form"].items()}
    answer = client.post("/subscribe", data=form)
    assert answer.status_code == 422
    assert case["says"].lower() in answer.text.lower()
    field = case["field"]
    assert f'id="{field}-error"' in answer.text
    assert f'aria-describedby="{field}-error' in answer.text  # the message is tied to its field
    assert CHECK_YOUR_INBOX not in answer.text
    assert count(rt, Subscriber) == 0
    assert queued_mails(rt) == 0  # nothing queued to mail


def test_html_in_a_name_is_escaped_in_pages_and_in_the_mail(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
) -> None:
    name = '<img src=x onerror="alert(1)">Mallory'
    redisplayed = subscribe(client, "not-an-address", name=name)
    assert "<img src=x" not in redisplayed.text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;Mallory" in redisplayed.text

    subscribe(client, "mallory@example.com", name=name)
    worker()
    [mail] = smtp.to("mallory@example.com")
    html = text_of(mail, "html")
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert mail.message["To"].addresses[0].display_name == name  # quoted, not interpreted
    reader = subscriber(rt, "mallory@example.com")
    assert reader is not None
    page = client.get(link(rt, "preferences", reader))
    assert "<img src=x" not in page.text


def _expired_confirm_token(secret_key: str, subscriber_token: str) -> str:
    class EightDaysAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 8 * 86400

    return URLSafeTimedSerializer(secret_key, salt="confirm", signer=EightDaysAgo).dumps(
        subscriber_token
    )


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("purpose", ["confirm", "unsubscribe", "preferences"])
@pytest.mark.parametrize("how", ["tampered", "other purpose", "other key", "garbage"])
def test_a_tampered_link_gets_a_plain_400_page_and_changes_nothing(
    client: TestClient,
    rt: Runtime,
    purpose: str,
    method: str,
    how: str,
) -> None:
    reader = add_active(rt, "ken@example.com")
    set_status(rt, "ken@example.com", SubscriberStatus.pending)
    good = sign_link(rt.secret_key, purpose, reader.token)
    token = {
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "other purpose": sign_link(
            rt.secret_key,
            "preferences" if purpose != "preferences" else "unsubscribe",
            reader.token,
        ),
        "other key": sign_link("not-our-key", purpose, reader.token),
        "garbage": "..%2e<script>",  # one path segment: a slash would make it another route
    }[how]
    answer = client.request(method, f"/{purpose}/{token}")
    assert answer.status_code == 400
    assert "not valid" in answer.text
    assert "ken@example.com" not in answer.text
    assert subscriber(rt, "ken@example.com").status == "pending"  # type: ignore[union-attr]


def test_an_expired_confirmation_link_asks_to_subscribe_again(
    client: TestClient,
    rt: Runtime,
) -> None:
    subscribe(client, "radia@example.com")
    reader = subscriber(rt, "radia@example.com")
    assert reader is not None
    path = f"/confirm/{_expired_confirm_token(rt.secret_key, reader.token)}"
    for method in ("GET", "POST"):
        answer = client.request(method, path)
        assert answer.status_code == 400
        assert "expired" in answer.text and 'href="/subscribe"' in answer.text
    assert subscriber(rt, "radia@example.com").status == "pending"  # type: ignore[union-attr]


# --- same answer for everyone ----------------------------------------------------------------


def test_known_and_unknown_addresses_get_the_same_answer(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
) -> None:
    answers = {}
    for status in ("unknown", "pending", "active", "unsubscribed", "bounced", "complained"):
        email = f"{status}@example.com"
        if status != "unknown":
            add_active(rt, email)
            set_status(rt, email, SubscriberStatus(status))
        answer = subscribe(client, email)
        # The page names the address typed; everything else must be identical.
        answers[status] = (answer.status_code, answer.text.replace(email, "ADDRESS"))
    assert len(set(answers.values())) == 1, answers
    worker()
    assert smtp.to("bounced@example.com") == [] and smtp.to("complained@example.com") == []
    assert subscriber(rt, "bounced@example.com").status == "bounced"  # type: ignore[union-attr]
    # The active reader is told (by mail, so only they learn it) where their preferences are.
    [already] = smtp.to("active@example.com")
    assert "already subscribed" in already.message["Subject"]
    assert "/preferences/" in text_of(already)


def test_a_bot_filling_the_honeypot_gets_the_same_answer_and_nothing_is_stored(
    client: TestClient,
    rt: Runtime,
) -> None:
    answer = subscribe(client, "bot@example.com", website="https://spam.example.net")
    assert answer.status_code == 200 and CHECK_YOUR_INBOX in answer.text
    assert count(rt, Subscriber) == 0
    assert queued_mails(rt) == 0
    person = subscribe(client, "person@example.com", website="")
    assert person.text.replace("person@", "bot@") == answer.text
    assert count(rt, Subscriber) == 1 and queued_mails(rt) == 1


def test_one_confirmation_mail_per_address_per_ten_minutes(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
) -> None:
    for _ in range(3):
        assert CHECK_YOUR_INBOX in subscribe(client, "hedy@example.com").text
    worker()
    assert len(smtp.to("hedy@example.com")) == 1
    reader = subscriber(rt, "hedy@example.com")
    assert reader is not None and reader.id is not None
    with rt.session() as session, session.begin():  # eleven minutes later
        later = utcnow()
        session.get(Subscriber, reader.id).last_confirmation_sent_at = (  # type: ignore[union-attr]
            later.replace(microsecond=0) - timedelta(minutes=11)
        )
    subscribe(client, "hedy@example.com")
    worker()
    assert len(smtp.to("hedy@example.com")) == 2


def test_the_form_rate_limit_answers_429_after_n_posts_from_one_address(
    make_settings: Callable[..., Settings],
    redis_client: redis.Redis,
) -> None:
    settings = make_settings(subscribe_rate="3/minute")
    runtime = open_runtime(settings, redis_client=redis_client)
    try:
        with open_client(settings, runtime) as client:
            codes = [subscribe(client, f"r{i}@example.com").status_code for i in range(3)]
            limited = subscribe(client, "r4@example.com")
        assert codes == [200, 200, 200]
        assert limited.status_code == 429
        assert "Too many attempts" in limited.text and "try again" in limited.text
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert subscriber(runtime, "r4@example.com") is None
    finally:
        runtime.close()


# --- embedding -------------------------------------------------------------------------------


def test_the_embedded_form_can_be_framed_and_has_no_page_chrome(client: TestClient) -> None:
    full = client.get("/subscribe")
    framed = client.get("/subscribe?embed=1")
    assert framed.status_code == 200
    assert "x-frame-options" not in framed.headers
    assert "frame-ancestors" not in framed.headers.get("content-security-policy", "")
    assert 'class="brand"' in full.text and 'class="brand"' not in framed.text
    assert '<body class="embed">' in framed.text
    assert 'name="embed" value="1"' in framed.text
    assert "<script" not in framed.text  # works without JavaScript


def test_a_plain_form_posted_from_another_site_is_accepted(
    client: TestClient,
    rt: Runtime,
) -> None:
    answer = client.post(
        "/subscribe",
        data={"email": "joan@example.com", "embed": "1"},
        headers={
            "Origin": "https://compare.example.org",
            "Referer": "https://compare.example.org/tools/x-vs-y",
        },
    )
    assert answer.status_code == 200 and CHECK_YOUR_INBOX in answer.text
    assert '<body class="embed">' in answer.text
    reader = subscriber(rt, "joan@example.com")
    assert reader is not None
    assert reader.consent_source == "https://compare.example.org/tools/x-vs-y"


def test_personal_pages_cannot_be_framed_or_cached(client: TestClient, rt: Runtime) -> None:
    reader = add_active(rt, "tim@example.com")
    for path in (link(rt, "preferences", reader), link(rt, "unsubscribe", reader)):
        headers = client.get(path).headers
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["referrer-policy"] == "no-referrer"


# --- privacy ---------------------------------------------------------------------------------


def _bounce(rt: Runtime, reader: Subscriber, kind: str) -> None:
    with rt.session() as session, session.begin():
        record_bounce(
            session,
            BounceFacts(
                kind=kind,
                reason="user_unknown",
                source="dsn",
                recipient=reader.email,
                status="5.1.1",
                diagnostic=f"550 5.1.1 <{reader.email}>: no such user",
                subscriber_id=reader.id,
            ),
            Policy(),
        )


def test_a_reader_downloads_everything_stored_about_them(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
    comparisons: list[dict[str, Any]],
    now: datetime,
) -> None:
    reader = add_active(rt, "katherine@example.com", name="Katherine")
    control.start_send(rt, week_of(now, rt.settings.tz), now, actors_of(rt))
    worker()
    _bounce(rt, reader, "soft")

    answer = client.post(link(rt, "preferences", reader) + "/export")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["content-disposition"].startswith("attachment")
    data = answer.json()
    assert data["subscriber"]["email"] == "katherine@example.com"
    assert data["subscriber"]["name"] == "Katherine"
    assert set(data["consent"]) == {
        "consent_at",
        "consent_ip",
        "consent_user_agent",
        "consent_source",
    }
    assert [d["status"] for d in data["deliveries"]] == ["sent"]
    assert data["deliveries"][0]["edition"] == week_of(now, rt.settings.tz)
    assert [b["kind"] for b in data["bounce_events"]] == ["soft"]
    assert privacy.export_subscriber(rt, "KATHERINE@example.com")["subscriber"]["id"] == reader.id


def test_delete_me_needs_the_box_ticked_then_erases_the_reader(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
    comparisons: list[dict[str, Any]],
    now: datetime,
) -> None:
    reader = add_active(rt, "guido@example.com", name="Guido")
    control.start_send(rt, week_of(now, rt.settings.tz), now, actors_of(rt))
    worker()
    path = link(rt, "preferences", reader) + "/delete"

    unticked = client.post(path)
    assert unticked.status_code == 422 and "Tick the box" in unticked.text
    assert subscriber(rt, "guido@example.com") is not None

    erased = client.post(path, data={"confirm": "yes"})
    assert erased.status_code == 200 and "Your data is deleted" in erased.text
    assert subscriber(rt, "guido@example.com") is None
    assert count(rt, Delivery) == 0 and count(rt, Suppression) == 0
    assert client.get(link(rt, "preferences", reader)).status_code == 400


def test_an_erased_address_that_bounced_is_never_mailed_again(
    client: TestClient,
    rt: Runtime,
    smtp: SmtpHandler,
    worker: Callable[[], None],
) -> None:
    reader = add_active(rt, "edsger@example.com")
    _bounce(rt, reader, "hard")
    assert privacy.erase_subscriber(rt, "Edsger@example.com") is True
    assert privacy.erase_subscriber(rt, "edsger@example.com") is False
    assert count(rt, Subscriber) == 0 and count(rt, Suppression) == 1
    with rt.session() as session:
        assert subscribers.is_suppressed(session, rt.secret_key, "edsger@example.com")

    answer = subscribe(client, "edsger@example.com")
    assert answer.status_code == 200 and CHECK_YOUR_INBOX in answer.text
    worker()
    assert subscriber(rt, "edsger@example.com") is None
    assert smtp.to("edsger@example.com") == []


def test_the_readme_snippet_posts_the_fields_the_form_expects() -> None:
    snippet = (Path(__file__).parent / "data" / "forms" / "embed_snippet.html").read_text()
    names = set(re.findall(r'name="(\w+)"', snippet))
    assert {"email", "name", "categories", "cadence", "website", "source"} <= names
    assert 'method="post"' in snippet and "/subscribe" in snippet
