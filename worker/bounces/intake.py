"""Intake: a bounce message or a provider event → matched to our rows → recorded once.

Detecting is ``dsn.parse_bounce`` (pure), deciding is ``policy`` (pure), recording and acting
is ``record.record_bounce``; this module is the step between: it finds which delivery and
subscriber a bounce is about, and remembers which messages were already handled.

Matching a bounce message, in order of trust:
1. the VERP token of the address it came back to (``bounces+d<id>.<hmac>@…``), verified;
2. the ``X-Newsletter-Delivery`` token in the returned original, verified;
3. our Message-ID in the returned original (``<d<id>.<week>.<hex>@…>``);
4. the recipient address.
A token that is present but fails verification is forged: such a message changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlmodel import Session

from worker.bounces import BounceFinding, ParsedBounce, ProviderEvent
from worker.bounces import queries as bounces
from worker.bounces.dsn import parse_bounce
from worker.bounces.policy import BounceFacts, Policy
from worker.bounces.record import policy_of, record_bounce
from worker.errors import BounceParseError, InvalidToken
from worker.models import utcnow
from worker.sending import queries as sending
from worker.sending.tokens import read_verp_token, token_from_address
from worker.subscribers import queries as subscribers

if TYPE_CHECKING:
    from worker.runtime import Runtime

# Editions and alerts; the form without the keyed last part is that of mail sent before it.
_OUR_MESSAGE_ID = re.compile(
    r"^<?d(\d{1,18})\.(?:\d{4}-W\d{2}|A\d{1,18})(?:\.[0-9a-f]{16})?@[^>]+>?$"
)
_SEVERITY = {"complaint": 0, "hard": 1, "soft": 2, "sender": 3, "ignored": 4}


@dataclass(frozen=True)
class Match:
    """Who a bounce is about, as far as we can tell."""

    subscriber_id: int | None = None
    delivery_id: int | None = None
    edition_id: int | None = None
    forged: bool = False


@dataclass
class IntakeResult:
    """What happened to one inbound message."""

    source: str
    outcome: str  # recorded | duplicate | ignored | unmatched | forged | kept
    reason: str = ""
    findings: list[BounceFinding] = field(default_factory=list)

    def lines(self) -> Iterator[dict[str, str | None]]:
        """One ``--json`` line per recipient found (or one for a message kept aside)."""
        if not self.findings:
            yield {
                "file": self.source,
                "recipient": None,
                "kind": "ignored",
                "reason": None,
                "action": None,
                "status": None,
                "diagnostic": f"{self.outcome}: {self.reason}",
            }
        for finding in self.findings:
            yield {
                "file": self.source,
                "recipient": finding.recipient,
                "kind": finding.kind,
                "reason": finding.reason,
                "action": finding.action,
                "status": finding.status,
                "diagnostic": finding.diagnostic,
            }


def message_key(raw: bytes, message_id: str | None) -> str:
    """Identity of an inbound message: its Message-ID plus a hash of its bytes."""
    digest = hashlib.sha256(raw).hexdigest()[:40]
    return f"{(message_id or '-')[:80]}:{digest}"


def _delivery_match(session: Session, delivery_id: int) -> Match | None:
    delivery = sending.get_delivery(session, delivery_id)
    if delivery is None:
        return None
    return Match(delivery.subscriber_id, delivery.id, delivery.edition_id)


def match_bounce(
    session: Session,
    secret_key: str,
    bounce_local_part: str,
    parsed: ParsedBounce,
    recipient: str | None,
) -> Match:
    """Find the delivery and subscriber a parsed bounce is about."""
    tokens = [
        t for t in (token_from_address(a, bounce_local_part) for a in parsed.verp_addresses) if t
    ]
    if parsed.original_delivery_token:
        tokens.append(parsed.original_delivery_token)
    for token in tokens:
        try:
            delivery_id = read_verp_token(secret_key, token)
        except InvalidToken:
            return Match(forged=True)
        found = _delivery_match(session, delivery_id)
        if found is not None:
            return found
    if parsed.original_message_id:
        ours = _OUR_MESSAGE_ID.match(parsed.original_message_id.strip())
        delivery = sending.get_delivery_by_message_id(session, parsed.original_message_id)
        if delivery is not None and ours:
            return Match(delivery.subscriber_id, delivery.id, delivery.edition_id)
    if recipient:
        subscriber = subscribers.get_subscriber_by_email(session, recipient)
        if subscriber is not None:
            return Match(subscriber.id)
    return Match()


def _worst(findings: tuple[BounceFinding, ...]) -> list[BounceFinding]:
    """The findings that count, most severe first (one message is about one delivery)."""
    counted = [f for f in findings if f.kind != "ignored"]
    return sorted(counted, key=lambda f: _SEVERITY[f.kind])


class Intake:
    """Processes inbound bounce mail for one runtime's database and secrets."""

    def __init__(
        self,
        engine: Engine,
        secret_key: str,
        bounce_local_part: str,
        policy: Policy,
        kept_dir: Path,
    ) -> None:
        self.engine = engine
        self.secret_key = secret_key
        self.bounce_local_part = bounce_local_part
        self.policy = policy
        self.kept_dir = kept_dir

    def process(self, raw: bytes, source: str, dry_run: bool = False) -> IntakeResult:
        """Parse, match and record one message; never raises for bad mail."""
        try:
            parsed = parse_bounce(raw)
        except BounceParseError as exc:
            return self._keep(raw, source, str(exc), dry_run)
        key = message_key(raw, parsed.message_id)
        counted = _worst(parsed.findings)
        result = IntakeResult(source=source, outcome="recorded", findings=list(parsed.findings))
        if not counted:
            result.outcome, result.reason = "ignored", "nothing to count (auto-reply or notice)"
        with Session(self.engine) as session, session.begin():
            if not dry_run and not bounces.remember_inbound(
                session, key, result.outcome, result.reason, None
            ):
                result.outcome, result.reason = "duplicate", "this message was processed before"
                return result
            if not counted:
                return result
            # A token of ours names the one message, to one address, that this is about; without
            # one (a list's or a forwarder's bounce), every recipient named is matched on its own.
            targets = counted[:1] if self._carries_token(parsed) else counted
            for finding in targets:
                found = match_bounce(
                    session, self.secret_key, self.bounce_local_part, parsed, finding.recipient
                )
                if found.forged:
                    result.outcome, result.reason = "forged", "the delivery token is forged"
                    break
                if found.subscriber_id is None:
                    result.outcome, result.reason = "unmatched", "no subscriber matches"
                    continue
                if dry_run:
                    continue
                record_bounce(
                    session,
                    BounceFacts(
                        kind=finding.kind,
                        reason=finding.reason,
                        source="dsn",
                        recipient=finding.recipient or "",
                        status=finding.status,
                        diagnostic=finding.diagnostic,
                        subscriber_id=found.subscriber_id,
                        delivery_id=found.delivery_id,
                        edition_id=found.edition_id,
                        received_at=utcnow(),
                        delayed=finding.delayed,
                    ),
                    self.policy,
                )
            if not dry_run and result.outcome != "recorded":
                bounces.update_inbound(session, key, result.outcome, result.reason)
        return result

    def _carries_token(self, parsed: ParsedBounce) -> bool:
        """True when the bounce came back to one of our VERP addresses or returned our token."""
        return parsed.original_delivery_token is not None or any(
            token_from_address(a, self.bounce_local_part) for a in parsed.verp_addresses
        )

    def _keep(self, raw: bytes, source: str, reason: str, dry_run: bool) -> IntakeResult:
        """Set a message we cannot understand aside, with the reason, for a human to read."""
        result = IntakeResult(source=source, outcome="kept", reason=reason)
        if dry_run:
            return result
        key = message_key(raw, None)
        with Session(self.engine) as session, session.begin():
            if not bounces.remember_inbound(session, key, "kept", reason, None):
                result.outcome, result.reason = "duplicate", "this message was processed before"
                return result
        self.kept_dir.mkdir(parents=True, exist_ok=True)
        name = key.rsplit(":", 1)[1]
        (self.kept_dir / f"{name}.eml").write_bytes(raw)
        (self.kept_dir / f"{name}.reason.txt").write_text(reason + "\n")
        return result


