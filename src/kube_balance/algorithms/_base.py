"""The algorithm contract and the per-endpoint load bookkeeping every algorithm shares.

An algorithm is used from one event loop (it is not thread-safe, and needs no lock there):
``get()`` and ``put()`` are synchronous, never await and never do I/O. ``update()`` builds new
immutable lookup structures and swaps one reference, so a ``get()`` never sees a half-applied
update. Per-endpoint load lives in a :class:`Slot` that survives updates for endpoints that stay;
a removed endpoint's slot lingers, inactive, until its last in-flight request is put back, so a
late ``put()`` is harmless and an endpoint that comes back finds its true in-flight count.

Two hooks for the balancer's health policy, both paid for outside ``get()``:

- :meth:`BaseAlgorithm.penalize` (the 429 penalty, outlier ejection's suspects) adds phantom
  requests to a slot's in-flight count, which the load-aware algorithms already compare;
  ``inflight()`` reports the real count. Each caller adds and later removes its own share.
- :meth:`BaseAlgorithm.set_weight_factors` (slow start) scales endpoints' weights: the
  algorithms that honour weights rebuild their lookup with ``weight x factor``.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar

from mypy_extensions import mypyc_attr

from .._endpoint import Endpoint

Clock = Callable[[], float]
"""A monotonic clock in seconds; ``time.monotonic`` unless injected."""


@mypyc_attr(allow_interpreted_subclasses=True)
class Slot:
    """Mutable per-endpoint load: the only state ``get()``/``put()`` write."""

    __slots__ = ("endpoint", "inflight", "active", "penalty", "factor")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.inflight = 0  # requests in flight, plus the penalty
        self.active = True
        self.penalty = 0  # phantom requests in flight (the 429 penalty), part of ``inflight``
        self.factor = 1.0  # weight factor (slow start), for the algorithms that honour weights

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint.key} inflight={self.inflight}{'' if self.active else ' removed'}>"


@mypyc_attr(allow_interpreted_subclasses=True)
class BaseAlgorithm:
    """Slot bookkeeping shared by the algorithms; subclasses implement ``get`` and ``_rebuild``.

    ``get()`` implementations increment ``slot.inflight`` of the slot they pick; ``put()``
    here decrements it, never below zero. Subclasses set their options before calling
    ``super().__init__()``, which builds the (empty) lookup structure once.
    """

    name: ClassVar[str] = ""
    requires_key: ClassVar[bool] = False
    slot_type: ClassVar[type[Slot]] = Slot
    honours_penalty: ClassVar[bool] = False
    """Whether ``get()`` compares in-flight counts, so that :meth:`penalize` steers it."""
    honours_weight_factors: ClassVar[bool] = False
    """Whether ``_rebuild`` uses ``weight x slot.factor``, so that :meth:`set_weight_factors` matters."""

    def __init__(self, *, rng: _random.Random | None = None, clock: Clock | None = None) -> None:
        self._rng = rng if rng is not None else _random.Random()
        self._clock = clock if clock is not None else time.monotonic
        self._slots: dict[str, Slot] = {}
        self._lookup = self._slots.get  # bound once: put() is on every request's path
        self._active: tuple[Slot, ...] = ()
        self._rebuild(self._active, [], [])

    # -- hot path -------------------------------------------------------------------------
    def get(self, key: str | bytes | None = None) -> Endpoint | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def put(self, endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        # Not keyword-only: a keyword-only parameter stops CPython 3.11 from specialising the
        # call, which costs about half an empty call on every put (benchmarks/bench_algorithms.py).
        slot = self._lookup(endpoint.key)
        if slot is not None and slot.inflight > 0:
            slot.inflight -= 1

    # -- updates --------------------------------------------------------------------------
    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Swap in a new endpoint set, keeping the slots of endpoints that stay."""
        slots = self._slots
        new: dict[str, Endpoint] = {}
        for ep in endpoints:
            new.setdefault(ep.key, ep)
        added: list[Slot] = []
        removed: list[Slot] = [s for s in self._active if s.endpoint.key not in new]
        active: list[Slot] = []
        for key, ep in new.items():
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = self.slot_type(ep)
                added.append(slot)
            elif not slot.active:  # came back while requests were still draining
                slot.active = True
                added.append(slot)
            slot.endpoint = ep
            active.append(slot)
        for slot in removed:
            slot.active = False
        # Removed endpoints' slots linger until idle, so a late put() still finds its count;
        # idle ones are dropped here rather than in put(), which stays minimal.
        for key in [k for k, s in slots.items() if not s.active and s.inflight <= s.penalty]:
            del slots[key]
        self._active = tuple(active)
        self._rebuild(self._active, added, removed)

    def add(self, *endpoints: Endpoint) -> None:
        """Add endpoints (the seed's AddEndpoints)."""
        self.update((*(s.endpoint for s in self._active), *endpoints))

    def remove(self, *endpoints: Endpoint | str) -> None:
        """Remove endpoints by endpoint or key (the seed's RemoveEndpoints)."""
        gone = {e.key if isinstance(e, Endpoint) else e for e in endpoints}
        self.update(s.endpoint for s in self._active if s.endpoint.key not in gone)

    # -- health hooks ---------------------------------------------------------------------
    def penalize(self, key: str, load: int) -> None:
        """Add ``load`` phantom requests in flight to endpoint ``key`` (a negative ``load`` takes
        them back; the penalty never goes below 0). A removed endpoint's slot keeps its penalty
        while it lingers, so its owner can take it back.

        Only algorithms that compare in-flight counts (``honours_penalty``) take it.
        """
        slot = self._slots.get(key)
        if slot is None or not self.honours_penalty:
            return
        load = max(load, -slot.penalty)
        slot.penalty += load
        slot.inflight = max(0, slot.inflight + load)

    def take(self, endpoint: Endpoint) -> Endpoint | None:
        """Count a request on ``endpoint`` as if ``get()`` had picked it (a retry choosing an
        untried endpoint directly); None if it is not active. Pair it with ``put()`` as a pick."""
        slot = self._slots.get(endpoint.key)
        if slot is None or not slot.active:
            return None
        slot.inflight += 1
        return slot.endpoint

    def set_weight_factors(self, factors: Mapping[str, float]) -> None:
        """Scale endpoints' weights by ``factors`` (by key; 1.0 for the others) and rebuild.

        Only algorithms that honour weights (``honours_weight_factors``) take it.
        """
        if not self.honours_weight_factors:
            return
        for slot in self._active:
            slot.factor = factors.get(slot.endpoint.key, 1.0)
        self._rebuild(self._active, [], [])

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        """Build and swap in the lookup structure for ``active`` (in endpoint order)."""
        raise NotImplementedError

    # -- introspection --------------------------------------------------------------------
    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(s.endpoint for s in self._active)

    def inflight(self, endpoint: Endpoint | str) -> int:
        slot = self._slots.get(endpoint.key if isinstance(endpoint, Endpoint) else endpoint)
        return max(0, slot.inflight - slot.penalty) if slot is not None else 0

    def total_inflight(self) -> int:
        """Outstanding requests on all known endpoints, removed ones still draining included."""
        return sum(max(0, s.inflight - s.penalty) for s in self._slots.values())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} endpoints={len(self._active)} inflight={self.total_inflight()}>"
