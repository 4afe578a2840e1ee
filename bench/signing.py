"""What DKIM signing costs the delivery path: messages built per second, unsigned vs RSA-2048 vs
Ed25519, in one process, on the sample digest.

    .venv/bin/python bench/signing.py [--messages 2000] [--rounds 5] [--digest-kb 20]

Each round builds ``--messages`` messages (one per made-up reader: own name, own links, own
Message-ID, as ``delivery.deliver`` does) with each variant in turn, so drift of the machine hits
all variants alike; the table shows the median round. Rates are per CPU second of this process,
which other work on the machine disturbs less than wall time. A second table splits one
signature into its parts, and dkimpy's own ``dkim.sign`` on the same message is timed for
comparison. The signed messages are checked with ``dkim.verify`` first.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.catalog.service import import_comparisons  # noqa: E402
from worker.config import load_settings  # noqa: E402
from worker.demo import dated_samples  # noqa: E402
from worker.models import utcnow  # noqa: E402
from worker.runtime import open_runtime  # noqa: E402
from worker.sending import control  # noqa: E402
from worker.sending.caches import editions_of  # noqa: E402
from worker.sending.dkim import (  # noqa: E402
    DkimKey,
    Signer,
    body_hash,
    generate_key,
    key_pem,
    relaxed_header,
)
from worker.sending.message import (  # noqa: E402
    Identity,
    PreparedMail,
    Recipient,
    build_message,
    message_id_for,
)

DOMAIN = "verdicts.example.com"
SELECTOR = "bench"
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def sample_mail(digest_kb: float) -> tuple[PreparedMail, Identity, str]:
    """The sample digest, carrying as many comparisons as come closest to ``digest_kb``."""
    folder = Path(tempfile.mkdtemp(prefix="nl-bench-dkim-"))
    settings = load_settings(
        data_dir=folder, mail_from=f"Weekly AI Tool Verdicts <verdicts@{DOMAIN}>"
    )
    rt = open_runtime(settings)
    try:
        now = utcnow()
        import_comparisons(rt.engine, json.dumps(dated_samples(now, settings.tz)))
        week = control.resolve_week(rt, None, now)
        ids = control.plan(rt, week, now)
        best: tuple[float, int] = (float("inf"), 1)
        for count in range(1, len(ids) + 1):
            size = len(build(editions_of(rt).mail_for(week, tuple(ids[:count])), rt.identity, 1))
            best = min(best, (abs(size - digest_kb * 1024), count))
        return editions_of(rt).mail_for(week, tuple(ids[: best[1]])), rt.identity, week
    finally:
        rt.close()


def build(mail: PreparedMail, identity: Identity, i: int, week: str = "2026-W48") -> bytes:
    """The message of reader ``i``, built the way a delivery builds it."""
    base = f"https://{DOMAIN}"
    token = f"t{i:07d}" + "x" * 17
    return build_message(
        mail,
        Recipient(
            f"reader{i:07d}@example.com",
            f"Reader {i}",
            f"{base}/unsubscribe/{token}.{'s' * 43}",
            f"{base}/preferences/{token}.{'p' * 43}",
        ),
        identity,
        message_id_for(i, week, DOMAIN, "bench-secret", token),
        utcnow(),
        extra_headers={
            "X-Newsletter-Delivery": f"d{i}.0123456789",
            "Feedback-ID": identity.feedback_id(week, "digest"),
        },
    )


def rate(run: Callable[[int], object], count: int) -> float:
    """Calls per CPU second of ``run(i)`` over ``count`` calls (CPU time of this process, so
    that other work on the machine slows the figures less than it would wall time)."""
    started = time.process_time()
    for i in range(count):
        run(i)
    return count / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--digest-kb", type=float, default=20.0)
    args = parser.parse_args()

    mail, unsigned, week = sample_mail(args.digest_kb)
    keys = {"RSA-2048": generate_key("rsa"), "Ed25519": generate_key("ed25519")}
    variants = {"unsigned": unsigned} | {
        name: replace(unsigned, signer=Signer(DOMAIN, SELECTOR, key)) for name, key in keys.items()
    }
    for name, key in keys.items():  # what we measure must be what receivers accept
        data = build(mail, variants[name], 1, week)
        ok = dkimpy.verify(data, dnsfunc=lambda _name, timeout=5, k=key: k.record.encode())
        if not ok:
            raise SystemExit(f"{name}: dkimpy does not verify the signature")
    size = len(build(mail, unsigned, 1, week))
    load_before = os.getloadavg()[0]
    err.print(f"message: {size / 1024:.1f} KB; {args.rounds} rounds of {args.messages:,}")

    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, identity in variants.items():
            rates[name].append(
                rate(lambda i, ident=identity: build(mail, ident, i, week), args.messages)
            )
    base = statistics.median(rates["unsigned"])
    table = Table(title=f"Messages built per CPU second, one process ({size / 1024:.1f} KB digest)")
    for column in ("variant", "messages/s", "µs per message", "signing µs", "vs unsigned"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, values in rates.items():
        per_s = statistics.median(values)
        table.add_row(
            name,
            f"{per_s:,.0f}",
            f"{1e6 / per_s:,.0f}",
            "—" if name == "unsigned" else f"{1e6 / per_s - 1e6 / base:,.0f}",
            f"{per_s / base:.2f}",
        )
    out.print(table)
    err.print(f"load average before → after: {load_before:.1f} → {os.getloadavg()[0]:.1f}")

    # Where one signature's time goes.
    data = build(mail, unsigned, 1, week)
    head, body = data.split(b"\r\n\r\n", 1)
    fields = [
        (line.split(":", 1)[0], line.split(":", 1)[1])
        for line in head.decode().replace("\r\n ", " ").split("\r\n")
    ]
    n = args.messages
    parts = Table(title="One signature, by part (µs)")
    parts.add_column("part")
    parts.add_column("µs", justify="right")
    per_s = rate(lambda _i: body_hash(body), n)
    parts.add_row("relaxed body + SHA-256 (bh=)", f"{1e6 / per_s:.0f}")
    parts.add_row(
        "relaxed headers (cached) ",
        f"{1e6 / rate(lambda _i: [relaxed_header(k, v) for k, v in fields], n):.1f}",
    )
    headers = b"x" * 900  # about what the signed headers of a message add up to
    for name, key in keys.items():
        per_s = rate(lambda _i, k=key: k.sign(headers), n)
        parts.add_row(f"{name} private-key operation", f"{1e6 / per_s:.0f}")
    for name, key in keys.items():
        private = key_pem(key) if name == "RSA-2048" else _nacl_seed(key)
        algorithm = b"rsa-sha256" if name == "RSA-2048" else b"ed25519-sha256"
        count = max(20, n // 50)
        per_s = rate(
            lambda _i, p=private, a=algorithm: dkimpy.sign(
                data,
                SELECTOR.encode(),
                DOMAIN.encode(),
                p,
                signature_algorithm=a,
                canonicalize=(b"relaxed", b"relaxed"),
            ),
            count,
        )
        parts.add_row(f"dkimpy.sign, whole message, {name} (comparison)", f"{1e6 / per_s:,.0f}")
    out.print(parts)


def _nacl_seed(key: DkimKey) -> bytes:
    """The base64 Ed25519 seed dkimpy signs with."""
    raw = key.private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw)


if __name__ == "__main__":
    main()
