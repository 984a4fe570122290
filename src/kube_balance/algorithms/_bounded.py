"""Bounded loads for the hash algorithms: the seed's ``loadOK`` rule and the running total it needs.

Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, arXiv 1608.01350): with a
load factor ``c > 1`` no endpoint takes a request that would lift it above
``ceil(c * (total + 1) / n)``, where ``total`` is the number of requests in flight on the ``n``
current endpoints. A key whose first choice is full walks on (around the ring, or along the Maglev
table, as Envoy's ``hash_balance_factor`` does) to the first endpoint under the cap; one always
exists, because the least loaded endpoint carries at most the mean.

``total`` counts active endpoints only: removing an endpoint subtracts its in-flight requests at
once (as the seed did), and their later ``put()`` leaves the total alone.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Iterable

import mmh3
from mypy_extensions import mypyc_attr

from .._endpoint import Endpoint
from .._errors import AffinityKeyRequired, ConfigurationError
from ._base import BaseAlgorithm, Clock, Slot

MISSING_KEY_POLICIES = ("error", "random")


SCALE = 1000
"""The load factor is applied to 1/1000 (Envoy's ``hash_balance_factor`` takes whole percents)."""

KEY_ERRORS = "surrogatepass"
"""How a ``str`` affinity key becomes bytes: UTF-8, with lone surrogates (``json.loads('"\\udcff"')``,
``os.fsdecode``) written as their 3-byte form, so every str has one defined encoding."""

_mmh3 = mmh3.hash


def encode_key(key: str) -> bytes:
    """The bytes a ``str`` affinity key hashes as: UTF-8, ``surrogatepass`` (see :data:`KEY_ERRORS`)."""
    return key.encode("utf-8", KEY_ERRORS)


def hash_key(key: str | bytes) -> int:
    """MurmurHash3 x86 32-bit, seed 0, signed, of an affinity key (a str as :func:`encode_key`).

    mmh3 must never see a str it cannot encode: a lone surrogate segfaults mmh3 5.x (4.x raises
    UnicodeEncodeError). ASCII keys, the common case, go to mmh3 as they are (no encode on the
    hot path; same hash); other keys are encoded here, which gives valid UTF-8 the same hash too.
    """
    if key.isascii():  # str or bytes
        return _mmh3(key)
    return _mmh3(encode_key(key) if isinstance(key, str) else key)


def scaled(load_factor: float) -> int:
    """``load_factor`` in thousandths, at least 1001: the integer the hot path multiplies by."""
    return max(SCALE + 1, round(load_factor * SCALE))


def load_ok(total: int, n: int, load: int, load_factor: float) -> bool:
    """True when an endpoint carrying ``load`` may take one more request (the seed's ``loadOK``).

    ``load + 1 <= ceil(c * (total + 1) / n)``, computed as ``load * n * 1000 < C * (total + 1)``
    with ``C = round(c * 1000)``: the same condition, in exact integers and without a division.
    """
    return load * n * SCALE < scaled(load_factor) * (total + 1)


def cap(total: int, n: int, load_factor: float) -> int:
    """The most requests one endpoint may carry once a new one is placed: ``ceil(c (total+1) / n)``."""
    return -(-scaled(load_factor) * (total + 1) // (n * SCALE))


def check_load_factor(load_factor: float | None) -> float | None:
    """Validate ``load_factor``: None turns bounded loads off, otherwise a finite number > 1.0."""
    if load_factor is None:
        return None
    if (
        isinstance(load_factor, bool)
        or not isinstance(load_factor, (int, float))
        or not math.isfinite(load_factor)
        or load_factor <= 1.0
    ):
        raise ConfigurationError(
            f"load_factor {load_factor!r} must be a finite number > 1.0 (for example 1.25, as Envoy's "
            "hash_balance_factor 125), or None to turn bounded loads off"
        )
    return float(load_factor)


@mypyc_attr(allow_interpreted_subclasses=True)
class HashAlgorithm(BaseAlgorithm):
    """What ring hash and Maglev share: key handling, ``missing_key`` and the bounded-load total.

    With bounded loads on, ``self._scaled`` is the factor in thousandths and subclasses keep
    ``self._total`` (requests in flight on active endpoints) in step in ``get()``; ``put()`` here
    and :meth:`_adjust_total` (called from ``_rebuild``) do the rest.
    """

    requires_key = True

    _factor: float | None

    def __init__(
        self,
        *,
        load_factor: float | None = None,
        missing_key: str = "error",
        rng: _random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        if missing_key not in MISSING_KEY_POLICIES:
            raise ConfigurationError(
                f"missing_key {missing_key!r} must be one of {', '.join(map(repr, MISSING_KEY_POLICIES))}"
            )
        self._factor = check_load_factor(load_factor)
        self._scaled = 0 if self._factor is None else scaled(self._factor)  # 0: bounded loads off
        self._missing_key = missing_key
        self._total = 0
        self.overflowed = 0
        """Requests that left their first-choice endpoint because it was full (the seed's
        ``lb_requests_overflowed_total``)."""
        super().__init__(rng=rng, clock=clock)

    @property
    def load_factor(self) -> float | None:
        """The bounded-load factor ``c``, or None when bounded loads are off."""
        return self._factor

    @property
    def active_inflight(self) -> int:
        """Requests in flight on the current endpoints: the total the bounded-load cap uses.

        Kept as a running count only with bounded loads on; otherwise summed on demand.
        """
        if self._scaled:
            return self._total
        return sum(s.inflight for s in self._active)

    def put(self, endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        slot = self._lookup(endpoint.key)
        if slot is not None and slot.inflight > 0:
            slot.inflight -= 1
            # A removed endpoint's requests left the total when it was removed.
            if slot.active and self._scaled:
                self._total -= 1

    def _adjust_total(self, added: Iterable[Slot], removed: Iterable[Slot]) -> None:
        if self._scaled:
            # An endpoint that comes back while draining brings its in-flight requests with it.
            self._total += sum(s.inflight for s in added) - sum(s.inflight for s in removed)

    def _walk(self, p: int, limit: int, size: int, n: int) -> Slot:
        """Onward from position ``p`` (of ``size``) to the first endpoint under the cap; one always is
        (the seed's rule, and Envoy's for both ring hash and Maglev). Removed endpoints are
        passed over (a Maglev table serving while its successor is built may hold some); a
        ``limit`` of -1 only does that, and is not counted as an overflow."""
        if limit >= 0:
            self.overflowed += 1
        for _ in range(size):
            p = p + 1 if p + 1 < size else 0
            slot = self._slot_at(p)
            if (slot.inflight * n < limit or limit < 0) and slot.active:
                return slot
        raise AssertionError("bounded loads: no endpoint under the cap")  # pragma: no cover

    def _slot_at(self, p: int) -> Slot:
        """The slot owning position ``p`` of the subclass's lookup structure."""
        raise NotImplementedError

    def _keyless(self) -> int:
        """The 32-bit point a request without a key goes to, or AffinityKeyRequired."""
        if self._missing_key == "random":
            # A random point, so bounded loads still apply to keyless requests.
            return self._rng.getrandbits(32)
        raise AffinityKeyRequired(
            f"the {self.name} algorithm needs an affinity key: call get(key) with a str or bytes (the "
            "integrations read it from the X-Affinity header, or from an AffinityKey you configure), "
            "or create the algorithm with missing_key='random' to send keyless requests to a random "
            "endpoint (on a client or LoadBalancer: algorithm_options={'missing_key': 'random'})"
        )

    def __repr__(self) -> str:
        bounded = f" load_factor={self._factor}" if self._factor is not None else ""
        return (
            f"<{type(self).__name__} endpoints={len(self._active)} inflight={self.total_inflight()}"
            f"{bounded} overflowed={self.overflowed}>"
        )
