"""Settings: the only reader of the environment.

Built once at each entry point (CLI command, web app, worker, scheduler) and passed down as an
argument. Pure modules never import this.
"""

from __future__ import annotations

import os
import re
import secrets
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError

PREFIX = "NEWSLETTER_"
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(second|minute|hour|s|m|h)\s*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)+[A-Za-z0-9-]{{2,63}}$")
_SELECTOR = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_SENDER_ID = re.compile(r"^[A-Za-z0-9._-]{5,15}$")
_PER_S = {"second": 1.0, "s": 1.0, "minute": 60.0, "m": 60.0, "hour": 3600.0, "h": 3600.0}


def parse_rate(text: str) -> tuple[float, float]:
    """Parse ``"10/minute"`` or ``"0.5/s"`` into (count, period in seconds); the count may be
    fractional but not zero."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected COUNT/second|minute|hour with COUNT > 0, got {text!r}")
    return float(match.group(1)), _PER_S[match.group(2)]


def per_second(text: str) -> float:
    """A rate as messages per second: ``"0.5/s"`` → 0.5, ``"30/minute"`` → 0.5."""
    count, period_s = parse_rate(text)
    return count / period_s


def parse_domain_rates(text: str) -> dict[str, float]:
    """Parse ``"gmail.com=20/s,yahoo.com=5/s"`` into messages per second per domain."""
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        domain, sep, rate = item.partition("=")
        if not sep or not domain.strip():
            raise ValueError(f"expected DOMAIN=COUNT/PERIOD, got {item!r}")
        rates[domain.strip().lower()] = per_second(rate)
    return rates


class Settings(BaseSettings):
    """Every setting, from ``NEWSLETTER_*`` environment variables; all optional."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    redis_url: str | None = None
    smtp_url: str | None = None
    public_url: str = "http://localhost:8000"
    secret_key: str | None = None
    operator_token: str | None = None
    metrics_token: str | None = None
    """Bearer token that may read ``/metrics`` (the operator token always may)."""
    mail_from: str = "Weekly AI Tool Verdicts <verdicts@localhost>"
    bounce_address: str = "bounces@localhost"
    send_rate: float = Field(default=0.0, ge=0)
    domain_rates: str = ""
    weekly_cron: str = "0 15 * * fri"
    timezone: str = "UTC"
    misfire_grace_s: int = Field(default=21600, ge=0)
    digest_max: int = Field(default=10, ge=1, le=100)
    subscribe_rate: str = "10/minute"
    stuck_after_s: int = Field(default=120, ge=5)
    smtp_data_timeout_s: float = Field(default=600.0, gt=0)
    retry_min_s: float = Field(default=15.0, gt=0)
    retry_max_s: float = Field(default=3600.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=50)
    queue_window: int = Field(default=20_000, ge=10)
    sweep_interval_s: float = Field(default=10.0, gt=0)
    soft_bounce_limit: int = Field(default=3, ge=1)
    soft_bounce_window_days: int = Field(default=30, ge=1)
    check_deliverability: bool = False
    worker_threads: int = Field(default=16, ge=1, le=256)
    bounce_mailbox: str | None = None
    bounce_mailbox_ca_file: Path | None = None
    bounce_poll_interval_s: float = Field(default=60.0, gt=0)
    ses_topic_arns: str = ""
    sns_certificate_file: Path | None = None
    sendgrid_public_key: str | None = None
    postmark_username: str | None = None
    postmark_password: str | None = None
    mailgun_signing_key: str | None = None
    postal_address: str | None = None
    edition_intro: str = ""
    alert_batch_s: int = Field(default=600, ge=0)
    site_url: str | None = None
    log_level: str = "INFO"
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_key_file: Path | None = None
    feedback_sender_id: str = "verdicts"
    autopause_bounce_rate: float = Field(default=0.05, ge=0, le=1)
    """Over an edition's last 500 attempts, a hard-bounce or failure rate above this pauses it
    (0: never)."""
    console_login_rate: str = "5/minute"
    """Sign-in attempts at the console per client IP (then 429)."""
    console_session_s: int = Field(default=8 * 3600, ge=60)
    """How long a console session lasts without use."""

    @field_validator("send_rate", mode="before")
    @classmethod
    def _send_rate(cls, value: object) -> object:
        # Messages per second, as a number ("0.5") or a rate ("30/minute", "0.5/s").
        if isinstance(value, str) and "/" in value:
            return per_second(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("site_url")
    @classmethod
    def _site_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("must look like smtp://[user:pass@]host:port or smtps://…")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value.replace("postgresql://", "postgresql+psycopg://", 1).replace(
            "postgres://", "postgresql+psycopg://", 1
        )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("bounce_mailbox")
    @classmethod
    def _mailbox(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
            raise ValueError("must look like imaps://user:pass@host/INBOX")
        return value

    @field_validator("bounce_mailbox_ca_file", mode="before")
    @classmethod
    def _bounce_mailbox_ca_file(cls, value: object) -> object:
        if value is None or value == "":
            return None
        path = Path(str(value))
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot read CA certificates from {path}: {exc}") from None
        return path

    @field_validator("sns_certificate_file", mode="before")
    @classmethod
    def _sns_certificate_file(cls, value: object) -> object:
        if value is None or value == "":
            return None
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa

        path = Path(str(value))
        try:
            certificates = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read PEM certificates from {path}: {exc}") from None
        if not any(isinstance(c.public_key(), rsa.RSAPublicKey) for c in certificates):
            raise ValueError(f"{path} holds no certificate with an RSA key")
        return path

    @field_validator("dkim_domain")
    @classmethod
    def _dkim_domain(cls, value: str | None) -> str | None:
        if not value:
            return None
        value = value.strip().rstrip(".").lower()
        if not _DOMAIN.match(value):
            raise ValueError(f"not a domain name: {value!r}")
        return value

    @field_validator("dkim_selector")
    @classmethod
    def _dkim_selector(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _SELECTOR.match(value.strip()):
            raise ValueError("letters, digits and '-', with '.' between labels (e.g. nl2026)")
        return value.strip()

    @field_validator("dkim_key_file", mode="before")
    @classmethod
    def _dkim_key_file(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("feedback_sender_id")
    @classmethod
    def _feedback_sender_id(cls, value: str) -> str:
        # Gmail's feedback loop reads 5 to 15 characters; ":" separates Feedback-ID's fields.
        if not _SENDER_ID.match(value):
            raise ValueError("5 to 15 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("weekly_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression ({exc})") from None
        return value

    @field_validator("subscribe_rate", "console_login_rate")
    @classmethod
    def _subscribe_rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("domain_rates")
    @classmethod
    def _domain_rates(cls, value: str) -> str:
        parse_domain_rates(value)
        return value

    @field_validator("mail_from", "bounce_address")
    @classmethod
    def _no_newlines(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("must not contain line breaks")
        if "@" not in value:
            raise ValueError("must contain an email address")
        return value

    # --- derived values ----------------------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        """The time zone weeks are counted in."""
        return ZoneInfo(self.timezone)

    @property
    def outbox_dir(self) -> Path:
        """Where messages go when no SMTP server is configured."""
        return self.data_dir / "outbox"

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'newsletter.db').resolve()}"

    @property
    def domain_rate_per_s(self) -> dict[str, float]:
        """Per-recipient-domain limits in messages per second."""
        return parse_domain_rates(self.domain_rates)

    @property
    def mail_domain(self) -> str:
        """The domain of the From address, used in Message-IDs and List-Id."""
        return self.mail_from.rsplit("@", 1)[1].strip(" >").lower()

    @property
    def bounce_local_part(self) -> str:
        """The local part of the bounce address (``bounces``)."""
        return self.bounce_address.rsplit("@", 1)[0].strip().lower()

    @property
    def bounce_domain(self) -> str:
        """The domain of the bounce address; VERP addresses live there."""
        return self.bounce_address.rsplit("@", 1)[1].strip().lower()


def _describe(error: Mapping[str, Any]) -> ConfigError:
    field = str(error["loc"][0]) if error.get("loc") else "?"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return ConfigError(PREFIX + field.upper(), message)


def _secret(data_dir: Path, name: str, given: str | None) -> str:
    """Return ``given`` or a value generated once and kept in ``data_dir/name``."""
    if given:
        return given
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    # Two processes starting at once must agree: create exclusively, and on a race read theirs.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _check_dkim(settings: Settings) -> None:
    """DKIM needs its three settings together: a partial set is a mistake, not "off"."""
    given = {
        f"{PREFIX}DKIM_DOMAIN": settings.dkim_domain,
        f"{PREFIX}DKIM_SELECTOR": settings.dkim_selector,
        f"{PREFIX}DKIM_KEY_FILE": settings.dkim_key_file,
    }
    missing = [name for name, value in given.items() if not value]
    if missing and len(missing) < len(given):
        raise ConfigError(
            " and ".join(missing),
            "not set; DKIM signing needs all three of " + ", ".join(given) + " (or none of them)",
        )


def load_settings(*, check_dkim: bool = True, **overrides: Any) -> Settings:
    """Read the environment (plus ``overrides``), create the data dir and fill in the secrets.

    ``check_dkim=False`` lets ``dkim keygen`` run while the DKIM settings are half set up.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise _describe(exc.errors()[0]) from None
    if check_dkim:
        _check_dkim(settings)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        secret_key = _secret(settings.data_dir, "secret_key", settings.secret_key)
        token = _secret(settings.data_dir, "operator_token", settings.operator_token)
    except OSError as exc:
        raise ConfigError(f"{PREFIX}DATA_DIR", f"cannot use {settings.data_dir}: {exc}") from exc
    return settings.model_copy(update={"secret_key": secret_key, "operator_token": token})
