"""Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table, optionally with bounded loads.

Each endpoint derives a permutation of the table's ``M`` positions from two hashes of its key,
``offset = h0 % M`` and ``skip = h1 % (M - 1) + 1`` (MurmurHash3 seeds 0 and 1), and the
endpoints take turns claiming their next free position until the table is full. A key goes to
``table[hash(key) % M]`` (the signed 32-bit MurmurHash3, Python's non-negative modulo): one
hash and one index, whatever the endpoint count. Endpoints take turns in key order, so the table
does not depend on the order they arrived in. Every update rebuilds the table (about ``M ln M``
steps: 7 ms compiled, 40 ms pure Python at 65,537); removing one of ``n`` endpoints moves its own
``1/n`` of the keys plus about half as many others.

``M`` must be prime (so every skip visits every position) and at least 100 times the endpoint
count (so each endpoint's share stays within about 1% of ``1/n``), as the paper advises; the
default 65,537 is Envoy's.
"""

from __future__ import annotations

import random as _random
from collections.abc import Iterable

import mmh3

from .._endpoint import Endpoint
from .._errors import ConfigurationError
from ._base import Clock, Slot
from ._bounded import SCALE, HashAlgorithm, hash_key

DEFAULT_TABLE_SIZE = 65_537  # Envoy's default; the paper's smallest example
_MASK = 0xFFFFFFFF
_mmh3 = mmh3.hash


MAX_TABLE_SIZE = 5_000_011
"""Envoy's upper bound on ``table_size`` (a prime): 5 million slots, 50,000 endpoints."""


def _is_prime(m: int) -> bool:
    if m < 2:
        return False
    return all(m % d for d in range(2, int(m**0.5) + 1))


def _next_prime(m: int) -> int:
    while not _is_prime(m):
        m += 1
    return m


class Maglev(HashAlgorithm):
    """Maglev consistent hashing, with bounded loads when ``load_factor`` is set.

    - ``table_size``: a prime ``M``. Left unset, it is 65,537 (Envoy's default) and grows to the
      next prime of at least 100 x the endpoint count when a Service outgrows it (every key moves
      once then). Set explicitly, it is fixed: an update with more than ``M / 100`` endpoints
      raises :class:`~kube_balance.ConfigurationError` and changes nothing.
    - ``load_factor``: ``c > 1.0`` caps every endpoint at ``ceil(c * (in flight + 1) / n)``; a full
      first choice walks on along the table, as Envoy does. None (default) turns it off.
    - ``missing_key``: ``"error"`` (default) or ``"random"``, as for ``ring_hash``.

    Keys (bytes, or str as UTF-8 with lone surrogates kept by ``surrogatepass``) hash with
    MurmurHash3 x86 32-bit, seed 0. Endpoint
    weights are ignored. ``overflowed`` counts requests that left their first choice.
    """

    name = "maglev"

    def __init__(
        self,
        *,
        table_size: int | None = None,
        load_factor: float | None = None,
        missing_key: str = "error",
        rng: _random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        if table_size is not None and (
            isinstance(table_size, bool)
            or not isinstance(table_size, int)
            or not 100 < table_size <= MAX_TABLE_SIZE  # below 101 the table could never hold one endpoint
            or not _is_prime(table_size)
        ):
            raise ConfigurationError(
                f"table_size {table_size!r} must be a prime in 101..{MAX_TABLE_SIZE}, at least 100 x the "
                "largest endpoint count (default 65537; for example 101 for one endpoint, 100003 or 655373)"
            )
        self._fixed = table_size is not None
        self._size = table_size if table_size is not None else DEFAULT_TABLE_SIZE
        # (lookup table, M, active count x 1000, load factor x 1000 or 0): one reference to swap
        self._table: tuple[tuple[Slot, ...], int, int, int] = ((), self._size, 0, 0)
        super().__init__(load_factor=load_factor, missing_key=missing_key, rng=rng, clock=clock)

    @property
    def table_size(self) -> int:
        """The lookup table size ``M``."""
        return self._size

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        """The endpoint at ``table[hash(key) % M]`` (or, with bounded loads, the next one with room)."""
        table, size, n, scaled = self._table
        # The signed hash: Python's % is never negative, and skipping the mask saves ~10 ns.
        h = hash_key(key) if key is not None else self._keyless()
        try:
            slot = table[h % size]
        except IndexError:  # empty table
            return None
        if scaled:
            limit = scaled * (self._total + 1)
            if slot.inflight * n >= limit:  # the seed's loadOK, in integers: see _bounded.load_ok
                slot = self._walk(h % size, limit, size, n)
            self._total += 1
        slot.inflight += 1
        return slot.endpoint

    def _slot_at(self, p: int) -> Slot:
        return self._table[0][p]

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Swap in a new endpoint set; a fixed table too small for it raises, changing nothing."""
        endpoints = list(endpoints)
        count = len({ep.key for ep in endpoints})
        if count * 100 > self._size and not self._fixed:
            self._size = _next_prime(count * 100)
        elif count * 100 > self._size:
            raise ConfigurationError(
                f"maglev table_size {self._size} is too small for {count} endpoints: it must be at "
                f"least 100 x the endpoint count ({count * 100}); choose a larger prime table_size"
            )
        super().update(endpoints)

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        self._adjust_total(added, removed)
        if not active:
            self._table = ((), self._size, 0, self._scaled)
            return
        ordered = sorted(active, key=lambda s: s.endpoint.key)
        owners = populate([s.endpoint.key for s in ordered], self._size)
        self._table = (
            tuple(map(ordered.__getitem__, owners)),
            self._size,
            len(ordered) * SCALE,
            self._scaled,
        )

    def owners(self) -> list[str]:
        """The endpoint key at each table position (for tests and debugging)."""
        return [slot.endpoint.key for slot in self._table[0]]


def populate(names: list[str], size: int) -> list[int]:
    """The Maglev table for ``names``: at each of ``size`` positions, the index of its owner.

    The paper's Algorithm 1: endpoints take turns, each claiming the next still-free position of
    its own permutation ``(offset + j * skip) % size``.
    """
    n = len(names)
    offsets = [(_mmh3(name, 0) & _MASK) % size for name in names]
    skips = [(_mmh3(name, 1) & _MASK) % (size - 1) + 1 for name in names]
    table = [-1] * size
    filled = 0
    while True:  # each round fills n positions, so at most ceil(size / n) rounds
        for i in range(n):
            c, skip = offsets[i], skips[i]
            while table[c] >= 0:
                c += skip
                if c >= size:
                    c -= size
            table[c] = i
            offsets[i] = c + skip - size if c + skip >= size else c + skip
            filled += 1
            if filled == size:
                return table
