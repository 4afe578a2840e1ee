"""``newsletter bounces serve``: an SMTP receiver for bounce mail (aiosmtpd).

It accepts mail only for the bounce address and its ``+`` (VERP) variants, hands each message
to the intake off the event loop, and answers 250 once the message is recorded or kept aside:
bad mail never crashes the receiver.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from worker.bounces.intake import Intake

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 20 * 1024 * 1024


class BounceHandler:
    """aiosmtpd handler: RCPT filter + intake on DATA."""

    def __init__(self, intake: Intake, local_part: str, domain: str) -> None:
        self.intake = intake
        self.local_part = local_part.lower()
        self.domain = domain.lower()
        self.processed = 0

    def accepts(self, address: str) -> bool:
        """True for ``bounces@domain`` and ``bounces+anything@domain``."""
        local, _, domain = address.strip("<> ").rpartition("@")
        local = local.lower()
        return domain.lower() == self.domain and (
            local == self.local_part or local.startswith(self.local_part + "+")
        )

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self.accepts(address):
            return "550 5.1.1 no such mailbox here: this server takes bounce mail only"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        # Delivered-To names the VERP address even when the message's own headers do not.
        stamped = b"".join(f"Delivered-To: {r}\r\n".encode() for r in envelope.rcpt_tos) + raw
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, self.intake.process, stamped, "smtp")
        except Exception:  # keep serving: a bug here must not cost the next bounce
            log.exception("bounce intake failed; the sender will retry")
            return "451 4.3.0 temporary failure, try again later"
        self.processed += 1
        log.info("bounce from %s: %s %s", envelope.mail_from, result.outcome, result.reason)
        return "250 2.0.0 OK"


def start_server(
    intake: Intake, local_part: str, domain: str, host: str, port: int
) -> tuple[Controller, BounceHandler]:
    """Start the receiver in a background thread; stop it with ``controller.stop()``."""
    handler = BounceHandler(intake, local_part, domain)
    controller = Controller(
        handler,
        hostname=host,
        port=port,
        decode_data=False,
        data_size_limit=MAX_MESSAGE_BYTES,
        ready_timeout=10,
    )
    controller.start()
    return controller, handler
