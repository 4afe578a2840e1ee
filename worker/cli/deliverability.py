"""``newsletter dkim keygen`` and ``newsletter doctor``: what inbox providers check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from worker.cli.app import app, dkim_app, err, out
from worker.config import load_settings
from worker.errors import InputError


@dkim_app.command("keygen")
def dkim_keygen(
    selector: Annotated[str, typer.Option("--selector", help="Selector, e.g. nl2026.")],
    key_type: Annotated[
        str, typer.Option("--type", help="rsa (2048 bits, read everywhere) or ed25519.")
    ] = "rsa",
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Key file to write (default: <data dir>/dkim/<selector>.pem)."),
    ] = None,
    domain: Annotated[
        str | None,
        typer.Option(help="Signing domain (default: NEWSLETTER_DKIM_DOMAIN or the From domain)."),
    ] = None,
) -> None:
    """Write a new DKIM private key (mode 0600) and print the DNS TXT record to publish."""
    from worker.errors import ConfigError
    from worker.sending import dkim
    from worker.sending.doctor import reserved

    given = {"dkim_selector": selector} | ({"dkim_domain": domain} if domain else {})
    try:
        settings = load_settings(check_dkim=False, **given)
    except ConfigError as exc:
        option = {"NEWSLETTER_DKIM_SELECTOR": "--selector", "NEWSLETTER_DKIM_DOMAIN": "--domain"}
        if exc.variable not in option:
            raise
        raise InputError(f"{option[exc.variable]}: {exc.problem}") from None
    assert settings.dkim_selector
    selector = settings.dkim_selector
    signing_domain = settings.dkim_domain or settings.mail_domain
    if reserved(signing_domain):
        raise InputError(
            f"{signing_domain} is not a domain receivers can look up: "
            "give --domain or set NEWSLETTER_DKIM_DOMAIN"
        )
    path = out_file or settings.data_dir / "dkim" / f"{selector}.pem"
    key = dkim.generate_key(key_type)
    dkim.write_key(key, path)
    err.print(f"wrote {path.resolve()} ({key.key_type}, {key.bits} bits, mode 0600)")
    err.print(f"publish this TXT record at {dkim.record_name(selector, signing_domain)}:")
    out.print(dkim.zone_line(selector, signing_domain, key), markup=False, soft_wrap=True)
    err.print(
        f"then set NEWSLETTER_DKIM_DOMAIN={signing_domain} NEWSLETTER_DKIM_SELECTOR={selector} "
        f"NEWSLETTER_DKIM_KEY_FILE={path.resolve()}",
        markup=False,
    )


@app.command()
def doctor(
    nameserver: Annotated[
        str | None,
        typer.Option(help="Ask this DNS server (IP[:port]), e.g. your domain's, not the system's."),
    ] = None,
) -> None:
    """Check SPF, DKIM and DMARC records against the settings, and the settings themselves."""
    from worker.sending.doctor import DnsResolver, Setup, run_checks

    resolver = DnsResolver(nameserver)
    checks = run_checks(Setup.from_settings(load_settings()), resolver)
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    width = max(len(c.name) for c in checks)
    for check in checks:
        out.print(
            f"[{colour[check.status]}]{check.status:<4}[/] {check.name:<{width}}  ",
            end="",
        )
        out.print(check.detail, markup=False, soft_wrap=True)
    failed = sum(c.status == "fail" for c in checks)
    if failed:
        err.print(f"{failed} check(s) failed")
        raise typer.Exit(1)