def intake_for(rt: Runtime) -> Intake:
    """The intake of a runtime: its database, secret, bounce address and policy."""
    settings = rt.settings
    return Intake(
        rt.engine,
        rt.secret_key,
        settings.bounce_local_part,
        policy_of(settings),
        settings.data_dir / "bounces" / "kept",
    )


def record_provider_event(session: Session, event: ProviderEvent, policy: Policy) -> bool:
    """Match a webhook event by our Message-ID, else by address, and record it once."""
    found = Match()
    if event.message_id:
        delivery = sending.get_delivery_by_message_id(session, event.message_id)
        if delivery is not None:
            found = Match(delivery.subscriber_id, delivery.id, delivery.edition_id)
    if found.subscriber_id is None and event.recipient:
        subscriber = subscribers.get_subscriber_by_email(session, event.recipient)
        if subscriber is not None:
            found = Match(subscriber.id)
    if event.kind == "ignored":
        return False
    outcome = record_bounce(
        session,
        BounceFacts(
            kind=event.kind,
            reason=event.reason,
            source=event.provider,
            recipient=event.recipient,
            status=event.status,
            diagnostic=event.diagnostic,
            subscriber_id=found.subscriber_id,
            delivery_id=found.delivery_id,
            edition_id=found.edition_id,
            provider_event_id=f"{event.provider}:{event.event_id}",
            received_at=utcnow(),
        ),
        policy,
    )
    return outcome.recorded


def split_mbox(data: bytes) -> Iterator[bytes]:
    """The messages of an mbox (``From `` separator lines; ``>From `` unquoted)."""
    current: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From ") and (not current or current[-1].strip() == b""):
            if current:
                yield b"".join(current)
            current = []
            continue
        current.append(line[1:] if line.startswith(b">From ") else line)
    if current:
        yield b"".join(current)


def is_mbox(data: bytes) -> bool:
    """True when the data starts like an mbox file."""
    return data.startswith(b"From ")
