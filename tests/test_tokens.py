"""Signed tokens: VERP bounce addresses and links in mail, under the install's key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from worker.errors import InvalidToken
from worker.sending.tokens import (
    CONFIRM_MAX_AGE_S,
    keyed_digest,
    read_link,
    read_verp_token,
    sign_link,
    token_from_address,
    verp_address,
    verp_token,
)

KEY = "k" * 32


def test_the_keyed_digest_is_hmac_sha256_of_the_parts_joined_by_colons() -> None:
    expected = hmac.new(KEY.encode(), b"verp:42", hashlib.sha256).digest()
    assert keyed_digest(KEY, "verp", "42") == expected
    assert keyed_digest(KEY, "verp", "42") != keyed_digest(KEY, "verp42")
    assert keyed_digest(KEY, "a") != keyed_digest("other", "a")


def test_a_verp_token_is_the_delivery_id_and_ten_hex_of_its_mac() -> None:
    mac = hmac.new(KEY.encode(), b"verp:42", hashlib.sha256).hexdigest()[:10]
    assert verp_token(KEY, 42) == f"d42.{mac}"
    assert read_verp_token(KEY, f"d42.{mac}") == 42
    assert read_verp_token(KEY, f"  D42.{mac.upper()} ") == 42  # case and spaces of an MTA


@pytest.mark.parametrize(
    "token",
    [
        "d42.0000000000",  # a forged mac
        "42.0123456789",  # no d
        "d42.012345678",  # nine hex
        "d42.01234567890",  # eleven hex
        "d42.012345678g",  # not hex
        "dx.0123456789",
        "d" + "1" * 19 + ".0123456789",  # more digits than any id
        "xd42.0123456789",
        "",
    ],
)
def test_a_forged_or_malformed_verp_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        read_verp_token(KEY, token)


def test_a_verp_token_under_another_key_is_refused_and_says_why() -> None:
    with pytest.raises(InvalidToken) as forged:
        read_verp_token(KEY, verp_token("other-key", 42))
    assert str(forged.value) == "the delivery token's signature does not match"
    with pytest.raises(InvalidToken) as malformed:
        read_verp_token(KEY, "nonsense")
    assert str(malformed.value) == "not a delivery token: 'nonsense'"
    with pytest.raises(InvalidToken) as long:
        read_verp_token(KEY, "x" * 50)
    assert str(long.value) == f"not a delivery token: {'x' * 40!r}"  # quoted, cut at 40


def test_the_longest_delivery_id_round_trips() -> None:
    big = 10**18 - 1
    assert read_verp_token(KEY, verp_token(KEY, big)) == big


@pytest.mark.parametrize(
    ("address", "token"),
    [
        ("bounces+d1.abc@news.example.com", "d1.abc"),
        ("<Bounces+d1.abc@news.example.com>", "d1.abc"),
        ("  bounces+d1.abc@news.example.com ", "d1.abc"),
        ("bounces+@news.example.com", None),
        ("bounces@news.example.com", None),
        ("other+d1.abc@news.example.com", None),
        ("xbounces+d1.abc@news.example.com", None),
        ("bounces+a+b@news.example.com", "a+b"),
        ('"bounces+a@b"@news.example.com', None),  # a quoted local part is not ours
        ("bounces+a@b@news.example.com", "a@b"),  # the domain is after the last @
        ("Xbounces+d1.abc@news.example.com", None),
    ],
)
def test_the_token_comes_from_our_bounce_address_only(address: str, token: str | None) -> None:
    assert token_from_address(address, "bounces") == token


def test_a_verp_address_carries_the_token_after_a_plus() -> None:
    assert (
        verp_address("bounces", "news.example.com", "d1.abc") == "bounces+d1.abc@news.example.com"
    )


@pytest.mark.parametrize("purpose", ["unsubscribe", "preferences"])
def test_a_plain_link_is_the_token_and_a_16_byte_mac(purpose: str) -> None:
    digest = hmac.new(KEY.encode(), f"link:{purpose}:tok".encode(), hashlib.sha256).digest()
    mac = base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
    assert sign_link(KEY, purpose, "tok") == f"tok.{mac}"
    assert read_link(KEY, purpose, f"tok.{mac}") == "tok"
    assert read_link(KEY, purpose, sign_link(KEY, purpose, "a.b")) == "a.b"  # dots inside


@pytest.mark.parametrize("purpose", ["unsubscribe", "preferences", "confirm"])
@pytest.mark.parametrize(
    "forge",
    [
        lambda good: good[:-1] + ("A" if good[-1] != "A" else "B"),
        lambda good: "." + good.rpartition(".")[2],
        lambda good: good.rpartition(".")[0],
        lambda good: "",
    ],
    ids=["one-char", "no-token", "no-mac", "empty"],
)
def test_a_tampered_link_is_refused(purpose: str, forge) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidToken) as info:
        read_link(KEY, purpose, forge(sign_link(KEY, purpose, "tok")))
    assert str(info.value) == "this link is not valid"


@pytest.mark.parametrize("purpose", ["unsubscribe", "preferences", "confirm"])
def test_a_link_for_another_purpose_or_key_is_refused(purpose: str) -> None:
    other = "preferences" if purpose != "preferences" else "unsubscribe"
    with pytest.raises(InvalidToken):
        read_link(KEY, purpose, sign_link(KEY, other, "tok"))
    with pytest.raises(InvalidToken):
        read_link(KEY, purpose, sign_link("other-key", purpose, "tok"))


def _confirm_token_signed_ago(age_s: int, value: object = "tok") -> str:
    class Ago(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_s

    return URLSafeTimedSerializer(KEY, salt="confirm", signer=Ago).dumps(value)


def test_a_confirmation_link_expires_after_seven_days() -> None:
    assert CONFIRM_MAX_AGE_S == 7 * 24 * 3600
    assert read_link(KEY, "confirm", sign_link(KEY, "confirm", "tok")) == "tok"
    assert read_link(KEY, "confirm", _confirm_token_signed_ago(CONFIRM_MAX_AGE_S - 60)) == "tok"
    with pytest.raises(InvalidToken) as info:
        read_link(KEY, "confirm", _confirm_token_signed_ago(CONFIRM_MAX_AGE_S + 60))
    assert str(info.value) == "this link has expired"
    with pytest.raises(InvalidToken, match="expired"):
        read_link(KEY, "confirm", _confirm_token_signed_ago(120), max_age_s=60)


def test_a_confirmation_link_carrying_anything_but_a_token_is_refused() -> None:
    with pytest.raises(InvalidToken) as info:
        read_link(KEY, "confirm", _confirm_token_signed_ago(0, value=["tok"]))
    assert str(info.value) == "this link is not valid"
