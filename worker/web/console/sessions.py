"""Console sign-in: server-side sessions in Redis, the session cookie, CSRF tokens and the
Origin check, and the rules they follow (pure functions, table-tested).

A session id is a random 256-bit value that only the cookie holds; Redis keeps a SHA-256 of
it, so a copy of Redis signs nobody in, and the audit log names a session by the first hex
digits of that hash (its public id), never by the id itself. Every session has its own CSRF
token, put in each form as a hidden field; the sign-in form, before any session, uses a
double-submit cookie. Every POST must also come from the console's own origin.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import redis

from worker.models import utcnow

SESSION_COOKIE = "newsletter_console"
LOGIN_COOKIE = "newsletter_console_login"
COOKIE_PATH = "/admin"
SESSION_KEY = "newsletter:console:session:"
LOGIN_RATE_KEY = "newsletter:console:login-rate:"
LOGIN_FORM_S = 3600


# --- the rules (pure) ---------------------------------------------------------------------------


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased, default ports left out; '' if none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname:
        return ""
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def same_origin(origin: str | None, referer: str | None, allowed: set[str]) -> bool:
    """True when a POST comes from one of the ``allowed`` origins: its Origin header says so,
    or, without one, its Referer does. Neither (or ``Origin: null``) is refused."""
    if origin:
        return origin_of(origin) in allowed
    if referer:
        return origin_of(referer) in allowed
    return False


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of a secret with what the client sent; empty never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def cookie_secure(public_url: str) -> bool:
    """Cookies are ``Secure`` when the console is served over https (NEWSLETTER_PUBLIC_URL)."""
    return urlsplit(public_url).scheme.lower() == "https"


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if path and path.startswith("/admin") and not path.startswith("//") and "\\" not in path:
        return path
    return "/admin"


# --- sessions in Redis --------------------------------------------------------------------------


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in operator's session."""

    public_id: str
    """The first 12 hex digits of the session id's SHA-256: what the audit log shows."""
    csrf: str
    ip: str
    started_at: datetime

    @property
    def actor(self) -> str:
        """Who did it, for the audit log."""
        return f"console:{self.public_id}"


def create_session(client: redis.Redis, ip: str, ttl_s: int) -> tuple[str, ConsoleSession]:
    """A new session: its secret id (for the cookie only) and what the server keeps."""
    session_id = secrets.token_urlsafe(32)
    digest = _digest(session_id)
    session = ConsoleSession(digest[:12], secrets.token_urlsafe(32), ip, utcnow())
    data = {"csrf": session.csrf, "ip": ip, "started_at": session.started_at.isoformat()}
    client.set(SESSION_KEY + digest, json.dumps(data), ex=ttl_s)
    return session_id, session


def get_session(client: redis.Redis, session_id: str | None, ttl_s: int) -> ConsoleSession | None:
    """The live session a cookie names (its life renewed), or None."""
    if not session_id or len(session_id) > 100:
        return None
    digest = _digest(session_id)
    key = SESSION_KEY + digest
    raw = client.get(key)
    if raw is None:
        return None
    client.expire(key, ttl_s)
    data = json.loads(raw)
    return ConsoleSession(
        digest[:12], data["csrf"], data.get("ip", ""), datetime.fromisoformat(data["started_at"])
    )


def delete_session(client: redis.Redis, session_id: str | None) -> None:
    """End a session (signing out)."""
    if session_id:
        client.delete(SESSION_KEY + _digest(session_id))
