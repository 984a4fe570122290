"""Uniform random choice."""

from __future__ import annotations

from .._endpoint import Endpoint
from ._base import BaseAlgorithm, Slot


class Random(BaseAlgorithm):
    """Each request to an endpoint chosen uniformly at random with the injected rng."""

    name = "random"

    _pool: tuple[Slot, ...]

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        pool = self._pool
        if not pool:
            return None
        slot = pool[int(self._rng.random() * len(pool))]
        slot.inflight += 1
        return slot.endpoint

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        self._pool = active
