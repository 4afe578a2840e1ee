"""The deliverability check behind ``newsletter doctor``: do the DNS records inbox providers
read (SPF, DKIM, DMARC) exist and agree with the settings, and are the settings fit to mail
real readers?

``Setup`` is what the settings say (and the key file holds); ``run_checks`` asks a resolver
for TXT records and returns one ``Check`` per line of the report. The resolver is an argument:
``DnsResolver`` uses dnspython, tests pass an object that answers from a table.
"""

from __future__ import annotations

import ipaddress
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from dkim.util import InvalidTagValueList, parse_tag_value

from worker.errors import ConfigError, InputError, LookupFailed
from worker.sending.dkim import DkimKey, read_key, record_name

if TYPE_CHECKING:
    from worker.config import Settings

Status = Literal["ok", "warn", "fail"]

# Top-level domains that no inbox provider can look up (RFC 2606, RFC 6761, RFC 6762).
_RESERVED_TLDS = ("localhost", "test", "example", "invalid", "local")


class TxtResolver(Protocol):
    """Gives the TXT records at a name, each as one string ([] when there are none)."""

    def txt(self, name: str) -> list[str]:
        """TXT records at ``name``; raises LookupFailed when the answer is unknown."""
        ...


def nameserver_address(text: str) -> tuple[str, int]:
    """``ip`` or ``ip:port`` (an IPv6 address without a port) as (ip, port)."""
    host, port = text, "53"
    if text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise InputError(f"{text!r} is not an IP address with an optional :port") from None
    if not 0 < number < 65536:
        raise InputError(f"{text!r}: port out of range")
    return host, number


class DnsResolver:
    """DNS through dnspython: the machine's resolver, or one server (``ip`` or ``ip:port``),
    such as the domain's own, to check records before they have spread."""

    def __init__(self, nameserver: str | None = None, timeout_s: float = 5.0) -> None:
        self.server = nameserver_address(nameserver) if nameserver else None
        self.timeout_s = timeout_s

    def txt(self, name: str) -> list[str]:
        """TXT records at ``name``; raises LookupFailed when the answer is unknown."""
        import dns.exception
        import dns.resolver

        try:
            resolver = dns.resolver.Resolver(configure=self.server is None)
            if self.server is not None:
                resolver.nameservers = [self.server[0]]
                resolver.port = self.server[1]
            resolver.lifetime = self.timeout_s
            answer = resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise LookupFailed(str(exc) or type(exc).__name__) from exc
        return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    status: Status
    name: str
    detail: str


