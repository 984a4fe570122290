"""Round robin, starting at a random offset.

A fleet of clients restarted together would otherwise all send their first request to the
same pod (grpc-go's pickers start at a random index for the same reason).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from .._endpoint import Endpoint
from ._base import BaseAlgorithm, Slot


class _Nobody(Slot):
    """Stands in for "no endpoint" so get() needs no branch: its endpoint is None."""

    def __init__(self) -> None:
        self.endpoint = None  # type: ignore[assignment]
        self.inflight = 0
        self.active = False
        self.penalty = 0
        self.factor = 1.0


_NOBODY = _Nobody()


class RoundRobin(BaseAlgorithm):
    """Each endpoint in turn; ``get()`` is one ``next()`` on a C-level cycle."""

    name = "round_robin"

    _next: Callable[[], Slot]

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        slot = self._next()
        slot.inflight += 1
        return slot.endpoint

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        if not active:
            self._next = itertools.repeat(_NOBODY).__next__
            return
        start = self._rng.randrange(len(active))
        self._next = itertools.cycle(active[start:] + active[:start]).__next__
