"""Round robin, starting at a random offset.

A fleet of clients restarted together would otherwise all send their first request to the
same pod (grpc-go's pickers start at a random index for the same reason).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from .._endpoint import Endpoint
from ._base import BaseAlgorithm, Slot


class RoundRobin(BaseAlgorithm):
    """Each endpoint in turn; ``get()`` is one ``next()`` on a C-level cycle."""

    name = "round_robin"

    _cycle: Iterator[Slot | None]

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        slot = next(self._cycle)
        if slot is None:
            return None
        slot.inflight += 1
        return slot.endpoint

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        if not active:
            self._cycle = itertools.cycle((None,))
            return
        start = self._rng.randrange(len(active))
        self._cycle = itertools.cycle(active[start:] + active[:start])
