"""Slow start: a newly added endpoint's share of traffic ramps up over a window.

A pod that just became ready may still be warming caches, JIT or connection pools; sent its full
share at once, it answers slowly or fails. Envoy's slow start scales a new endpoint's weight by
``max(min_weight_percent, (t / window) ** (1 / aggression))`` for ``t`` seconds since it was
added, up to ``window`` (defaults from Envoy's ``slow_start_config``: ``aggression`` 1.0, a
linear ramp; ``min_weight_percent`` 10%). Off by default, as in Envoy: pass
``SlowStart(window=...)`` as a step of the :class:`~kube_balance.EndpointPolicy`.

It does not filter: it yields weight factors (:meth:`SlowStart.weight_factors`) that the balancer
hands to ``algorithm.set_weight_factors()``. Honoured by ``least_request``,
``weighted_round_robin`` and ``weighted_random`` (effective weight = ``Endpoint.weight x
factor``), as Envoy honours it for round robin and least request; the others ignore it. The
endpoints of the first snapshot do not ramp (all ramping together would change nothing), and an
endpoint that leaves and comes back (an ejection included) ramps again. The ramp advances in 20
steps: the balancer re-runs its policy on the first outcome after each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ._endpoint import Endpoint, EndpointSet
from ._health import HealthReport, Observing, check_fraction, check_seconds
from ._outcome import Outcome

__all__ = ["SlowStart"]

DEFAULT_AGGRESSION = 1.0
"""Envoy ``slow_start_config.aggression`` default: a linear ramp."""
DEFAULT_MIN_WEIGHT_PERCENT = 10.0
"""Envoy ``slow_start_config.min_weight_percent`` default."""
STEPS = 20
"""The ramp is recomputed this many times per window (each a rebuild of the algorithm's lookup)."""


class SlowStart(Observing):
    """Ramps new endpoints' weight from ``min_weight_percent`` to full over ``window`` seconds."""

    def __init__(
        self,
        window: float,
        *,
        aggression: float = DEFAULT_AGGRESSION,
        min_weight_percent: float = DEFAULT_MIN_WEIGHT_PERCENT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.window = check_seconds("SlowStart", "window", window)
        self.aggression = check_fraction("SlowStart", "aggression", aggression, 0.01, 100.0)
        self.min_weight_percent = check_fraction(
            "SlowStart", "min_weight_percent", min_weight_percent, 1.0, 100.0
        )
        self._clock = clock
        self._known: set[str] | None = None  # None until the first non-empty set: those do not ramp
        self._since: dict[str, float] = {}  # ramping endpoints: when they were added
        self._next_step = math.inf

    def __call__(self, snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        """Every candidate; notes which ones are new."""
        keys = {ep.key for ep in candidates}
        if self._known is None:
            if keys:
                self._known = keys
            return candidates
        now = self._now()
        for key in keys - self._known:
            self._since[key] = now
            self._next_step = min(self._next_step, now + self.window / STEPS)
        for key in self._known - keys:
            self._since.pop(key, None)
        self._known = keys
        return candidates

    def _observe(
        self,
        endpoint: Endpoint,
        elapsed: float | None,
        outcome: Outcome,
        status: int | None,
        retry_after: float | None,
    ) -> None:
        if self._since:
            now = self._now()
            if now >= self._next_step:
                self._next_step = now + self.window / STEPS  # the ramp advances: re-run the policy
                self._refresh()

    def factor(self, elapsed: float) -> float:
        """The weight factor ``elapsed`` seconds after an endpoint was added (1.0 after the window)."""
        if elapsed >= self.window:
            return 1.0
        ramp: float = (max(elapsed, 0.0) / self.window) ** (1.0 / self.aggression)
        return max(self.min_weight_percent / 100.0, ramp)

    def weight_factors(self) -> dict[str, float]:
        """Factors of the endpoints still ramping, by key (endpoints past the window are dropped)."""
        if not self._since:
            return {}
        now = self._now()
        factors: dict[str, float] = {}
        for key, since in list(self._since.items()):
            if now - since >= self.window:
                del self._since[key]
            else:
                factors[key] = self.factor(now - since)
        if not self._since:
            self._next_step = math.inf
        return factors

    def report(self, health: HealthReport) -> None:
        """Add the ramping endpoints and their current factor to ``health``."""
        health.slow_start.update(self.weight_factors())

    def __repr__(self) -> str:
        return f"SlowStart(window={self.window}, ramping={len(self._since)})"
