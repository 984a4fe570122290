"""Where an affinity key comes from: the one piece the httpx, aiohttp and FastAPI integrations share.

A hash algorithm (``ring_hash``, ``maglev``) needs a key per request: a user, tenant or object id,
so that the same key keeps reaching the same pod. By default the key is the value of the
``X-Affinity`` request header (the seed's header); a callable on the request can compute it
instead. A request without a key gets :class:`~kube_balance.AffinityKeyRequired` from the
algorithm, unless the algorithm was created with ``missing_key="random"``.

This module imports no HTTP client: integrations pass their request object and its headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigurationError

DEFAULT_HEADER = "X-Affinity"  # the seed's header
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 field name (token)

KeyFunction = Callable[[Any], "str | bytes | None"]
"""Computes the key from the client's request object; None means the request has no key."""


@dataclass(frozen=True, slots=True)
class AffinityKey:
    """How to read the affinity key of a request.

    - ``header``: the request header holding the key (default ``X-Affinity``, as the seed),
      matched case-insensitively; an empty value counts as no key.
    - ``func``: a callable on the request returning ``str``, ``bytes`` or None; when given it
      wins over ``header``.

    >>> AffinityKey().from_request(None, {"x-affinity": "user-42"})
    b'user-42'
    >>> AffinityKey(func=lambda request: request["tenant"]).from_request({"tenant": "acme"}, {})
    b'acme'
    """

    header: str | None = DEFAULT_HEADER
    func: KeyFunction | None = None

    def __post_init__(self) -> None:
        if self.func is not None and not callable(self.func):
            raise ConfigurationError(f"affinity func {self.func!r} is not callable")
        if self.header is None:
            if self.func is None:
                raise ConfigurationError("an AffinityKey needs a header name or a func")
        elif not isinstance(self.header, str) or not _TOKEN.fullmatch(self.header):
            raise ConfigurationError(f"affinity header {self.header!r} is not a valid HTTP header name")

    @classmethod
    def parse(cls, value: AffinityKey | str | KeyFunction | None) -> AffinityKey | None:
        """Accept what a user passes as ``affinity=``: an AffinityKey, a header name, a callable or None."""
        if value is None or isinstance(value, AffinityKey):
            return value
        if isinstance(value, str):
            return cls(header=value)
        if callable(value):
            return cls(header=None, func=value)
        raise ConfigurationError(
            f"affinity {value!r} must be a header name, a callable on the request or an AffinityKey"
        )

    def from_request(
        self, request: Any, headers: Mapping[str, str], raw: Iterable[tuple[bytes, bytes]] | None = None
    ) -> bytes | None:
        """The request's key as bytes (str is encoded UTF-8), or None when it has none.

        ``raw`` is the header block as sent, ``(name, value)`` byte pairs: when given, the header
        value is taken from it byte for byte. Decoded headers are not stable: httpx decodes the
        whole block as Latin-1 once any header has a byte that is not UTF-8, so a UTF-8 key read
        from them would change (and move to another pod) with an unrelated header. A str key
        (from ``func`` or decoded headers) is encoded UTF-8 with ``surrogatepass``, as the hash
        algorithms do.

        >>> AffinityKey().from_request(None, {}, [(b"X-Affinity", "ключ".encode()), (b"X-B", b"\\xff")])
        b'\\xd0\\xba\\xd0\\xbb\\xd1\\x8e\\xd1\\x87'
        """
        if self.func is not None:
            value = self.func(request)
        elif self.header is not None:
            value = _header(headers, self.header) if raw is None else _raw_header(raw, self.header)
        else:  # pragma: no cover - __post_init__ requires a header or a func
            value = None
        if value is None or value == "" or value == b"":
            return None
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass")
        if isinstance(value, bytes):
            return value
        raise ConfigurationError(f"affinity func returned {type(value).__name__}, not str, bytes or None")


def _raw_header(raw: Iterable[tuple[bytes, bytes]], name: str) -> bytes | None:
    """The value of header ``name`` in a raw block, several joined by ``, `` as httpx does."""
    wanted = name.lower().encode("ascii")  # a token: ASCII by __post_init__
    values = [value for key, value in raw if key.lower() == wanted]
    if not values:
        return None
    return values[0] if len(values) == 1 else b", ".join(values)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # httpx and aiohttp headers ignore case already; a plain dict needs the scan.
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value
