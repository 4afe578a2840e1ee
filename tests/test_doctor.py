"""`newsletter doctor`: SPF, DKIM and DMARC records judged against the settings, from a table of
cases over a resolver that answers from a dict, and once through the CLI against a real (local)
DNS server."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.dns_server import DnsServer
from worker.errors import LookupFailed
from worker.sending.dkim import generate_key, write_key
from worker.sending.doctor import (
    Setup,
    aligned,
    organizational_domain,
    run_checks,
)

KEY = generate_key("rsa")
OTHER_KEY = generate_key("rsa")
ED_KEY = generate_key("ed25519")
SELECTOR_NAME = "nl2026._domainkey.news.example.com"
GOOD_SPF = "v=spf1 ip4:192.0.2.10 include:_spf.mailer.example.net -all"
GOOD_DMARC = "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com"

RECORDS: dict[str, list[str] | Exception] = {
    SELECTOR_NAME: [KEY.record],
    "news.example.com": ["google-site-verification=abc", GOOD_SPF],
    "_dmarc.example.com": [GOOD_DMARC],
}
SETUP = Setup(
    from_domain="news.example.com",
    envelope_domain="news.example.com",
    public_url="https://news.example.com",
    real_smtp=True,
    postal_address="1 Main Street, Springfield",
    dkim_domain="news.example.com",
    dkim_selector="nl2026",
    key=KEY,
)
NAMES = [
    "public URL",
    "From domain",
    "postal address",
    "DKIM key",
    "DKIM record",
    "SPF",
    "DMARC",
    "DMARC alignment",
]


class TableResolver:
    """TXT records from a dict; an exception in the dict is raised, as a failed lookup."""

    def __init__(self, records: Mapping[str, list[str] | Exception]) -> None:
        self.records = records
        self.asked: list[str] = []

    def txt(self, name: str) -> list[str]:
        self.asked.append(name)
        value = self.records.get(name, [])
        if isinstance(value, Exception):
            raise value
        return list(value)


def test_a_domain_set_up_right_passes_every_check() -> None:
    checks = run_checks(SETUP, TableResolver(RECORDS))
    assert [c.name for c in checks] == NAMES
    assert [c.status for c in checks] == ["ok"] * len(NAMES), checks
    by_name = {c.name: c for c in checks}
    assert by_name["DKIM record"].detail == f"{SELECTOR_NAME} publishes the configured key"
    assert by_name["DMARC"].detail == "_dmarc.example.com: p=quarantine"
    assert by_name["SPF"].detail == f"news.example.com: {GOOD_SPF}"


def _setup(**changes: Any) -> Setup:
    return dataclasses.replace(SETUP, **changes)


# (setup, dns changes as name → records / None to remove / an exception) → check, status, text
CASES = [
    # settings
    (_setup(public_url="http://news.example.com"), {}, "public URL", "fail", "not https"),
    (
        _setup(public_url="http://localhost:8000", real_smtp=False),
        {},
        "public URL",
        "warn",
        "fine while mail goes to the outbox",
    ),
    (_setup(postal_address=None), {}, "postal address", "fail", "NEWSLETTER_POSTAL_ADDRESS"),
    (_setup(postal_address=None, real_smtp=False), {}, "postal address", "warn", "CAN-SPAM"),
    (_setup(from_domain="localhost"), {}, "From domain", "fail", "NEWSLETTER_MAIL_FROM"),
    (_setup(from_domain="news.test"), {}, "From domain", "fail", "cannot be looked up"),
    # DKIM
    (_setup(dkim_domain=None, dkim_selector=None, key=None), {}, "DKIM", "warn", "not signed"),
    (_setup(key=None, key_problem="/k.pem: cannot read"), {}, "DKIM key", "fail", "/k.pem"),
    (_setup(key_shared=True), {}, "DKIM key", "warn", "chmod 600"),
    (_setup(), {SELECTOR_NAME: None}, "DKIM record", "fail", f"publish `{KEY.record}`"),
    (_setup(), {SELECTOR_NAME: ["some other text"]}, "DKIM record", "fail", "no DKIM record"),
    (_setup(), {SELECTOR_NAME: [OTHER_KEY.record]}, "DKIM record", "fail", "another key"),
    (_setup(), {SELECTOR_NAME: ["v=DKIM1; k=rsa; p="]}, "DKIM record", "fail", "revoked"),
    (_setup(), {SELECTOR_NAME: [KEY.record] * 2}, "DKIM record", "fail", "2 DKIM records"),
    (_setup(), {SELECTOR_NAME: [ED_KEY.record]}, "DKIM record", "fail", "k=ed25519"),
    (_setup(), {SELECTOR_NAME: [KEY.record + "; h=sha1"]}, "DKIM record", "fail", "sha256"),
    (_setup(), {SELECTOR_NAME: [KEY.record + "; t=y"]}, "DKIM record", "warn", "t=y"),
    (_setup(key=ED_KEY), {SELECTOR_NAME: [ED_KEY.record]}, "DKIM record", "ok", "configured key"),
    (
        _setup(),
        {SELECTOR_NAME: LookupFailed("timed out")},
        "DKIM record",
        "fail",
        f"DNS lookup of {SELECTOR_NAME} failed: timed out",
    ),
    # SPF, on the envelope domain
    (_setup(), {"news.example.com": ["google-site-verification=abc"]}, "SPF", "fail", "no SPF"),
    (_setup(), {"news.example.com": [GOOD_SPF, "v=spf1 -all"]}, "SPF", "fail", "2 SPF records"),
    (_setup(), {"news.example.com": ["v=spf1 +all"]}, "SPF", "fail", "lets anyone send"),
    (_setup(), {"news.example.com": ["v=spf1 a mx"]}, "SPF", "warn", "protects nothing"),
    (_setup(), {"news.example.com": ["v=spf1 mx ~all"]}, "SPF", "ok", "~all"),
    (_setup(), {"news.example.com": ["v=spf1 redirect=_spf.example.com"]}, "SPF", "ok", ""),
    (
        _setup(envelope_domain="bounces.example.com"),
        {"bounces.example.com": [GOOD_SPF]},
        "SPF",
        "ok",
        "bounces.example.com",
    ),
    (_setup(envelope_domain="localhost"), {}, "SPF", "fail", "NEWSLETTER_BOUNCE_ADDRESS"),
    # DMARC: at the From domain, else at its organizational domain
    (_setup(), {"_dmarc.example.com": None}, "DMARC", "fail", "no DMARC record"),
    (
        _setup(),
        {"_dmarc.news.example.com": ["v=DMARC1; p=reject"]},
        "DMARC",
        "ok",
        "_dmarc.news.example.com: p=reject (no rua=",
    ),
    (_setup(), {"_dmarc.example.com": ["v=DMARC1; p=bogus"]}, "DMARC", "fail", "no valid p="),
    (_setup(), {"_dmarc.example.com": [GOOD_DMARC] * 2}, "DMARC", "fail", "2 DMARC records"),
    # alignment of DKIM and SPF domains with From
    (
        _setup(envelope_domain="bounces.esp.example.net"),
        {"bounces.esp.example.net": [GOOD_SPF]},
        "DMARC alignment",
        "warn",
        "does not align with the envelope domain bounces.esp.example.net",
    ),
    (
        _setup(dkim_domain="esp.example.net"),
        {"nl2026._domainkey.esp.example.net": [KEY.record]},
        "DMARC alignment",
        "warn",
        "does not align with the DKIM domain esp.example.net",
    ),
    (
        _setup(dkim_domain="esp.example.net", envelope_domain="esp.example.net"),
        {"nl2026._domainkey.esp.example.net": [KEY.record], "esp.example.net": [GOOD_SPF]},
        "DMARC alignment",
        "fail",
        "DMARC fails for every mail",
    ),
    (
        _setup(dkim_domain="mail.example.com", envelope_domain="bounce.example.com"),
        {"nl2026._domainkey.mail.example.com": [KEY.record], "bounce.example.com": [GOOD_SPF]},
        "DMARC alignment",
        "ok",
        "",
    ),
    (
        _setup(dkim_domain="example.com"),
        {
            "nl2026._domainkey.example.com": [KEY.record],
            "_dmarc.example.com": ["v=DMARC1; p=reject; adkim=s"],
        },
        "DMARC alignment",
        "warn",
        "DKIM domain example.com",
    ),
    (
        _setup(dkim_domain=None, dkim_selector=None, key=None, envelope_domain="esp.example.net"),
        {"esp.example.net": [GOOD_SPF]},
        "DMARC alignment",
        "fail",
        "mail is not signed",
    ),
]


@pytest.mark.parametrize(("setup", "dns", "name", "status", "text"), CASES)
def test_each_finding_gets_its_status_and_says_why(
    setup: Setup, dns: dict[str, list[str] | Exception | None], name: str, status: str, text: str
) -> None:
    records = dict(RECORDS)
    for record_name, value in dns.items():
        if value is None:
            records.pop(record_name, None)
        else:
            records[record_name] = value
    checks = {c.name: c for c in run_checks(setup, TableResolver(records))}
    assert (checks[name].status, name) == (status, name), checks[name]
    assert text in checks[name].detail


@pytest.mark.parametrize(
    ("domain", "organizational"),
    [
        ("example.com", "example.com"),
        ("news.example.com", "example.com"),
        ("a.b.news.example.com", "example.com"),
        ("news.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("mail.example.de", "example.de"),
    ],
)
def test_the_organizational_domain(domain: str, organizational: str) -> None:
    assert organizational_domain(domain) == organizational


@pytest.mark.parametrize(
    ("from_domain", "other", "strict", "expected"),
    [
        ("news.example.com", "news.example.com", True, True),
        ("news.example.com", "example.com", True, False),
        ("news.example.com", "example.com", False, True),
        ("news.example.com", "mail.example.com", False, True),
        ("news.example.com", "example.net", False, False),
        ("News.Example.com", "news.example.COM", True, True),
    ],
)
def test_dmarc_alignment(from_domain: str, other: str, strict: bool, expected: bool) -> None:
    assert aligned(from_domain, other, strict) is expected


# --- the command, against a DNS server on 127.0.0.1 --------------------------------------------


def _doctor(tmp_path: Path, server: DnsServer, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "doctor", "--nameserver", server.address],
        cwd=ROOT,
        env={**base, "NEWSLETTER_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_prints_one_line_per_check_and_exits_0_when_nothing_fails(tmp_path: Path) -> None:
    key_file = tmp_path / "nl2026.pem"
    write_key(KEY, key_file)
    settings = {
        "NEWSLETTER_MAIL_FROM": "Weekly AI Tool Verdicts <verdicts@news.example.com>",
        "NEWSLETTER_BOUNCE_ADDRESS": "bounces@news.example.com",
        "NEWSLETTER_PUBLIC_URL": "https://news.example.com",
        "NEWSLETTER_SMTP_URL": "smtp://127.0.0.1:2525",
        "NEWSLETTER_POSTAL_ADDRESS": "1 Main Street, Springfield",
        "NEWSLETTER_DKIM_DOMAIN": "news.example.com",
        "NEWSLETTER_DKIM_SELECTOR": "nl2026",
        "NEWSLETTER_DKIM_KEY_FILE": str(key_file),
    }
    records = {name: value for name, value in RECORDS.items() if isinstance(value, list)}
    with DnsServer(records) as server:
        good = _doctor(tmp_path, server, **settings)
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * len(NAMES)
    assert lines[4].split()[1:4] == ["DKIM", "record", SELECTOR_NAME]

    with DnsServer({**records, SELECTOR_NAME: [OTHER_KEY.record]}) as server:
        bad = _doctor(tmp_path, server, **settings)
    assert bad.returncode == 1
    [failed] = [line for line in bad.stdout.splitlines() if line.startswith("fail")]
    assert "another key than the one in NEWSLETTER_DKIM_KEY_FILE" in failed
    assert bad.stderr.strip() == "1 check(s) failed"


def test_doctor_with_half_the_dkim_settings_says_which_are_missing(tmp_path: Path) -> None:
    with DnsServer({}) as server:
        result = _doctor(tmp_path, server, NEWSLETTER_DKIM_SELECTOR="nl2026")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: NEWSLETTER_DKIM_DOMAIN and NEWSLETTER_DKIM_KEY_FILE: not set"
    )
