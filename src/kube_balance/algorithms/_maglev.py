"""Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table, optionally with bounded loads.

Each endpoint derives a permutation of the table's ``M`` positions from two hashes of its key,
``offset = h0 % M`` and ``skip = h1 % (M - 1) + 1`` (MurmurHash3 seeds 0 and 1), and the
endpoints take turns claiming their next free position until the table is full. A key goes to
``table[hash(key) % M]`` (the signed 32-bit MurmurHash3, Python's non-negative modulo): one
hash and one index, whatever the endpoint count. Endpoints take turns in key order, so the table
does not depend on the order they arrived in. Every update rebuilds the table (about ``M ln M``
steps: 7 ms compiled, 40 ms pure Python at 65,537; 1.6 s pure at 5,000 endpoints, M = 500,009);
removing one of ``n`` endpoints moves its own ``1/n`` of the keys plus about half as many others.

So that a rebuild never blocks the event loop for long, an update made inside a running loop,
with a table of at least ``SLICED_FROM`` positions already serving, builds the new table in
slices of about ``BUILD_SLICE`` seconds (``build_slice``), one per loop turn, and swaps it in whole when done:
``get()`` sees the old table or the new one, never a half-built one, and the new table is the
same as a build at once would give (same endpoint set, same table). Until the swap, keys of an
endpoint just removed go on along the old table to the next endpoint still present; new
endpoints get traffic from the swap on. A later update supersedes a build still running. The
first table, small tables, and updates outside a running loop are built at once.

``M`` must be prime (so every skip visits every position) and at least 100 times the endpoint
count (so each endpoint's share stays within about 1% of ``1/n``), as the paper advises; the
default 65,537 is Envoy's.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Generator, Iterable, Sequence

import mmh3

from .._endpoint import Endpoint
from .._errors import ConfigurationError
from ._base import Clock, Slot
from ._bounded import SCALE, HashAlgorithm, encode_key

DEFAULT_TABLE_SIZE = 65_537  # Envoy's default; the paper's smallest example
SLICED_FROM = 20_000  # positions: smaller tables build at once in a few ms even in pure Python
BUILD_SLICE = 0.005  # seconds of building per event-loop turn
_PROBES = 4_096  # table probes between two looks at the clock (well under a ms, even pure)
_MAP_CHUNK = 16_384  # table positions mapped to their slots between two looks at the clock
_CHECKS = 1 << 62  # "scaled" that makes get() check slots without ever reaching the bounded-load cap
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
        # (lookup table, M, its endpoint count x 1000, load factor x 1000, 0 or _CHECKS): one
        # reference to swap. A nonzero last field sends get() through the checked path.
        self._table: tuple[Sequence[Slot], int, int, int] = ((), self._size, 0, 0)
        self._build: _Build | None = None  # a table being built in slices, if any
        self.build_slice = BUILD_SLICE
        """Seconds of table building per event-loop turn, for an update made inside a running loop."""
        super().__init__(load_factor=load_factor, missing_key=missing_key, rng=rng, clock=clock)

    @property
    def table_size(self) -> int:
        """The lookup table size ``M``."""
        return self._size

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        """The endpoint at ``table[hash(key) % M]`` (or, with bounded loads, the next one with room)."""
        table, size, n, scaled = self._table
        # The signed hash: Python's % is never negative, and skipping the mask saves ~10 ns.
        if key is None:
            h = self._keyless()
        elif key.isascii():  # str or bytes: mmh3 takes either as is (hash_key(), inlined: get() is hot)
            h = _mmh3(key)
        else:
            h = _mmh3(encode_key(key) if isinstance(key, str) else key)
        try:
            slot = table[h % size]
        except IndexError:  # empty table
            return None
        if scaled:  # bounded loads on, or an old table serving while the new one is built
            if not slot.active:  # removed, and the table without it is not swapped in yet
                slot = self._walk(h % size, -1, size, 1)
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
        self._build = None  # supersedes a build still running
        if not active:
            self._table = ((), self._size, 0, self._scaled)
            return
        ordered = sorted(active, key=lambda s: s.endpoint.key)
        names = [s.endpoint.key for s in ordered]
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        old, size, n, scaled = self._table
        if loop is None or not old or self._size < SLICED_FROM:
            self._install(ordered, populate(names, self._size))
            return
        if removed and not scaled:  # the old table keeps serving: skip its removed endpoints
            self._table = (old, size, n, _CHECKS)
        self._build = _Build(self, loop, len(ordered), _table_steps(ordered, names, self._size))

    def _install(self, ordered: list[Slot], owners: list[int]) -> None:
        self._swap(list(map(ordered.__getitem__, owners)), len(ordered))

    def _swap(self, table: list[Slot], n: int) -> None:
        self._table = (table, len(table), n * SCALE, self._scaled)

    @property
    def building(self) -> bool:
        """Whether a new table is being built in slices (the previous one serves meanwhile)."""
        return self._build is not None

    def owners(self) -> list[str]:
        """The endpoint key at each table position (for tests and debugging)."""
        return [slot.endpoint.key for slot in self._table[0]]


class _Build:
    """A Maglev table built in slices on the event loop, swapped in whole when complete."""

    def __init__(
        self, owner: Maglev, loop: asyncio.AbstractEventLoop, n: int, steps: Generator[None, None, list[Slot]]
    ) -> None:
        self._owner, self._loop, self._n, self._steps = owner, loop, n, steps
        loop.call_soon(self.step)

    def step(self) -> None:
        """Build for at most BUILD_SLICE seconds, then yield the loop (or swap the table in)."""
        if self._owner._build is not self:  # superseded by a later update
            return
        deadline = time.perf_counter() + self._owner.build_slice
        try:
            next(self._steps)  # at least one pause's worth per turn, whatever the slice
            while time.perf_counter() < deadline:
                next(self._steps)
        except StopIteration as done:
            table: list[Slot] = done.value
            self._owner._build = None
            self._owner._swap(table, self._n)
            return
        self._loop.call_soon(self.step)


def _table_steps(ordered: list[Slot], names: list[str], size: int) -> Generator[None, None, list[Slot]]:
    """The lookup table (owner slot per position) in steps: the fill, then the slots by chunks.

    Chunks go from the end, and each is cut off ``owners`` once mapped, so freeing its ``size``
    int objects is spread over the steps too, instead of falling on the last one.
    """
    owners = yield from fill(names, size, _PROBES)
    table: list[Slot] = [ordered[0]] * size  # every position is overwritten below
    for start in reversed(range(0, size, _MAP_CHUNK)):
        table[start : start + _MAP_CHUNK] = map(ordered.__getitem__, owners[start:])
        del owners[start:]
        yield
    return table


def populate(names: list[str], size: int) -> list[int]:
    """The Maglev table for ``names``: at each of ``size`` positions, the index of its owner.

    The paper's Algorithm 1: endpoints take turns, each claiming the next still-free position of
    its own permutation ``(offset + j * skip) % size``.
    """
    steps = fill(names, size, 0)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            table: list[int] = done.value
            return table


def fill(names: list[str], size: int, probes: int) -> Generator[None, None, list[int]]:
    """:func:`populate` as a generator that pauses every ``probes`` claims and probes (0: never).

    Early claims find a free position at once, and one claim near the end can probe up to
    ``size`` positions, so both count towards the next pause.
    """
    n = len(names)
    offsets = [(_mmh3(name, 0) & _MASK) % size for name in names]
    skips = [(_mmh3(name, 1) & _MASK) % (size - 1) + 1 for name in names]
    table = [-1] * size
    filled = 0
    budget = probes  # counts down to the next pause; from 0 it goes negative and never pauses
    while True:  # each round fills n positions, so at most ceil(size / n) rounds
        for i in range(n):
            c, skip = offsets[i], skips[i]
            while table[c] >= 0:
                c += skip
                if c >= size:
                    c -= size
                budget -= 1
                if budget == 0:
                    budget = probes
                    yield
            table[c] = i
            offsets[i] = c + skip - size if c + skip >= size else c + skip
            filled += 1
            if filled == size:
                return table
            budget -= 1  # a claim counts too: early on, claims find free positions at once
            if budget == 0:
                budget = probes
                yield
