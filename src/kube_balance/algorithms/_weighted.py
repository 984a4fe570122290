"""Weighted round robin (earliest deadline first) and weighted random, from ``Endpoint.weight``.

Weighted round robin keeps a heap of (next deadline, endpoint): an endpoint of weight w is due
every 1/w, so picks interleave smoothly (as grpc-go's weighted round robin scheduler does) in
O(log n) per pick. Deadlines start at a random phase, so a fleet of clients restarted together
does not pick in lockstep. When all weights are equal both algorithms fall back to the plain one
(round robin, uniform random). Endpoints of weight 0 receive no traffic. Both honour slow start's
weight factors (effective weight ``Endpoint.weight x factor``).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from array import array

from .._endpoint import Endpoint
from ._base import BaseAlgorithm, Slot

_Entry = tuple[float, int, Slot, float]  # (deadline, tie-break, slot, 1/weight)


class WeightedRoundRobin(BaseAlgorithm):
    """Earliest-deadline-first weighted round robin; plain round robin when weights are equal."""

    name = "weighted_round_robin"
    honours_weight_factors = True

    _heap: list[_Entry]

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        heap = self._heap
        if not heap:
            return None
        deadline, seq, slot, step = heap[0]
        heapq.heapreplace(heap, (deadline + step, seq, slot, step))
        slot.inflight += 1
        return slot.endpoint

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        pool = [s for s in active if s.endpoint.weight > 0]
        if len({s.endpoint.weight * s.factor for s in pool}) <= 1:
            # Equal weights: the EDF heap degenerates to round robin; a cycle is cheaper.
            start = self._rng.randrange(len(pool)) if pool else 0
            order = pool[start:] + pool[:start]
            heap: list[_Entry] = [(float(i), i, s, float(len(order))) for i, s in enumerate(order)]
        else:
            heap = []
            for i, s in enumerate(pool):
                step = 1.0 / (s.endpoint.weight * s.factor)
                heap.append((self._rng.random() * step, i, s, step))
        heapq.heapify(heap)
        self._heap = heap


class WeightedRandom(BaseAlgorithm):
    """Random in proportion to weight: one ``random()`` and a C bisect over cumulative weights."""

    name = "weighted_random"
    honours_weight_factors = True

    _cumulative: array[float]
    _slots_by_index: tuple[Slot, ...]
    _total: float

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        pool = self._slots_by_index
        if not pool:
            return None
        slot = pool[bisect.bisect(self._cumulative, self._rng.random() * self._total)]
        slot.inflight += 1
        return slot.endpoint

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        pool = tuple(s for s in active if s.endpoint.weight > 0)
        cumulative = array("d", itertools.accumulate(s.endpoint.weight * s.factor for s in pool))
        if cumulative:
            cumulative[-1] = float("inf")  # random() * total never lands past the last endpoint
        self._total = float(sum(s.endpoint.weight * s.factor for s in pool))
        self._cumulative = cumulative
        self._slots_by_index = pool
