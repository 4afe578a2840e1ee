"""Signed tokens: links in mail and VERP bounce addresses. Pure; the key is passed in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from worker.errors import InvalidToken

VERP_MAC_CHARS = 10
_VERP = re.compile(rf"^d(\d{{1,18}})\.([0-9a-f]{{{VERP_MAC_CHARS}}})$")

CONFIRM_MAX_AGE_S = 7 * 24 * 3600
PURPOSES = ("unsubscribe", "preferences", "confirm")
LINK_MAC_BYTES = 16


def keyed_digest(secret_key: str, *parts: str) -> bytes:
    """HMAC-SHA256 of ``parts`` joined by ``:`` under the install's secret key: the one keyed
    hash behind VERP tokens, link signatures, Message-IDs and the suppression list (each use
    starts with a part of its own, so no value stands for another)."""
    return hmac.new(secret_key.encode(), ":".join(parts).encode(), hashlib.sha256).digest()


def _mac(secret_key: str, text: str) -> str:
    return keyed_digest(secret_key, "verp", text).hex()[:VERP_MAC_CHARS]


def verp_token(secret_key: str, delivery_id: int) -> str:
    """The token naming a delivery in its bounce address: ``d<id>.<short hmac>``."""
    return f"d{delivery_id}.{_mac(secret_key, str(delivery_id))}"


def read_verp_token(secret_key: str, token: str) -> int:
    """The delivery id in a VERP token; InvalidToken when forged or malformed."""
    match = _VERP.match(token.strip().lower())
    if not match:
        raise InvalidToken(f"not a delivery token: {token[:40]!r}")
    if not hmac.compare_digest(_mac(secret_key, match.group(1)), match.group(2)):
        raise InvalidToken("the delivery token's signature does not match")
    return int(match.group(1))


def verp_address(local_part: str, domain: str, token: str) -> str:
    """The envelope sender of one delivery: ``bounces+<token>@domain``."""
    return f"{local_part}+{token}@{domain}"


def token_from_address(address: str, local_part: str) -> str | None:
    """The ``+`` token of a VERP address for our bounce local part, if it is one."""
    local, _, _domain = address.strip().strip("<>").rpartition("@")
    prefix = local_part.lower() + "+"
    if not local.lower().startswith(prefix):
        return None
    return local[len(prefix) :] or None


def _link_mac(secret_key: str, purpose: str, subscriber_token: str) -> str:
    digest = keyed_digest(secret_key, "link", purpose, subscriber_token)
    return base64.urlsafe_b64encode(digest[:LINK_MAC_BYTES]).decode().rstrip("=")


def sign_link(secret_key: str, purpose: str, subscriber_token: str) -> str:
    """A URL-safe signed token for a link in a mail (unsubscribe, preferences, confirm).

    Unsubscribe and preferences links never expire and are signed with a plain HMAC (one per
    message, so it must be cheap); confirmation links carry a timestamp and expire.
    """
    if purpose == "confirm":
        return URLSafeTimedSerializer(secret_key, salt=purpose).dumps(subscriber_token)
    return f"{subscriber_token}.{_link_mac(secret_key, purpose, subscriber_token)}"


def read_link(secret_key: str, purpose: str, token: str, max_age_s: int = CONFIRM_MAX_AGE_S) -> str:
    """The subscriber token inside a signed link; InvalidToken when tampered or expired."""
    if purpose == "confirm":
        try:
            value = URLSafeTimedSerializer(secret_key, salt=purpose).loads(token, max_age=max_age_s)
        except SignatureExpired:
            raise InvalidToken("this link has expired") from None
        except BadSignature:
            raise InvalidToken("this link is not valid") from None
        if not isinstance(value, str):
            raise InvalidToken("this link is not valid")
        return value
    subscriber_token, _, mac = token.rpartition(".")
    if not subscriber_token or not hmac.compare_digest(
        mac.encode(), _link_mac(secret_key, purpose, subscriber_token).encode()
    ):
        raise InvalidToken("this link is not valid")
    return subscriber_token
