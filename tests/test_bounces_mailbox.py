"""The IMAP bounce mailbox, against a real IMAP server in the test process.

The server (``tests/imap_server.py``) speaks TLS from the first byte, STARTTLS or plain text,
with certificates from a private CA made for each test, and remembers every command it got: a
refused server must never have received LOGIN.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import free_port, wait_until
from tests.factories import subscribe
from tests.imap_server import ImapServer, Mailbox, TlsFiles, issue_certificates
from worker.bounces.intake import intake_for
from worker.bounces.mailbox import poll
from worker.bounces.poller import BouncePoller, poll_mailbox
from worker.errors import ConfigError, NewsletterError
from worker.models import BounceEvent
from worker.runtime import Runtime, open_runtime
from worker.subscribers import queries as subscribers
from worker.supervisor import running_worker

READERS = ("ann@example.com", "bob@example.com", "cy@example.com")


def dsn(recipient: str) -> bytes:
    """A delivery status notification (RFC 3464) saying ``recipient`` does not exist."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        "To: bounces@news.example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn.{recipient}@mx.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
        "\r\n"
        "--b\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        f"<{recipient}>: host mx.example.com said: 550 5.1.1 User unknown\r\n"
        "--b\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: "
        "User unknown\r\n"
        "\r\n"
        "--b--\r\n"
    ).encode()


@pytest.fixture
def mailbox(rt: Runtime) -> Mailbox:
    """A bounce for each of three readers, waiting in INBOX."""
    subscribe(rt, *[(email, "", ()) for email in READERS])
    box = Mailbox()
    for email in READERS:
        box.add(dsn(email))
    return box


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return issue_certificates(tmp_path)


@pytest.fixture
def serve() -> Iterator[Callable[..., ImapServer]]:
    started: list[ImapServer] = []

    def start(box: Mailbox, **options: object) -> ImapServer:
        server = ImapServer(box, free_port(), **options)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _url(server: ImapServer, scheme: str = "imaps", query: str = "") -> str:
    return f"{scheme}://bounces:secret@127.0.0.1:{server.port}/INBOX{query}"


def _recorded(rt: Runtime) -> list[str]:
    with rt.session() as session:
        return sorted(e.recipient for e in session.execute(select(BounceEvent)).scalars())


def _status(rt: Runtime, email: str) -> str:
    with rt.session() as session:
        subscriber = subscribers.get_subscriber_by_email(session, email)
        assert subscriber is not None
        return subscriber.status


# --- who we talk to: TLS verified before the password is sent ------------------------------


def test_an_imaps_server_whose_certificate_nobody_trusts_never_gets_the_password(
    rt, mailbox, tls, serve
):
    server = serve(mailbox, tls=tls.server_context())

    with pytest.raises(NewsletterError, match="certificate"):
        poll(_url(server), intake_for(rt))

    assert server.connections == 1
    assert server.commands == []  # not even CAPABILITY: TLS failed first
    assert len(mailbox.folders["INBOX"]) == 3
    assert _recorded(rt) == []


def test_an_imaps_server_whose_ca_is_named_is_read(rt, mailbox, tls, serve):
    server = serve(mailbox, tls=tls.server_context())

    assert poll(_url(server), intake_for(rt), ca_file=tls.ca) == 3

    assert "LOGIN" in server.commands
    assert mailbox.folders["INBOX"] == {}
    assert _recorded(rt) == sorted(READERS)
    assert {_status(rt, email) for email in READERS} == {"bounced"}


def test_a_certificate_for_another_host_name_is_refused_before_the_password(
    rt, mailbox, tmp_path, serve
):
    elsewhere = issue_certificates(tmp_path, host="imap.example.org", name="elsewhere")
    server = serve(mailbox, tls=elsewhere.server_context())

    with pytest.raises(NewsletterError, match="certificate"):
        poll(_url(server), intake_for(rt), ca_file=elsewhere.ca)

    assert "LOGIN" not in server.commands
    assert len(mailbox.folders["INBOX"]) == 3


