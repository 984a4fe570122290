"""The algorithm contract and the per-endpoint load bookkeeping every algorithm shares.

An algorithm is used from one event loop (it is not thread-safe, and needs no lock there):
``get()`` and ``put()`` are synchronous, never await and never do I/O. ``update()`` builds new
immutable lookup structures and swaps one reference, so a ``get()`` never sees a half-applied
update. Per-endpoint load lives in a :class:`Slot` that survives updates for endpoints that stay;
a removed endpoint's slot lingers, inactive, until its last in-flight request is put back, so a
late ``put()`` is harmless and an endpoint that comes back finds its true in-flight count.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Iterable
from typing import ClassVar, Protocol, runtime_checkable

from .._endpoint import Endpoint

Clock = Callable[[], float]
"""A monotonic clock in seconds; ``time.monotonic`` unless injected."""


@runtime_checkable
class Algorithm(Protocol):
    """What the LoadBalancer and the integrations need of a balancing algorithm."""

    name: ClassVar[str]
    requires_key: ClassVar[bool]

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        """Pick the endpoint for the next request, or None when there is none."""
        ...

    def put(self, endpoint: Endpoint, *, elapsed: float | None = None, failed: bool = False) -> None:
        """Release an endpoint returned by ``get()``; ``elapsed`` in seconds, ``failed`` on error."""
        ...

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the endpoint set; per-endpoint state of endpoints that stay is kept."""
        ...

    def inflight(self, endpoint: Endpoint | str) -> int:
        """Requests currently outstanding on an endpoint (by endpoint or key)."""
        ...

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints currently eligible for ``get()``."""
        ...


class Slot:
    """Mutable per-endpoint load: the only state ``get()``/``put()`` write."""

    __slots__ = ("endpoint", "inflight", "active")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.inflight = 0
        self.active = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint.key} inflight={self.inflight}{'' if self.active else ' removed'}>"


class BaseAlgorithm:
    """Slot bookkeeping shared by the algorithms; subclasses implement ``get`` and ``_rebuild``.

    ``get()`` implementations increment ``slot.inflight`` of the slot they pick; ``put()``
    here decrements it, never below zero, and forgets a removed endpoint's slot once idle.
    """

    name: ClassVar[str] = ""
    requires_key: ClassVar[bool] = False
    slot_type: ClassVar[type[Slot]] = Slot

    def __init__(self, *, rng: _random.Random | None = None, clock: Clock | None = None) -> None:
        self._rng = rng if rng is not None else _random.Random()
        self._clock = clock if clock is not None else time.monotonic
        self._slots: dict[str, Slot] = {}
        self._active: tuple[Slot, ...] = ()
        self._rebuild(self._active, [], [])

    # -- hot path -------------------------------------------------------------------------
    def get(self, key: str | bytes | None = None) -> Endpoint | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def put(self, endpoint: Endpoint, *, elapsed: float | None = None, failed: bool = False) -> None:
        slot = self._slots.get(endpoint.key)
        if slot is None or slot.inflight <= 0:
            return
        slot.inflight -= 1
        if not slot.active and slot.inflight == 0:
            del self._slots[endpoint.key]

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
            if slot.inflight == 0:
                del slots[slot.endpoint.key]
        self._active = tuple(active)
        self._rebuild(self._active, added, removed)

    def add(self, *endpoints: Endpoint) -> None:
        """Add endpoints (the seed's AddEndpoints)."""
        self.update((*(s.endpoint for s in self._active), *endpoints))

    def remove(self, *endpoints: Endpoint | str) -> None:
        """Remove endpoints by endpoint or key (the seed's RemoveEndpoints)."""
        gone = {e.key if isinstance(e, Endpoint) else e for e in endpoints}
        self.update(s.endpoint for s in self._active if s.endpoint.key not in gone)

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        """Build and swap in the lookup structure for ``active`` (in endpoint order)."""
        raise NotImplementedError

    # -- introspection --------------------------------------------------------------------
    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(s.endpoint for s in self._active)

    def inflight(self, endpoint: Endpoint | str) -> int:
        slot = self._slots.get(endpoint.key if isinstance(endpoint, Endpoint) else endpoint)
        return slot.inflight if slot is not None else 0

    def total_inflight(self) -> int:
        """Outstanding requests on all known endpoints, removed ones still draining included."""
        return sum(s.inflight for s in self._slots.values())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} endpoints={len(self._active)} inflight={self.total_inflight()}>"
