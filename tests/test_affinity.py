"""AffinityKey: reading a request's affinity key from a header or a callable, and rejecting bad config."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from multidict import CIMultiDict

from kube_balance import ConfigurationError, Endpoint, create
from kube_balance._affinity import DEFAULT_HEADER, AffinityKey


def test_default_header_is_the_seeds() -> None:
    """By default the key is the X-Affinity header, encoded as UTF-8 bytes."""
    assert DEFAULT_HEADER == "X-Affinity"
    assert AffinityKey().from_request(None, {"X-Affinity": "user-é"}) == "user-é".encode()


@pytest.mark.parametrize(
    "headers",
    [
        {"x-affinity": "tenant-1"},
        httpx.Headers({"X-AFFINITY": "tenant-1"}),
        CIMultiDict({"X-Affinity": "tenant-1"}),
    ],
)
def test_header_name_is_case_insensitive(headers: object) -> None:
    """A plain dict, httpx.Headers and aiohttp's CIMultiDict all find the header whatever its case."""
    assert AffinityKey().from_request(None, headers) == b"tenant-1"  # type: ignore[arg-type]


@pytest.mark.parametrize("headers", [{}, {"X-Affinity": ""}, {"X-Other": "1"}])
def test_missing_or_empty_header_is_no_key(headers: dict[str, str]) -> None:
    """No header, or an empty one, means the request has no key."""
    assert AffinityKey().from_request(None, headers) is None


def test_func_wins_over_the_header() -> None:
    """A callable on the request computes the key; str and bytes results both come back as bytes."""
    request = SimpleNamespace(user="u-7", blob=b"\x00\x01")
    by_user = AffinityKey(func=lambda r: r.user)
    assert by_user.from_request(request, {"X-Affinity": "ignored"}) == b"u-7"
    assert AffinityKey(header=None, func=lambda r: r.blob).from_request(request, {}) == b"\x00\x01"
    assert AffinityKey(func=lambda r: None).from_request(request, {"X-Affinity": "x"}) is None


def test_func_returning_another_type_is_a_configuration_error() -> None:
    """A key function must return str, bytes or None."""
    with pytest.raises(ConfigurationError, match="returned int"):
        AffinityKey(func=lambda r: 42).from_request(None, {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("X-Tenant", AffinityKey(header="X-Tenant")),
        (AffinityKey(header="X-User"), AffinityKey(header="X-User")),
    ],
)
def test_parse_accepts_a_header_name_an_affinity_key_or_none(value: object, expected: object) -> None:
    """parse() turns what a user passes as affinity= into an AffinityKey (or None)."""
    assert AffinityKey.parse(value) == expected  # type: ignore[arg-type]


def test_parse_accepts_a_callable() -> None:
    """parse() wraps a callable as the key function, with no header."""
    func = len
    parsed = AffinityKey.parse(func)
    assert parsed == AffinityKey(header=None, func=func)


@pytest.mark.parametrize("bad", ["X Affinity", "", "X-Affinity:", "Ünïcode", 42])
def test_bad_header_names_are_rejected(bad: object) -> None:
    """A header name that is not an HTTP token is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        AffinityKey.parse(bad)  # type: ignore[arg-type]


def test_needs_a_header_or_a_func() -> None:
    """An AffinityKey with neither a header nor a func, or a func that is not callable, is rejected."""
    with pytest.raises(ConfigurationError, match="header name or a func"):
        AffinityKey(header=None)
    with pytest.raises(ConfigurationError, match="not callable"):
        AffinityKey(func="user")  # type: ignore[arg-type]


def test_key_from_a_request_drives_a_hash_algorithm() -> None:
    """The bytes a header yields reach the same endpoint as the str key itself."""
    ring = create("ring_hash")
    ring.update([Endpoint(f"10.9.0.{i}", 80) for i in range(1, 20)])
    key = AffinityKey().from_request(None, httpx.Headers({"X-Affinity": "customer-31"}))
    assert key is not None
    assert ring.get(key) == ring.get("customer-31")


def test_raw_headers_give_the_key_byte_for_byte() -> None:
    """From raw header pairs: any case of the name, the bytes as sent, repeated headers joined as httpx does."""
    key = AffinityKey()
    latin = httpx.Headers([(b"X-Affinity", "ключ".encode()), (b"X-Other", b"\xff")])
    assert latin.encoding == "iso-8859-1"  # the decoded view would give a different key
    assert key.from_request(None, latin, latin.raw) == "ключ".encode()
    assert key.from_request(None, {}, [(b"x-AFFINITY", b"a"), (b"X-Affinity", b"b")]) == b"a, b"
    assert key.from_request(None, {"X-Affinity": "ignored"}, [(b"X-Other", b"v")]) is None


def test_str_key_with_a_lone_surrogate_is_encoded_surrogatepass() -> None:
    """A func returning a str with a lone surrogate gives its surrogatepass bytes, not UnicodeEncodeError."""
    key = AffinityKey(func=lambda request: request)
    assert key.from_request("\udcff", {}) == b"\xed\xb3\xbf"