def test_a_ca_file_trusts_only_what_it_names(rt, mailbox, tls, tmp_path, serve):
    other = issue_certificates(tmp_path, name="other")
    server = serve(mailbox, tls=tls.server_context())

    with pytest.raises(NewsletterError, match="certificate"):
        poll(_url(server), intake_for(rt), ca_file=other.ca)

    assert "LOGIN" not in server.commands


def test_starttls_upgrades_and_verifies_before_the_password(rt, mailbox, tls, serve):
    server = serve(mailbox, starttls=tls.server_context())

    handled = poll(_url(server, "imap", "?starttls=true"), intake_for(rt), ca_file=tls.ca)

    assert handled == 3
    assert server.commands[:4] == ["CAPABILITY", "STARTTLS", "CAPABILITY", "LOGIN"]
    assert _recorded(rt) == sorted(READERS)


def test_starttls_to_a_server_nobody_trusts_never_sends_the_password(rt, mailbox, tls, serve):
    server = serve(mailbox, starttls=tls.server_context())

    with pytest.raises(NewsletterError, match="certificate"):
        poll(_url(server, "imap", "?starttls=true"), intake_for(rt))

    assert server.commands == ["CAPABILITY", "STARTTLS"]
    assert len(mailbox.folders["INBOX"]) == 3


def test_starttls_asked_of_a_server_that_does_not_offer_it_sends_nothing_in_the_clear(
    rt, mailbox, serve
):
    server = serve(mailbox)

    with pytest.raises(NewsletterError, match="STARTTLS"):
        poll(_url(server, "imap", "?starttls=true"), intake_for(rt))

    assert "LOGIN" not in server.commands


def test_plain_imap_still_works_but_warns(rt, mailbox, serve, caplog):
    server = serve(mailbox)

    with caplog.at_level(logging.WARNING, logger="worker.bounces.mailbox"):
        assert poll(_url(server, "imap"), intake_for(rt)) == 3

    assert "in the clear" in caplog.text
    assert _recorded(rt) == sorted(READERS)


@pytest.mark.parametrize(
    "url",
    [
        "imaps://bounces:secret@127.0.0.1/INBOX?starttls=true",
        "imap://bounces:secret@127.0.0.1/INBOX?starttls=maybe",
        "pop3://bounces:secret@127.0.0.1/INBOX",
    ],
)
def test_a_mailbox_url_that_cannot_be_meant_is_refused_before_connecting(rt, url):
    with pytest.raises(NewsletterError, match="NEWSLETTER_BOUNCE_MAILBOX"):
        poll(url, intake_for(rt))


# --- what we do to the messages: expunged only once they are safe ---------------------------


def test_a_missing_move_to_folder_is_created_and_nothing_is_lost(rt, mailbox, tls, serve):
    server = serve(mailbox, tls=tls.server_context())
    assert "Processed" not in mailbox.folders

    handled = poll(_url(server, query="?move_to=Processed"), intake_for(rt), ca_file=tls.ca)

    assert handled == 3
    assert server.commands.index("CREATE") < server.commands.index("UID FETCH")
    assert mailbox.folders["INBOX"] == {}
    assert sorted(mailbox.folders["Processed"].values()) == sorted(dsn(e) for e in READERS)
    assert _recorded(rt) == sorted(READERS)


def test_a_move_to_folder_that_cannot_be_created_is_reported_before_any_message(
    rt, mailbox, tls, serve
):
    mailbox.refuse_create = True
    server = serve(mailbox, tls=tls.server_context())

    with pytest.raises(NewsletterError, match="'Processed'"):
        poll(_url(server, query="?move_to=Processed"), intake_for(rt), ca_file=tls.ca)

    assert "UID FETCH" not in server.commands
    assert len(mailbox.folders["INBOX"]) == 3 and not mailbox.deleted
    assert _recorded(rt) == []