@dataclass(frozen=True)
class Setup:
    """The facts the checks judge, taken from the settings and the key file."""

    from_domain: str
    envelope_domain: str
    public_url: str
    real_smtp: bool
    postal_address: str | None = None
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    key: DkimKey | None = None
    key_problem: str | None = None
    key_shared: bool = False  # the key file can be read by others than its owner

    @classmethod
    def from_settings(cls, settings: Settings) -> Setup:
        """Read what the checks need; a key file that cannot be used becomes a finding."""
        key, problem, shared = None, None, False
        path = settings.dkim_key_file
        if settings.dkim_domain and path is not None:
            try:
                key = read_key(Path(path))
            except ConfigError as exc:
                problem = exc.problem
            else:
                shared = bool(Path(path).stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
        return cls(
            from_domain=settings.mail_domain,
            envelope_domain=settings.bounce_domain,
            public_url=settings.public_url,
            real_smtp=bool(settings.smtp_url),
            postal_address=settings.postal_address or None,
            dkim_domain=settings.dkim_domain,
            dkim_selector=settings.dkim_selector,
            key=key,
            key_problem=problem,
            key_shared=shared,
        )


# --- helpers -------------------------------------------------------------------------------


def organizational_domain(domain: str) -> str:
    """DMARC's organizational domain, approximately: the registered name under its public
    suffix, taking a two-letter country code's short second level (co.uk, com.au) as part of
    the suffix. Without the Public Suffix List this can err on rarer suffixes."""
    labels = domain.lower().rstrip(".").split(".")
    keep = 2
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        keep = 3
    return ".".join(labels[-keep:])


def aligned(from_domain: str, other: str, strict: bool) -> bool:
    """DMARC identifier alignment (RFC 7489 §3.1): the same domain when strict, the same
    organizational domain when relaxed."""
    if strict:
        return from_domain.lower() == other.lower()
    return organizational_domain(from_domain) == organizational_domain(other)


def reserved(domain: str) -> bool:
    """True for a domain that no inbox provider can look up (localhost, *.test, …)."""
    domain = domain.lower().rstrip(".")
    return "." not in domain or domain.rsplit(".", 1)[1] in _RESERVED_TLDS


def _tags(record: str) -> dict[str, str] | None:
    try:
        parsed = parse_tag_value(record.encode())
    except InvalidTagValueList:
        return None
    return {k.decode().lower(): v.decode() for k, v in parsed.items()}


def _lookup(resolver: TxtResolver, name: str, prefix: str) -> tuple[list[str], str | None]:
    """The TXT records at ``name`` that start with ``prefix``, or the lookup's failure."""
    try:
        records = resolver.txt(name)
    except LookupFailed as exc:
        return [], f"DNS lookup of {name} failed: {exc}"
    return [r for r in records if r.strip().lower().startswith(prefix.lower())], None


# --- the checks --------------------------------------------------------------------------------


def check_settings(setup: Setup) -> list[Check]:
    """What the settings alone say: links, sender address, postal address."""
    checks = []
    production = setup.real_smtp
    if setup.public_url.startswith("https://"):
        checks.append(Check("ok", "public URL", f"{setup.public_url} (https)"))
    else:
        checks.append(
            Check(
                "fail" if production else "warn",
                "public URL",
                f"{setup.public_url} is not https: one-click unsubscribe (RFC 8058) needs an "
                "https link" + ("" if production else "; fine while mail goes to the outbox"),
            )
        )
    if reserved(setup.from_domain):
        checks.append(
            Check(
                "fail" if production else "warn",
                "From domain",
                f"{setup.from_domain} cannot be looked up by inbox providers: set "
                "NEWSLETTER_MAIL_FROM to an address at your domain",
            )
        )
    else:
        checks.append(Check("ok", "From domain", setup.from_domain))
    if setup.postal_address:
        checks.append(Check("ok", "postal address", "NEWSLETTER_POSTAL_ADDRESS is set"))
    else:
        checks.append(
            Check(
                "fail" if production else "warn",
                "postal address",
                "NEWSLETTER_POSTAL_ADDRESS is not set: bulk mail must show the sender's postal "
                "address (CAN-SPAM)",
            )
        )
    return checks


def check_dkim(setup: Setup, resolver: TxtResolver) -> list[Check]:
    """Is mail signed, and does the selector record publish the configured key?"""
    if not setup.dkim_domain or not setup.dkim_selector:
        return [
            Check(
                "warn",
                "DKIM",
                "mail is not signed: run `newsletter dkim keygen --selector S`, publish the "
                "record and set NEWSLETTER_DKIM_DOMAIN, _SELECTOR and _KEY_FILE",
            )
        ]
    if setup.key is None:
        return [Check("fail", "DKIM key", setup.key_problem or "no key file")]
    key = setup.key
    checks = []
    if setup.key_shared:
        checks.append(Check("warn", "DKIM key", "the key file can be read by others: chmod 600 it"))
    elif key.key_type == "rsa" and key.bits < 2048:
        checks.append(Check("warn", "DKIM key", f"RSA {key.bits} bits: 2048 is the norm now"))
    else:
        checks.append(Check("ok", "DKIM key", f"{key.key_type}, {key.bits} bits"))
    name = record_name(setup.dkim_selector, setup.dkim_domain)
    records, failure = _lookup(resolver, name, "")
    if failure:
        return [*checks, Check("fail", "DKIM record", failure)]
    # A selector's records that are not DKIM keys (no p= tag) do not count.
    keys = [(r, t) for r in records if (t := _tags(r)) is not None and "p" in t]
    if not keys:
        return [
            *checks,
            Check("fail", "DKIM record", f"no DKIM record at {name}: publish `{key.record}`"),
        ]
    if len(keys) > 1:
        return [*checks, Check("fail", "DKIM record", f"{len(keys)} DKIM records at {name}")]
    [(_record, tags)] = keys
    published = "".join(tags["p"].split())
    if tags.get("v", "DKIM1") != "DKIM1":
        problem = f"v={tags['v']}, expected DKIM1"
    elif not published:
        problem = "the key is revoked (empty p=)"
    elif tags.get("k", "rsa").lower() != key.key_type:
        problem = f"k={tags.get('k', 'rsa')} but the key file holds an {key.key_type} key"
    elif "h" in tags and "sha256" not in tags["h"].lower():
        problem = f"h={tags['h']} does not allow sha256"
    elif published != key.public_p:
        problem = "it publishes another key than the one in NEWSLETTER_DKIM_KEY_FILE"
    else:
        problem = None
    if problem:
        return [*checks, Check("fail", "DKIM record", f"{name}: {problem}")]
    if "y" in tags.get("t", "").lower().split(":"):
        return [
            *checks,
            Check("warn", "DKIM record", f"{name} matches, but t=y: receivers treat it as a test"),
        ]
    return [*checks, Check("ok", "DKIM record", f"{name} publishes the configured key")]


def check_spf(setup: Setup, resolver: TxtResolver) -> list[Check]:
    """SPF is checked on the envelope sender's domain (our VERP bounce address)."""
    domain = setup.envelope_domain
    if reserved(domain):
        return [
            Check(
                "fail" if setup.real_smtp else "warn",
                "SPF",
                f"the envelope domain {domain} cannot have SPF: set NEWSLETTER_BOUNCE_ADDRESS "
                "to an address at your domain",
            )
        ]
    records, failure = _lookup(resolver, domain, "v=spf1")
    records = [r for r in records if r.strip().lower().split()[0] == "v=spf1"]
    if failure:
        return [Check("fail", "SPF", failure)]
    if not records:
        return [Check("fail", "SPF", f"no SPF record at {domain} (the envelope domain)")]
    if len(records) > 1:
        return [Check("fail", "SPF", f"{len(records)} SPF records at {domain}: SPF fails on all")]
    terms = records[0].lower().split()
    last = terms[-1] if len(terms) > 1 else ""
    if last in ("+all", "all"):
        return [Check("fail", "SPF", f"{domain}: `{last}` lets anyone send as you")]
    if last in ("-all", "~all") or any(t.startswith("redirect=") for t in terms):
        return [Check("ok", "SPF", f"{domain}: {records[0]}")]
    return [Check("warn", "SPF", f"{domain}: ends without -all or ~all, so it protects nothing")]


def _dmarc_record(resolver: TxtResolver, domain: str) -> tuple[str | None, str | None, str]:
    """The DMARC record for ``domain`` (or its organizational domain), a failure, and where."""
    for where in dict.fromkeys((domain, organizational_domain(domain))):
        name = f"_dmarc.{where}"
        records, failure = _lookup(resolver, name, "v=DMARC1")
        if failure:
            return None, failure, name
        if len(records) > 1:
            return None, f"{len(records)} DMARC records at {name}", name
        if records:
            return records[0], None, name
    return None, None, f"_dmarc.{domain}"


def check_dmarc(setup: Setup, resolver: TxtResolver) -> list[Check]:
    """A DMARC record for the From domain, and whether DKIM and SPF align with From."""
    if reserved(setup.from_domain):
        return [Check("warn", "DMARC", f"{setup.from_domain} cannot have DMARC")]
    record, failure, name = _dmarc_record(resolver, setup.from_domain)
    checks = []
    tags: dict[str, str] = {}
    if failure:
        checks.append(Check("fail", "DMARC", failure))
    elif record is None:
        checks.append(
            Check(
                "fail",
                "DMARC",
                f"no DMARC record at {name}: Gmail and Yahoo require one of bulk senders "
                '(start with "v=DMARC1; p=none; rua=mailto:…")',
            )
        )
    elif (parsed := _tags(record)) is None or parsed.get("p", "") not in (
        "none",
        "quarantine",
        "reject",
    ):
        checks.append(Check("fail", "DMARC", f"{name}: no valid p= in `{record}`"))
    else:
        tags = parsed
        note = "" if "rua" in tags else " (no rua=: you get no aggregate reports)"
        checks.append(Check("ok", "DMARC", f"{name}: p={tags['p']}{note}"))
    checks.append(_alignment(setup, tags))
    return checks


def _alignment(setup: Setup, dmarc: dict[str, str]) -> Check:
    strict_dkim = dmarc.get("adkim", "r").lower() == "s"
    strict_spf = dmarc.get("aspf", "r").lower() == "s"
    spf_ok = aligned(setup.from_domain, setup.envelope_domain, strict_spf)
    envelope = f"the envelope domain {setup.envelope_domain}"
    if not setup.dkim_domain:
        if spf_ok:
            detail = f"From {setup.from_domain} aligns with {envelope}"
            return Check("ok", "DMARC alignment", detail)
        return Check(
            "fail",
            "DMARC alignment",
            f"From {setup.from_domain} does not align with {envelope} and mail is not signed: "
            "DMARC fails for every mail",
        )
    dkim_ok = aligned(setup.from_domain, setup.dkim_domain, strict_dkim)
    if dkim_ok and spf_ok:
        return Check(
            "ok", "DMARC alignment", f"From {setup.from_domain} aligns with DKIM and envelope"
        )
    misfits = [
        text
        for ok, text in ((dkim_ok, f"the DKIM domain {setup.dkim_domain}"), (spf_ok, envelope))
        if not ok
    ]
    detail = f"From {setup.from_domain} does not align with " + " nor ".join(misfits)
    if not (dkim_ok or spf_ok):
        return Check("fail", "DMARC alignment", detail + ": DMARC fails for every mail")
    return Check("warn", "DMARC alignment", detail)


def run_checks(setup: Setup, resolver: TxtResolver) -> list[Check]:
    """Every check, in report order."""
    return [
        *check_settings(setup),
        *check_dkim(setup, resolver),
        *check_spf(setup, resolver),
        *check_dmarc(setup, resolver),
    ]
