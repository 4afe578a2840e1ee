"""Vectors the providers signed and published in their SDKs' own tests, and ways to spoil them.

Sources and licences: ``tests/data/webhooks/README.md``. Each spoiler changes one signed field
(or the signature, or the time) and leaves the rest as published.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "webhooks"
SNS = DATA / "sns"

SNS_VECTORS = sorted(p.relative_to(SNS).as_posix() for p in SNS.glob("*/*.json"))
JAVA_V2 = "aws-sdk-java-v2"
WITH_SUBJECT = f"{JAVA_V2}/notification_with_subject.json"
NO_SUBJECT = f"{JAVA_V2}/notification_no_subject.json"
SIGNATURE_V2 = f"{JAVA_V2}/notification_signature_v2.json"
CONFIRMATION = f"{JAVA_V2}/subscription_confirmation.json"
UNSUBSCRIBED = f"{JAVA_V2}/unsubscribe_confirmation.json"
RUBY_V1 = "aws-sdk-ruby/notification_signature_v1.json"


def sns_vector(name: str) -> dict[str, Any]:
    return json.loads((SNS / name).read_text())


def signed_at_s(envelope: dict[str, Any]) -> float:
    """A few seconds after SNS signed the message: when it would have reached us."""
    return datetime.fromisoformat(envelope["Timestamp"]).timestamp() + 5


def certificate_of(name: str) -> bytes:
    """The signing certificate published beside a vector (named as in its SigningCertURL)."""
    [pem] = (SNS / name).parent.glob("*.pem")
    return pem.read_bytes()


def body_of(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode("utf-8")


def _replace(field_name: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def change(envelope: dict[str, Any]) -> None:
        assert old in envelope[field_name]
        envelope[field_name] = envelope[field_name].replace(old, new, 1)

    return change


def _set(field_name: str, value: str | None) -> Callable[[dict[str, Any]], None]:
    def change(envelope: dict[str, Any]) -> None:
        if value is None:
            del envelope[field_name]
        else:
            envelope[field_name] = value

    return change


def _flip_signature(envelope: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(envelope["Signature"]))
    raw[len(raw) // 2] ^= 0x01
    envelope["Signature"] = base64.b64encode(bytes(raw)).decode("ascii")


def _later_timestamp(envelope: dict[str, Any]) -> None:
    sent = datetime.fromisoformat(envelope["Timestamp"]) + timedelta(milliseconds=1)
    envelope["Timestamp"] = sent.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# One change to one signed field (or to the signature) each; every one must break the signature.
SNS_TAMPERS: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("message", WITH_SUBJECT, _replace("Message", "Hello!", "Hullo!")),
    (
        "newline added to the message",
        NO_SUBJECT,
        _set("Message", "This notification has no subject.\n"),
    ),
    ("newline in the message removed", CONFIRMATION, _replace("Message", "\n", " ")),
    ("newline added to the subject", WITH_SUBJECT, _set("Subject", "My message subject\n")),
    ("subject dropped", WITH_SUBJECT, _set("Subject", None)),
    ("subject added", NO_SUBJECT, _set("Subject", "This notification has no subject.")),
    ("message id", SIGNATURE_V2, _replace("MessageId", "9d2c", "9d2d")),
    ("timestamp", RUBY_V1, _later_timestamp),
    ("token", CONFIRMATION, _replace("Token", "2336412f", "2336412e")),
    ("subscribe url", UNSUBSCRIBED, _replace("SubscribeURL", "Token=2336", "Token=2337")),
    ("signature version", WITH_SUBJECT, _set("SignatureVersion", "2")),
    ("signature", SIGNATURE_V2, _flip_signature),
    (
        "signature of another message",
        NO_SUBJECT,
        _set("Signature", sns_vector(WITH_SUBJECT)["Signature"]),
    ),
]


# --- the published SendGrid vector ------------------------------------------------------------


def sendgrid_vector(name: str = "sendgrid-python") -> dict[str, str]:
    return json.loads((DATA / "sendgrid" / f"{name}.json").read_text())


SENDGRID = sendgrid_vector()
SENDGRID_NOW_S = int(SENDGRID["timestamp"]) + 5


def sendgrid_headers(
    signature: str = SENDGRID["signature"], timestamp: str = SENDGRID["timestamp"]
) -> dict[str, str]:
    return {
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def _other_signature() -> str:
    return sendgrid_vector("sendgrid-nodejs")["signature"]


# One change each, to the body, the signature or the timestamp: every one is refused.
SENDGRID_TAMPERS: list[tuple[str, bytes, dict[str, str], float]] = [
    (
        "address",
        SENDGRID["payload"].replace("hello@world.com", "hallo@world.com").encode(),
        sendgrid_headers(),
        SENDGRID_NOW_S,
    ),
    (
        "trailing newline dropped",
        SENDGRID["payload"].removesuffix("\r\n").encode(),
        sendgrid_headers(),
        SENDGRID_NOW_S,
    ),
    (
        "newline added",
        (SENDGRID["payload"] + "\n").encode(),
        sendgrid_headers(),
        SENDGRID_NOW_S,
    ),
    (
        "signature of another payload",
        SENDGRID["payload"].encode(),
        sendgrid_headers(signature=_other_signature()),
        SENDGRID_NOW_S,
    ),
    (
        "timestamp header",
        SENDGRID["payload"].encode(),
        sendgrid_headers(timestamp=str(int(SENDGRID["timestamp"]) + 1)),
        SENDGRID_NOW_S + 1,
    ),
]
