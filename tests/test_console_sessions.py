"""The console's sign-in rules (pure): origins, CSRF tokens, cookies, where to go after."""

from __future__ import annotations

import pytest

from worker.web.console.sessions import (
    cookie_secure,
    origin_of,
    safe_next,
    same_origin,
    tokens_match,
)

ALLOWED = {"https://news.example.com", "http://localhost:8000"}


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://news.example.com/admin/login", "https://news.example.com"),
        ("HTTPS://News.Example.com:443/x", "https://news.example.com"),
        ("http://localhost:8000/admin", "http://localhost:8000"),
        ("http://localhost:80/", "http://localhost"),
        ("https://news.example.com.evil.example/", "https://news.example.com.evil.example"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("null", ""),
        ("", ""),
        ("/admin", ""),
        ("http://host:notaport/", ""),
    ],
)
def test_the_origin_of_a_url_is_scheme_host_and_a_port_other_than_the_default(
    url: str, origin: str
) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    ("origin", "referer", "allowed"),
    [
        ("https://news.example.com", None, True),
        ("https://news.example.com", "https://evil.example/", True),  # Origin decides
        ("https://evil.example", "https://news.example.com/admin", False),
        ("http://news.example.com", None, False),  # another scheme is another origin
        ("https://news.example.com:8443", None, False),
        ("null", "https://news.example.com/admin", False),  # a sandboxed frame's POST
        (None, "https://news.example.com/admin/editions/2026-W48", True),
        (None, "https://evil.example/admin", False),
        (None, None, False),  # neither header: refused
        ("", "", False),
    ],
)
def test_a_post_is_accepted_only_from_an_allowed_origin(
    origin: str | None, referer: str | None, allowed: bool
) -> None:
    assert same_origin(origin, referer, ALLOWED) is allowed


@pytest.mark.parametrize(
    ("expected", "given", "match"),
    [
        ("s3cret-token", "s3cret-token", True),
        ("s3cret-token", "s3cret-toke", False),
        ("s3cret-token", "S3CRET-TOKEN", False),
        ("s3cret-token", "", False),
        ("s3cret-token", None, False),
        ("", "", False),  # an empty secret never matches
        (None, None, False),
        ("héllo", "héllo", True),
    ],
)
def test_tokens_match_exactly_and_an_empty_one_never_does(
    expected: str | None, given: str | None, match: bool
) -> None:
    assert tokens_match(expected, given) is match


@pytest.mark.parametrize(
    ("public_url", "secure"),
    [
        ("https://news.example.com", True),
        ("HTTPS://news.example.com", True),
        ("http://localhost:8000", False),
    ],
)
def test_the_session_cookie_is_secure_under_https(public_url: str, secure: bool) -> None:
    assert cookie_secure(public_url) is secure


@pytest.mark.parametrize(
    ("path", "goes_to"),
    [
        ("/admin/editions/2026-W48", "/admin/editions/2026-W48"),
        ("/admin", "/admin"),
        ("https://evil.example/admin", "/admin"),
        ("//evil.example/admin", "/admin"),
        ("/admin\\..\\x", "/admin"),
        ("/subscribe", "/admin"),
        (None, "/admin"),
        ("", "/admin"),
    ],
)
def test_after_signing_in_the_console_goes_only_to_a_console_page(
    path: str | None, goes_to: str
) -> None:
    assert safe_next(path) == goes_to
