"""Consistent hashing on a ring of virtual nodes, optionally with bounded loads (the seed's algorithm).

Each endpoint puts ``replicas`` points on a 32-bit ring: virtual node ``i`` of an endpoint is the
hash of ``f"{endpoint.key}-{i}"`` (UTF-8), for example ``"10.0.0.1:8080-0"``. A key goes to the
owner of the first point at or after its hash, wrapping round. Points whose hashes collide are all
kept, ordered by endpoint key, so the ring never depends on the order endpoints arrived in.

Storage is compact: the sorted points in an ``array('I')`` searched with C ``bisect`` (narrowed by
a bucket index on the top 14 bits), a parallel ``array('H')`` of slot indices (``'I'`` past 65,536
endpoints) and a short tuple of slots: 1,000 endpoints x 256 points take 1.6 MB of arrays, 1.9 MB
with the slots (tracemalloc). A small update splices the arrays (C copies plus a few bisects per
changed point, ~2 ms at that size); a large one rebuilds them with one C sort (~100 ms).
"""

from __future__ import annotations

import random as _random
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence
from itertools import accumulate, repeat
from operator import sub
from typing import Any

import mmh3

from .._endpoint import Endpoint
from .._errors import ConfigurationError
from ._base import Clock, Slot
from ._bounded import SCALE, HashAlgorithm, encode_key, hash_key

HashFunction = Callable[[bytes], int]
"""A hash from bytes to a 32-bit int; wider results are truncated to their low 32 bits."""

DEFAULT_REPLICAS = 256  # the seed's replication count
_MASK = 0xFFFFFFFF
_MAGIC = float(2**52)  # doubles from 2**52 to 2**53 hold every integer exactly, in their low 52 bits
_mmh3 = mmh3.hash  # signed by default; ``& _MASK`` makes it mmh3's unsigned 32-bit value

# A bucket index over the ring's top bits narrows bisect from 18 probes to about 4 (~150 ns less
# per get at 256,000 points) for 64 KB: starts[b] is the first point >= b << _SHIFT.
_SHIFT = 18
_BOUNDARIES = range(0, 2**32 + 1, 1 << _SHIFT)

# Everything get() reads, behind the one reference an update swaps: ring points, the owner's slot
# index per point (plus one wrap-around entry), bucket starts, slots, active count x 1000, load
# factor x 1000 (0: bounded loads off), key hash.
_Table = tuple["array[int]", "array[int]", "array[int]", tuple[Slot, ...], int, int, Callable[[Any], int]]
_HOLE = Slot(Endpoint("0.0.0.0", 1))  # fills a removed endpoint's index until reused; no point names it
_NO_STARTS = array("I", bytes(4 * len(_BOUNDARIES)))


