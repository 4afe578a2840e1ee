"""Configuration: every bad value is one line naming the variable; secrets are made once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker.config import load_settings
from worker.errors import ConfigError


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("NEWSLETTER_SEND_RATE", "fast", "valid number"),
        ("NEWSLETTER_SEND_RATE", "-1", "greater than or equal to 0"),
        ("NEWSLETTER_DIGEST_MAX", "0", "greater than or equal to 1"),
        ("NEWSLETTER_TIMEZONE", "Mars/Olympus", "unknown time zone"),
        ("NEWSLETTER_WEEKLY_CRON", "every friday", "crontab"),
        ("NEWSLETTER_SMTP_URL", "http://mail.example.com", "smtp://"),
        ("NEWSLETTER_SMTP_URL", "smtp://mail.example.com:99999", "port"),
        ("NEWSLETTER_DATABASE_URL", "mysql://x", "sqlite:///"),
        ("NEWSLETTER_REDIS_URL", "localhost:6379", "redis://"),
        ("NEWSLETTER_PUBLIC_URL", "news.example.com", "http"),
        ("NEWSLETTER_SUBSCRIBE_RATE", "lots", "COUNT/second"),
        ("NEWSLETTER_DOMAIN_RATES", "gmail.com:20", "DOMAIN=COUNT/PERIOD"),
        ("NEWSLETTER_MAIL_FROM", "Verdicts <v@example.com>\r\nBcc: x@example.com", "line breaks"),
        ("NEWSLETTER_STUCK_AFTER_S", "1", "greater than or equal to 5"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(f"{variable}: ")
    assert message.lower() in str(info.value).lower()


def test_secrets_are_generated_once_and_kept_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(tmp_path / "data"))
    first = load_settings()
    second = load_settings()
    assert first.secret_key and first.secret_key == second.secret_key
    assert first.operator_token and first.operator_token == second.operator_token
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0


def test_given_secrets_win_over_the_kept_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSLETTER_OPERATOR_TOKEN", "op-token")
    assert load_settings().operator_token == "op-token"


def test_the_cli_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "status"],
        env={
            "NEWSLETTER_DATA_DIR": str(tmp_path),
            "NEWSLETTER_DIGEST_MAX": "many",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: NEWSLETTER_DIGEST_MAX: Input should be a valid integer, unable to parse string "
        "as an integer"
    ]
    assert "Traceback" not in result.stderr
