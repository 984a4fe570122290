"""Least request: the power of two choices over in-flight counts.

Pick ``choice_count`` distinct endpoints at random and send the request to the one with the
fewest requests in flight (Mitzenmacher's "power of two choices"; Envoy's ``LEAST_REQUEST`` and
grpc-go's ``least_request_experimental`` default to 2 choices). Two random choices avoid the herd
that a global "least loaded" pick causes when many clients see the same counts, and cost O(1).

With unequal ``Endpoint.weight``, the comparison is ``(in-flight + 1) / weight``; endpoints of
weight 0 receive no traffic. Slow start's weight factors scale the weights (a ramping endpoint
takes the weighted path until its ramp ends); the 429 penalty adds to the in-flight counts.
"""

from __future__ import annotations

import random as _random

from .._endpoint import Endpoint
from .._errors import ConfigurationError
from ._base import BaseAlgorithm, Clock, Slot

DEFAULT_CHOICE_COUNT = 2
"""Envoy ``least_request_lb_config.choice_count`` and grpc-go ``choiceCount`` default."""


class LeastRequest(BaseAlgorithm):
    """P2C over in-flight requests (``choice_count`` candidates, default 2)."""

    name = "least_request"
    honours_penalty = True
    honours_weight_factors = True

    _pool: tuple[Slot, ...]
    _weighted: bool

    def __init__(
        self,
        *,
        choice_count: int = DEFAULT_CHOICE_COUNT,
        rng: _random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(choice_count, bool) or not isinstance(choice_count, int) or choice_count < 2:
            raise ConfigurationError(f"least_request choice_count must be an int >= 2, not {choice_count!r}")
        self._choice_count = choice_count
        super().__init__(rng=rng, clock=clock)
        self._random = self._rng.random

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        pool = self._pool
        n = len(pool)
        if n > 1 and self._choice_count == 2 and not self._weighted:
            rnd = self._random
            i = int(rnd() * n)
            j = int(rnd() * (n - 1))
            if j >= i:  # two distinct candidates without a retry loop; a tie goes to the random first
                j += 1
            slot = pool[i]
            other = pool[j]
            if other.inflight < slot.inflight:
                slot = other
        elif n == 1:  # one endpoint: nothing to choose (a Service of one pod, or all but one ejected)
            slot = pool[0]
        elif n:
            slot = self._pick_general(pool)
        else:
            return None
        slot.inflight += 1
        return slot.endpoint

    def _pick_general(self, pool: tuple[Slot, ...]) -> Slot:
        """Several candidates, tiny pools, or weights: the readable (slower) path."""
        n = len(pool)
        k = min(self._choice_count, n)
        if k < n:
            candidates: tuple[Slot, ...] | list[Slot] = self._rng.sample(pool, k)
        else:  # every endpoint is a candidate: start at a random one so ties do not favour the first
            start = self._rng.randrange(n)
            candidates = pool[start:] + pool[:start]
        if self._weighted:
            return min(candidates, key=lambda s: (s.inflight + 1) / (s.endpoint.weight * s.factor))
        return min(candidates, key=lambda s: s.inflight)

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        pool = tuple(s for s in active if s.endpoint.weight > 0)
        self._weighted = len({s.endpoint.weight * s.factor for s in pool}) > 1
        self._pool = pool