class RingHash(HashAlgorithm):
    """Ring hash (Karger et al.), with bounded loads when ``load_factor`` is set.

    - ``replicas``: virtual nodes per endpoint, default 256 (the seed's).
    - ``hash_function``: ``Callable[[bytes], int]`` for keys and points; default MurmurHash3
      x86 32-bit, seed 0, unsigned (``mmh3``). Tests pass a predictable one. A str key is
      hashed as UTF-8 with ``surrogatepass`` (a lone surrogate is a key like any other).
    - ``load_factor``: ``c > 1.0`` caps every endpoint at ``ceil(c * (in flight + 1) / n)``
      (arXiv 1608.01350; Envoy's ``hash_balance_factor`` / 100); None (default) turns it off.
    - ``missing_key``: ``"error"`` (default) makes ``get()`` without a key raise
      :class:`~kube_balance.AffinityKeyRequired`; ``"random"`` sends it to a random point.

    ``overflowed`` counts requests that left their first-choice endpoint because it was full.
    """

    name = "ring_hash"

    _table: _Table
    _index: dict[str, int]

    def __init__(
        self,
        *,
        replicas: int = DEFAULT_REPLICAS,
        hash_function: HashFunction | None = None,
        load_factor: float | None = None,
        missing_key: str = "error",
        rng: _random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 65_536:
            raise ConfigurationError(f"replicas {replicas!r} must be an int in 1..65536 (default 256)")
        if hash_function is not None and not callable(hash_function):
            raise ConfigurationError(f"hash_function {hash_function!r} is not callable")
        self._replicas = replicas
        self._suffixes = tuple(f"-{i}" for i in range(replicas))
        self._hash_key: Callable[[str | bytes], int]
        if hash_function is None:
            self._hash_key = hash_key  # a str as UTF-8, surrogatepass (mmh3 crashes on a lone surrogate)
            self._hash_str: Callable[[str], int] = _mmh3  # endpoint keys: host:port, ASCII
        else:
            fn = hash_function
            self._hash_key = lambda key: fn(encode_key(key) if isinstance(key, str) else key)
            self._hash_str = lambda text: fn(text.encode())
        self._index: dict[str, int] = {}  # endpoint key -> slot index in the table
        self._table = (array("I"), array("H"), _NO_STARTS, (), 0, 0, self._hash_key)
        super().__init__(load_factor=load_factor, missing_key=missing_key, rng=rng, clock=clock)

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        """The endpoint owning ``key``'s point (or, with bounded loads, the next one with room)."""
        ring, owners, starts, slots, n, scaled, hash_key = self._table
        h = hash_key(key) & _MASK if key is not None else self._keyless()
        b = h >> _SHIFT
        p = bisect_left(ring, h, starts[b], starts[b + 1])
        try:
            slot = slots[owners[p]]  # owners has one extra entry: past the last point wraps to the first
        except IndexError:  # empty ring
            return None
        if scaled:
            limit = scaled * (self._total + 1)
            if slot.inflight * n >= limit:  # the seed's loadOK, in integers: see _bounded.load_ok
                slot = self._walk(p, limit, len(ring), n)
            self._total += 1
        slot.inflight += 1
        return slot.endpoint

    def _slot_at(self, p: int) -> Slot:
        _, owners, _, slots, _, _, _ = self._table
        return slots[owners[p]]

    def points(self, endpoint: Endpoint | str) -> list[int]:
        """The ring points of an endpoint (by endpoint or key), as this ring's hash computes them."""
        key = endpoint.key if isinstance(endpoint, Endpoint) else endpoint
        hash_str = self._hash_str
        return [hash_str(key + s) & _MASK for s in self._suffixes]

    @property
    def ring(self) -> tuple[list[int], list[str]]:
        """The sorted points and the endpoint key owning each (for tests and debugging)."""
        ring, owners, _, slots, _, _, _ = self._table
        return list(ring), [slots[i].endpoint.key for i in owners[: len(ring)]]

    # -- updates --------------------------------------------------------------------------
    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        ring, slots = self._table[0], self._table[3]
        changed = len(added) + len(removed)
        if not active:
            self._swap(array("I"), array("H"), _NO_STARTS, (), 0)
            self._index = {}
        elif not ring or changed * 8 > len(active) or len(slots) + len(added) > 65_536:
            self._full_build(active)
        else:
            self._splice(active, added, removed)
        self._adjust_total(added, removed)  # after the swap: a hash_function that raises changes nothing

    def _swap(
        self, ring: array[int], owners: array[int], starts: array[int], slots: tuple[Slot, ...], n: int
    ) -> None:
        self._table = (ring, owners, starts, slots, n * SCALE, self._scaled, self._hash_key)

    def _full_build(self, active: Sequence[Slot]) -> None:
        ordered = sorted(active, key=lambda s: s.endpoint.key)  # rank = tie order of equal hashes
        if len(ordered) <= 65_536:
            # Each point as the exact double 2**52 + (hash << 16 | rank): see _unpack.
            packed: list[float] = []
            hash_str, suffixes = self._hash_str, self._suffixes
            for rank, slot in enumerate(ordered):
                key, base = slot.endpoint.key, _MAGIC + rank
                packed.extend([(hash_str(key + s) & _MASK) * 65536.0 + base for s in suffixes])
            packed.sort()
            ring, owners = _unpack(packed)
        else:  # pragma: no cover - beyond any real Service
            ring, owners = _sort_generic([self.points(s.endpoint) for s in ordered])
        owners.append(owners[0])
        starts = array("I", map(bisect_left, repeat(ring), _BOUNDARIES))
        self._swap(ring, owners, starts, tuple(ordered), len(ordered))
        self._index = {s.endpoint.key: i for i, s in enumerate(ordered)}

    def _splice(self, active: Sequence[Slot], added: list[Slot], removed: list[Slot]) -> None:
        ring, owners, starts, old_slots, _, _, _ = self._table
        slots: list[Slot] = list(old_slots)
        index = dict(self._index)
        owners = owners[: len(ring)]  # a copy without the wrap-around entry: the live table stays intact
        counts = list(map(sub, starts[1:], starts[:-1]))  # points per bucket
        if removed:
            drop: set[int] = set()
            for slot in removed:
                i = index.pop(slot.endpoint.key)
                slots[i] = _HOLE
                for h in self.points(slot.endpoint):
                    p = bisect_left(ring, h)
                    while owners[p] != i or p in drop:  # exactly this endpoint's points, never a twin's
                        p += 1
                    drop.add(p)
                    counts[h >> _SHIFT] -= 1
            ring, owners = _without(ring, owners, sorted(drop))
        if added:
            free = [i for i, s in enumerate(slots) if s is _HOLE]
            new: list[tuple[int, str, int]] = []
            for slot in added:
                i = free.pop(0) if free else len(slots)
                if i == len(slots):
                    slots.append(slot)
                else:
                    slots[i] = slot
                index[slot.endpoint.key] = i
                new.extend((h, slot.endpoint.key, i) for h in self.points(slot.endpoint))
            new.sort()
            for h, _, _ in new:
                counts[h >> _SHIFT] += 1
            ring, owners = _with(ring, owners, slots, new)
        owners.append(owners[0])
        starts = array("I", accumulate(counts, initial=0))
        self._swap(ring, owners, starts, tuple(slots), len(active))
        self._index = index


def _unpack(packed: list[float]) -> tuple[array[int], array[int]]:
    """The ring and owner arrays from sorted doubles ``2**52 + (hash << 16 | rank)``.

    CPython sorts floats about twice as fast as ints wider than 30 bits, and equal hashes end up in
    rank order. Doubles from 2**52 to 2**53 hold their integer in the low 52 bits, so after packing
    them little-endian, bytes 0-1 of each are the rank and bytes 2-5 the hash: strided byte
    slices copy both out in C.
    """
    n = len(packed)
    raw = struct.pack(f"<{n}d", *packed)
    ring_bytes, owner_bytes = bytearray(4 * n), bytearray(2 * n)
    for j in range(4):
        ring_bytes[j::4] = raw[2 + j :: 8]
    for j in range(2):
        owner_bytes[j::2] = raw[j::8]
    ring, owners = array("I"), array("H")
    ring.frombytes(ring_bytes)
    owners.frombytes(owner_bytes)
    if sys.byteorder == "big":  # pragma: no cover - the bytes above are little-endian
        ring.byteswap()
        owners.byteswap()
    return ring, owners


def _sort_generic(points: list[list[int]]) -> tuple[array[int], array[int]]:
    """As the packed float sort in ``_full_build``, by a stable sort of point positions (any size)."""
    hashes = [h for hs in points for h in hs]
    owner_of = [rank for rank, hs in enumerate(points) for _ in hs]
    order = sorted(range(len(hashes)), key=hashes.__getitem__)
    return array("I", map(hashes.__getitem__, order)), array("I", map(owner_of.__getitem__, order))


def _without(ring: array[int], owners: array[int], drop: list[int]) -> tuple[array[int], array[int]]:
    """Copies of ``ring`` and ``owners`` without the (sorted) positions in ``drop``."""
    new_ring, new_owners = array("I"), array(owners.typecode)
    start = 0
    for p in drop:
        new_ring.extend(ring[start:p])
        new_owners.extend(owners[start:p])
        start = p + 1
    new_ring.extend(ring[start:])
    new_owners.extend(owners[start:])
    return new_ring, new_owners


def _with(
    ring: array[int], owners: array[int], slots: list[Slot], new: list[tuple[int, str, int]]
) -> tuple[array[int], array[int]]:
    """Copies of ``ring`` and ``owners`` with the points ``new`` (sorted ``(hash, key, index)``)."""
    new_ring, new_owners = array("I"), array(owners.typecode)
    start, size = 0, len(ring)
    for h, key, i in new:
        p = bisect_left(ring, h, start)
        # Among equal hashes, order by endpoint key, as a full build does.
        while p < size and ring[p] == h and slots[owners[p]].endpoint.key < key:
            p += 1
        new_ring.extend(ring[start:p])
        new_owners.extend(owners[start:p])
        new_ring.append(h)
        new_owners.append(i)
        start = p
    new_ring.extend(ring[start:])
    new_owners.extend(owners[start:])
    return new_ring, new_owners
