"""Mailgun webhooks: verify the HMAC signature block, refuse replays, then read ``event-data``.

Mailgun signs only ``timestamp + token`` (not the event), so a captured signature block could be
re-sent with other event data. A short replay window and refusing a token seen before close that
door; ``seen_token`` must remember tokens for at least the window, across every web process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from worker.bounces import Kind, ProviderEvent, epoch_time
from worker.bounces.classify import find_status_code
from worker.bounces.classify import refine as refine_by_text
from worker.errors import WebhookAuthError, WebhookPayloadError

PROVIDER = "mailgun"
DEFAULT_REPLAY_WINDOW_S = 300.0

SeenToken = Callable[[str], bool]
"""Record ``token`` and tell whether it was already recorded (an atomic check-and-set)."""

# ``severity`` of a failed event -> (kind, reason).
SEVERITIES: dict[str, tuple[Kind, str]] = {
    "permanent": ("soft", "onhold"),
    "temporary": ("soft", "undefined"),
}

# ``reason`` of a failed event -> (kind, reason), where it says more than the severity.
# Mailgun's "suppress-*" reasons mean it did not even try: the address is on its lists.
FAILURE_REASONS: dict[str, tuple[Kind, str]] = {
    "suppress-bounce": ("hard", "userunknown"),
    "suppress-complaint": ("complaint", "feedback"),
    "suppress-unsubscribe": ("ignored", "unsubscribed"),
    "greylisted": ("sender", "blocked"),  # the receiver makes new senders wait
    "espblock": ("sender", "blocked"),
}

RELEVANT_EVENTS = frozenset({"failed", "complained"})


class RecentTokens:
    """An in-process ``seen_token``: remembers tokens for ``keep_s`` seconds (one process only)."""

    def __init__(self, keep_s: float = 2 * DEFAULT_REPLAY_WINDOW_S, max_entries: int = 100_000):
        self._keep_s = keep_s
        self._max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, token: str) -> bool:
        """Record ``token``; return True if it was seen within ``keep_s``."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                next(iter(self._seen.values())) < now - self._keep_s
                or len(self._seen) >= self._max_entries
            ):
                self._seen.popitem(last=False)
            if token in self._seen:
                return True
            self._seen[token] = now
            return False


def load(body: bytes) -> dict[str, Any]:
    """Decode the JSON body Mailgun posts: ``{"signature": {...}, "event-data": {...}}``."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise WebhookPayloadError(f"mailgun: body is not JSON: {err}") from err
    if not isinstance(payload, dict):
        raise WebhookPayloadError("mailgun: body is not a JSON object")
    return payload


def signature_of(signing_key: str, timestamp: str, token: str) -> str:
    """Compute Mailgun's signature: hex HMAC-SHA256 of ``timestamp + token``."""
    message = (timestamp + token).encode("utf-8")
    return hmac.new(signing_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(
    payload: Mapping[str, Any],
    signing_key: str,
    now_s: float,
    seen_token: SeenToken,
    replay_window_s: float = DEFAULT_REPLAY_WINDOW_S,
) -> None:
    """Check the signature, the replay window and token reuse, or raise WebhookAuthError."""
    block = payload.get("signature")
    if not isinstance(block, dict):
        raise WebhookAuthError("mailgun: signature block is missing")
    timestamp, token, signature = block.get("timestamp"), block.get("token"), block.get("signature")
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)
    if not (isinstance(timestamp, str) and isinstance(token, str) and isinstance(signature, str)):
        raise WebhookAuthError("mailgun: signature block lacks timestamp, token or signature")
    if not (timestamp and token and signature):
        raise WebhookAuthError("mailgun: signature block has an empty field")
    expected = signature_of(signing_key, timestamp, token)
    if not hmac.compare_digest(signature.encode("utf-8"), expected.encode("ascii")):
        raise WebhookAuthError("mailgun: signature does not match")
    # Checked after the signature, so unsigned posts cannot fill the token memory.
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > replay_window_s:
        raise WebhookAuthError(f"mailgun: timestamp {timestamp} is outside the replay window")
    if seen_token(token):
        raise WebhookAuthError("mailgun: token was already used (replay)")


def parse(payload: Mapping[str, Any]) -> list[ProviderEvent]:
    """Read verified ``event-data``: failed and complained give one event, others none."""
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise WebhookPayloadError("mailgun: event-data is missing or not an object")
    if data.get("event") not in RELEVANT_EVENTS:
        return []
    event_id, recipient = data.get("id"), data.get("recipient")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookPayloadError("mailgun: event-data has no id")
    if not isinstance(recipient, str) or not recipient:
        raise WebhookPayloadError("mailgun: event-data has no recipient")
    status_block = data.get("delivery-status")
    delivery = status_block if isinstance(status_block, dict) else {}
    # "message" is the remote server's reply; "description" is Mailgun's own explanation.
    diagnostic = _str(delivery.get("message")) or _str(delivery.get("description")) or ""
    code = delivery.get("code")
    smtp_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if isinstance(code, str) and code.isdigit():
        smtp_code = int(code)
    status = find_status_code(diagnostic)
    kind, reason, refine = event_class(data)
    if refine:
        kind, reason = refine_by_text(kind, reason, status, diagnostic, smtp_code)
    return [
        ProviderEvent(
            provider=PROVIDER,
            event_id=event_id,
            recipient=recipient,
            kind=kind,
            reason=reason,
            status=status,
            diagnostic=diagnostic,
            occurred_at=epoch_time(data.get("timestamp")),
            message_id=_message_id(data),
            raw=dict(payload),
        )
    ]


def event_class(data: Mapping[str, Any]) -> tuple[Kind, str, bool]:
    """Map a failed/complained event to (kind, reason, whether the text may refine it)."""
    if data.get("event") == "complained":
        return "complaint", "feedback", False
    by_reason = FAILURE_REASONS.get(str(data.get("reason", "")))
    if by_reason is not None:
        return by_reason[0], by_reason[1], False
    severity = data.get("severity")
    if severity not in SEVERITIES:
        raise WebhookPayloadError(f"mailgun: failed event has unknown severity {severity!r}")
    kind, reason = SEVERITIES[severity]
    return kind, reason, True


def _message_id(data: Mapping[str, Any]) -> str | None:
    # Mailgun reports our Message-ID header without its angle brackets.
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    value = headers.get("message-id") if isinstance(headers, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"

    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
