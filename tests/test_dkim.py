"""DKIM: every kind of mail goes out signed, and dkimpy (not our signer) says the signature
holds, and breaks when a signed header or the body is changed."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dkim.canonicalization import Relaxed
from dkim.util import parse_tag_value

import scheduler
from tests.conftest import ROOT, Received, SmtpHandler
from tests.factories import comparison, load, send, subscribe
from worker.config import Settings, load_settings
from worker.errors import ConfigError, InputError
from worker.models import utcnow
from worker.runtime import Runtime, open_runtime
from worker.sending import control, transactional
from worker.sending.dkim import (
    DkimKey,
    Signer,
    generate_key,
    key_pem,
    read_key,
    record_name,
    relaxed_body,
    write_key,
    zone_line,
)
from worker.sending.planning import week_of
from worker.subscribers import queries as subscribers
from worker.subscribers import service as readers

DOMAIN = "news.example.com"
SELECTOR = "nl2026"
REQUIRED = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "mime-version",
    "content-type",
    "feedback-id",
}


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[DkimKey, Path]]:
    """One RSA-2048 and one Ed25519 key for the whole session, written as key files."""
    folder = tmp_path_factory.mktemp("dkim")
    made = {}
    for key_type in ("rsa", "ed25519"):
        key = generate_key(key_type)
        path = folder / f"{key_type}.pem"
        write_key(key, path)
        made[key_type] = (key, path)
    return made


@pytest.fixture(params=["rsa", "ed25519"])
def key_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], keys: dict[str, tuple[DkimKey, Path]], key_type: str
) -> Settings:
    """The test stack's settings with DKIM on (overrides conftest's ``settings``)."""
    return make_settings(
        dkim_domain=DOMAIN, dkim_selector=SELECTOR, dkim_key_file=str(keys[key_type][1])
    )


def dns_for(key: DkimKey) -> Callable[..., bytes | None]:
    """A dnsfunc for dkimpy that publishes ``key`` at our selector and nothing else."""
    published = f"{record_name(SELECTOR, DOMAIN)}.".encode()

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return key.record.encode() if name == published else None

    return lookup


def verifies(data: bytes, key: DkimKey) -> bool:
    return bool(dkim.verify(data, dnsfunc=dns_for(key)))


def signature_tags(data: bytes) -> dict[bytes, bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    match = re.search(rb"^DKIM-Signature:(.*?)\r\n(?=\S)", head, re.S | re.M)
    assert match, "no DKIM-Signature"
    tags: dict[bytes, bytes] = parse_tag_value(match.group(1))
    return tags


def _check_signed(received: Received, key: DkimKey) -> None:
    data = received.data
    assert data.startswith(b"DKIM-Signature:")
    assert verifies(data, key)
    tags = signature_tags(data)
    assert tags[b"d"] == DOMAIN.encode() and tags[b"s"] == SELECTOR.encode()
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"a"] == key.algorithm.encode()
    signed = {h.strip().lower().decode() for h in tags[b"h"].split(b":")}
    present = {k.lower() for k in received.message}
    assert signed >= REQUIRED & present


# --- every kind of mail, through the real pipeline --------------------------------------------


def test_an_edition_arrives_signed_and_dkimpy_verifies_it(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
    keys: dict[str, tuple[DkimKey, Path]],
    key_type: str,
) -> None:
    key = keys[key_type][0]
    now = utcnow()
    week = week_of(now, UTC)
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5)))
    subscribe(rt, ("zoe@example.com", "Zoë  Ångström", ()), ("ada@example.com", "", ()))
    send(rt, week, now)
    worker()

    assert len(smtp.received) == 2
    for received in smtp.received:
        _check_signed(received, key)
        assert set(signature_tags(received.data)[b"h"].replace(b" ", b"").split(b":")) >= {
            h.encode() for h in REQUIRED
        }


def test_a_changed_subject_body_or_an_added_header_breaks_the_signature(
    rt: Runtime,
    worker: Callable[[], None],
    smtp: SmtpHandler,
    keys: dict[str, tuple[DkimKey, Path]],
    key_type: str,
) -> None:
    key = keys[key_type][0]
    now = utcnow()
    load(rt, comparison("dev-duel", "Developer Tools", now - timedelta(minutes=5), title="Duel"))
    subscribe(rt, ("ada@example.com", "Ada", ()))
    send(rt, week_of(now, UTC), now)
    worker()
    [received] = smtp.received
    data = received.data
    assert verifies(data, key)

    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Subject: AI Tool Verdicts: Duel" in head
    changed_subject = head.replace(b"Verdicts: Duel", b"Verdicts: Duet") + b"\r\n\r\n" + body
    assert not verifies(changed_subject, key)

    assert b"Hi Ada," in body
    changed_body = head + b"\r\n\r\n" + body.replace(b"Hi Ada,", b"Hi Bob,", 1)
    assert not verifies(changed_body, key)

    # An added List-Unsubscribe (a one-click link to someone else) is caught: it is oversigned.
    extra = b"List-Unsubscribe: <https://evil.example.com/u>\r\n"
    assert not verifies(extra + data, key)
    # Headers we do not sign may be added on the way (as relays add Received:).
    assert verifies(b"Received: from relay.example.com by mx.example.com\r\n" + data, key)


def test_alerts_confirmations_and_test_sends_are_signed_too(
    rt: Runtime,
    settings: Settings,
    worker: Callable[[], None],
    smtp: SmtpHandler,
    keys: dict[str, tuple[DkimKey, Path]],
    key_type: str,
) -> None:
    key = keys[key_type][0]
    now = utcnow()
    # Published longer ago than NEWSLETTER_ALERT_BATCH_S: its alert is due.
    load(rt, comparison("pen-duel", "Writing", now - timedelta(minutes=11)))
    subscribe(rt, ("quick@example.com", "Quinn", ()), cadence="instant")
    subscribe(rt, ("pending@example.com", "Pat", ()), confirmed=False)

    assert scheduler.send_alerts(settings)
    worker()
    [alert] = smtp.to("quick@example.com")
    _check_signed(alert, key)

    with rt.session() as session:
        pending = subscribers.get_subscriber_by_email(session, "pending@example.com")
    assert pending is not None and pending.id is not None
    assert transactional.send(rt, readers.MAIL_CONFIRM, pending.id) == "sent"
    [confirmation] = smtp.to("pending@example.com")
    _check_signed(confirmation, key)
    assert confirmation.message["List-Unsubscribe"] is None
    # Nobody can add one-click unsubscribe links to a confirmation either.
    tags = signature_tags(confirmation.data)
    assert b"list-unsubscribe" in tags[b"h"]
    added = b"List-Unsubscribe: <https://evil.example.com/u>\r\n"
    assert not verifies(added + confirmation.data, key)

    control.test_send(rt, "operator@example.com", week_of(now, UTC), now)
    [test_mail] = smtp.to("operator@example.com")
    _check_signed(test_mail, key)
    assert test_mail.message["Subject"].startswith("[TEST] ")


# --- canonicalisation, pure -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"plain line\r\n",
        b"two  spaces and   three\r\nnext    line\r\nfive     six      x\r\n",
        b"  \r\nx\r\n",
        b"   run at the start, odd\r\n",
        b"a  \r\n",
        b"trailing space \r\nand a tab\there\r\n",
        b"trailing blank lines\r\n\r\n\r\n",
        b"no final line break",
        b"",
        b"\r\n",
        b"  leading spaces\r\n \r\n",
        b"=2E quoted-printable =\r\nsoft break  x\r\n",
        b"space then bare LF \n x  y\r\n",
    ],
)
def test_our_relaxed_body_is_dkimpys(body: bytes) -> None:
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


@pytest.mark.parametrize("key_type", ["rsa", "ed25519"])
def test_a_message_with_raw_8bit_and_folded_headers_verifies(
    keys: dict[str, tuple[DkimKey, Path]], key_type: str
) -> None:
    key = keys[key_type][0]
    message = (
        "From: Zoë <verdicts@news.example.com>\r\n"
        "To: José <josé@exämple.com>\r\n"
        "Subject:  Zwei   Leerzeichen\r\n\tund gefaltet \r\n"
        "Date: Fri, 27 Nov 2026 15:00:00 +0000\r\n"
        "Message-ID: <x.1@news.example.com>\r\n"
        "\r\n"
        "Grüße  aus\tder Küche \r\n\r\n"
    ).encode().replace(b"gefaltet", b"gefaltet \xfe") + b"\xff not utf-8\r\n"
    signed = Signer(DOMAIN, SELECTOR, key).sign_message(message)
    assert signed.endswith(message)
    assert verifies(signed, key)
    assert not verifies(signed.replace("Küche".encode(), b"Kuche"), key)


# --- keys and configuration -------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_record_to_publish(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "dkim",
            "keygen",
            "--selector",
            "s1",
            "--type",
            "ed25519",
            "--out",
            str(tmp_path / "s1.pem"),
        ],
        cwd=ROOT,
        env={**_clean_env(tmp_path), "NEWSLETTER_MAIL_FROM": "News <hello@news.example.com>"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "s1.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_key(path)
    assert result.stdout.strip() == zone_line("s1", "news.example.com", key)
    assert result.stdout.startswith(
        's1._domainkey.news.example.com. IN TXT "v=DKIM1; k=ed25519; p='
    )
    assert "NEWSLETTER_DKIM_KEY_FILE" in result.stderr

    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "dkim",
            "keygen",
            "--selector",
            "s1",
            "--domain",
            "news.example.com",
            "--out",
            str(path),
        ],
        cwd=ROOT,
        env=_clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: {path} exists: choose another --out or selector"
    assert read_key(path).public_p == key.public_p


def test_an_rsa_record_is_split_into_strings_dns_can_carry() -> None:
    key = generate_key("rsa")
    line = zone_line("s1", "news.example.com", key)
    strings = re.findall(r'"([^"]*)"', line)
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)
    assert "".join(strings) == key.record
    assert key.bits == 2048 and key.record.startswith("v=DKIM1; k=rsa; p=MIIB")


def test_a_key_written_by_keygen_reads_back_as_the_same_key(tmp_path: Path) -> None:
    for key_type in ("rsa", "ed25519"):
        key = generate_key(key_type)
        write_key(key, tmp_path / key_type)
        assert read_key(tmp_path / key_type).public_p == key.public_p
    with pytest.raises(InputError, match="exists"):
        write_key(generate_key("ed25519"), tmp_path / "rsa")


def test_the_raw_ed25519_seed_other_dkim_tools_write_is_read_too(tmp_path: Path) -> None:
    key = generate_key("ed25519")
    seed = key.private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    import base64

    (tmp_path / "seed").write_bytes(base64.b64encode(seed) + b"\n")
    assert read_key(tmp_path / "seed").public_p == key.public_p


def _ec_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _encrypted_key() -> bytes:
    return generate_key("ed25519").private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read: No such file or directory"),
        (b"", "not a PEM private key (RSA or Ed25519)"),
        (b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", "not a PEM"),
        (key_pem(generate_key("ed25519"))[:60], "not a PEM private key"),
        (_encrypted_key(), "encrypted keys are not supported"),
        (_ec_key(), "is not a DKIM key (RSA or Ed25519)"),
    ],
)
def test_a_bad_key_file_is_one_line_naming_the_file(
    make_settings: Callable[..., Settings], tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "dkim.pem"
    if content is not None:
        path.write_bytes(content)
    settings = make_settings(dkim_domain=DOMAIN, dkim_selector=SELECTOR, dkim_key_file=str(path))
    with pytest.raises(ConfigError) as caught:
        open_runtime(settings).close()
    message = str(caught.value)
    assert message.startswith(f"NEWSLETTER_DKIM_KEY_FILE: {path}: ")
    assert problem in message and "\n" not in message


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"dkim_domain": DOMAIN}, "NEWSLETTER_DKIM_SELECTOR and NEWSLETTER_DKIM_KEY_FILE"),
        ({"dkim_selector": SELECTOR}, "NEWSLETTER_DKIM_DOMAIN and NEWSLETTER_DKIM_KEY_FILE"),
        ({"dkim_domain": DOMAIN, "dkim_key_file": "k.pem"}, "NEWSLETTER_DKIM_SELECTOR"),
        ({"dkim_selector": SELECTOR, "dkim_key_file": "k.pem"}, "NEWSLETTER_DKIM_DOMAIN"),
    ],
)
def test_one_or_two_dkim_settings_are_an_error_naming_the_missing_ones(
    tmp_path: Path, given: dict[str, str], missing: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir=tmp_path, **given)
    assert caught.value.variable == missing
    assert str(caught.value).startswith(f"{missing}: not set")


def test_none_of_the_dkim_settings_means_unsigned_mail(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert (settings.dkim_domain, settings.dkim_selector, settings.dkim_key_file) == (None,) * 3


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dkim_domain", "not a domain"),
        ("dkim_domain", "localhost"),
        ("dkim_selector", "bad selector"),
        ("dkim_selector", "-dash"),
    ],
)
def test_a_malformed_domain_or_selector_is_refused(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir=tmp_path, **{field: value})
    assert caught.value.variable == f"NEWSLETTER_{field.upper()}"


def test_the_cli_says_what_is_missing_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "status", "--week", "2026-W48"],
        cwd=ROOT,
        env={**_clean_env(tmp_path), "NEWSLETTER_DKIM_DOMAIN": DOMAIN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: NEWSLETTER_DKIM_SELECTOR and NEWSLETTER_DKIM_KEY_FILE: not set"
    )
    assert result.stderr.count("\n") == 1


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_DATA_DIR"] = str(tmp_path / "data")
    return env