@pytest.mark.parametrize(
    "refusal", ["[TRYCREATE] Mailbox does not exist", "[OVERQUOTA] Quota exceeded"]
)
def test_a_message_whose_copy_fails_stays_and_is_recorded_once_when_it_finally_moves(
    rt, mailbox, tls, serve, refusal
):
    mailbox.folders["Processed"] = {}
    mailbox.copy_refusal = refusal
    server = serve(mailbox, tls=tls.server_context())
    url = _url(server, query="?move_to=Processed")

    poll(url, intake_for(rt), ca_file=tls.ca)

    assert len(mailbox.folders["INBOX"]) == 3
    assert not mailbox.deleted and mailbox.folders["Processed"] == {}
    assert _recorded(rt) == sorted(READERS)

    mailbox.copy_refusal = None
    poll(url, intake_for(rt), ca_file=tls.ca)

    assert mailbox.folders["INBOX"] == {}
    assert len(mailbox.folders["Processed"]) == 3
    assert _recorded(rt) == sorted(READERS)  # each bounce counted once


@pytest.mark.parametrize("content", [None, b"not a certificate"])
def test_a_ca_file_that_cannot_be_read_is_a_configuration_error(make_settings, tmp_path, content):
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(ConfigError, match="NEWSLETTER_BOUNCE_MAILBOX_CA_FILE"):
        make_settings(bounce_mailbox_ca_file=str(path))


# --- when we poll: on the poller's own interval, one process at a time ----------------------


@pytest.fixture
def open_rt(make_settings, redis_client) -> Iterator[Callable[..., Runtime]]:
    """Runtimes for the settings a test gives, on the test's database and Redis."""
    opened: list[Runtime] = []

    def build(**overrides: object) -> Runtime:
        runtime = open_runtime(make_settings(**overrides), redis_client=redis_client)
        opened.append(runtime)
        return runtime

    yield build
    for runtime in opened:
        runtime.close()


def test_the_worker_polls_on_the_pollers_interval_even_below_the_sweeps(open_rt, tls, serve):
    box = Mailbox()
    box.add(dsn(READERS[0]))
    server = serve(box, tls=tls.server_context())
    rt = open_rt(
        bounce_mailbox=_url(server, query="?move_to=Processed"),
        bounce_mailbox_ca_file=str(tls.ca),
        bounce_poll_interval_s=0.2,
        sweep_interval_s=3600,
    )
    subscribe(rt, *[(email, "", ()) for email in READERS])

    with running_worker(rt, threads=1):
        wait_until(lambda: _recorded(rt) == [READERS[0]], timeout_s=10)
        box.add(dsn(READERS[1]))  # arrives after the first poll
        wait_until(lambda: _recorded(rt) == sorted(READERS[:2]), timeout_s=10)
        wait_until(lambda: server.commands.count("LOGIN") >= 4, timeout_s=10)

    assert box.folders["INBOX"] == {}
    assert len(box.folders["Processed"]) == 2


def test_the_mailbox_is_polled_once_per_interval_across_processes(open_rt, mailbox, tls, serve):
    server = serve(mailbox, tls=tls.server_context())
    settings = {
        "bounce_mailbox": _url(server),
        "bounce_mailbox_ca_file": str(tls.ca),
        "bounce_poll_interval_s": 0.5,
    }
    here, elsewhere = BouncePoller(open_rt(**settings)), BouncePoller(open_rt(**settings))

    assert here.poll_once() == 3
    assert elsewhere.poll_once() is None  # within the interval: someone polled
    assert server.commands.count("LOGIN") == 1

    wait_until(lambda: elsewhere.poll_once() is not None, timeout_s=5)
    assert server.commands.count("LOGIN") == 2


def test_a_poller_without_a_mailbox_does_nothing(rt):
    poller = BouncePoller(rt)
    poller.start()
    poller.stop()

    with pytest.raises(NewsletterError, match="NEWSLETTER_BOUNCE_MAILBOX"):
        poll_mailbox(rt)
