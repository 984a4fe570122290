"""The 429 penalty: an endpoint that asks for less traffic gets less, without being ejected.

A 429 (``Outcome.OVERLOADED``), or a 503 with ``Retry-After``, says "this pod is busy, come back
later", not "this pod is broken". :class:`OverloadPenalty` then counts the endpoint as ``load``
extra requests in flight for ``Retry-After`` seconds (``default_retry_after`` = 5 s when absent,
as Linkerd; at most ``max_penalty_time``). The load-aware algorithms (``least_request``,
``peak_ewma``) see it in the in-flight counts they already compare, so ``get()`` pays nothing
for it; the others ignore it. The endpoint keeps its place in the set: if every endpoint is
busy, the penalties cancel out and load decides. A later 429 extends the penalty.

A hedged request's first attempt that a hedge outran (``Outcome.SLOW``: a second request sent a
whole hedge delay later to another pod answered first) says the same thing without the pod
saying it: the endpoint is penalised as for a 429 without Retry-After, for ``slow_time`` seconds
(default 5 s; None: hedges do not penalise). ``least_request`` compares in-flight counts, which
at low concurrency cannot tell a pod 10x slower from the others: this is its evidence. When the
time is up the endpoint gets traffic again: if it answers in time it keeps it, if a hedge
outruns it again it is penalised again.

The penalty ends on the first outcome observed (of any endpoint) after its time, or when
``LoadBalancer.status()`` is read. With no penalty running the step is quiet: an OK outcome does
not call it (``LoadBalancer.add_observer(quiet=)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ._endpoint import Endpoint, EndpointSet
from ._health import HealthReport, Observing, PolicyHost, check_count, check_seconds
from ._outcome import Outcome

__all__ = ["OverloadPenalty"]

DEFAULT_PENALTY_LOAD = 25
"""Requests in flight an overloaded endpoint counts as (our choice: it loses every two-choice
comparison against an endpoint with fewer than 25 requests in flight)."""
DEFAULT_RETRY_AFTER = 5.0
"""Seconds of penalty when a 429 has no Retry-After (Linkerd's default backoff for a 429)."""
DEFAULT_SLOW_TIME = DEFAULT_RETRY_AFTER
"""Seconds of penalty when a hedge outran the endpoint: as for a 429 without Retry-After."""
MAX_PENALTY_TIME = 30.0
"""Seconds; a longer Retry-After is capped (our choice: no longer than a first ejection)."""


class OverloadPenalty(Observing):
    """An :class:`~kube_balance.EndpointPolicy` step that filters nothing and penalises 429s,
    and endpoints a hedge outran (``slow_time`` seconds; None: not those).

    ``clock`` (monotonic seconds) defaults to the balancer's.
    """

    def __init__(
        self,
        *,
        load: int = DEFAULT_PENALTY_LOAD,
        default_retry_after: float = DEFAULT_RETRY_AFTER,
        max_penalty_time: float = MAX_PENALTY_TIME,
        slow_time: float | None = DEFAULT_SLOW_TIME,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.load = check_count("OverloadPenalty", "load", load)
        self.default_retry_after = check_seconds(
            "OverloadPenalty", "default_retry_after", default_retry_after
        )
        self.max_penalty_time = check_seconds("OverloadPenalty", "max_penalty_time", max_penalty_time)
        self.slow_time = (
            None if slow_time is None else check_seconds("OverloadPenalty", "slow_time", slow_time)
        )
        self._clock = clock
        self._until: dict[str, float] = {}
        self._next = math.inf  # the earliest end of a penalty
        self._penalize: Callable[[str, int], None] | None = None

    def __call__(self, snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        """Every candidate: a penalty weighs on an endpoint, it does not remove it."""
        return candidates

    def _bound(self, host: PolicyHost) -> None:
        """Observe ``host``'s outcomes and penalise through its algorithm's ``penalize`` hook."""
        self._penalize = getattr(host.algorithm, "penalize", None)
        super()._bound(host)
        self._quiet_on_ok(self._observe, not self._until)  # no penalty: an OK has nothing to end

    def _observe(
        self,
        endpoint: Endpoint,
        elapsed: float | None,
        outcome: Outcome,
        status: int | None,
        retry_after: float | None,
    ) -> None:
        if outcome is Outcome.OVERLOADED or (status == 503 and retry_after is not None):
            self.penalize(endpoint.key, retry_after)
        elif outcome is Outcome.SLOW:
            if self.slow_time is not None:
                self._hold(endpoint.key, self.slow_time)
        elif self._until:
            assert self._clock is not None
            now = self._clock()
            if now >= self._next:
                self._expire(now)

    def penalize(self, key: str, retry_after: float | None) -> None:
        """Penalise endpoint ``key`` for ``retry_after`` seconds (capped; the default when None)."""
        seconds = self.default_retry_after if retry_after is None else min(retry_after, self.max_penalty_time)
        self._hold(key, seconds)

    def _hold(self, key: str, seconds: float) -> None:
        if seconds <= 0 or self._clock is None:
            return
        until = self._clock() + seconds
        previous = self._until.get(key)
        if previous is not None and previous >= until:
            return
        self._until[key] = until
        self._next = min(self._next, until)
        if previous is None:
            self._quiet_on_ok(self._observe, False)  # every outcome checks whether it ended
            if self._penalize is not None:
                self._penalize(key, self.load)

    def _expire(self, now: float) -> None:
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
            if self._penalize is not None:
                self._penalize(key, -self.load)
        self._next = min(self._until.values(), default=math.inf)
        if not self._until:
            self._quiet_on_ok(self._observe, True)

    @property
    def penalized(self) -> dict[str, float]:
        """Penalised endpoint keys and when their penalty ends (balancer's clock), a copy."""
        return dict(self._until)

    def report(self, health: HealthReport) -> None:
        """End the penalties whose time is up, then add the others to ``health``."""
        if self._until and self._clock is not None:
            self._expire(self._clock())
        health.penalized.update(self._until)

    def __repr__(self) -> str:
        return f"OverloadPenalty(load={self.load}, slow_time={self.slow_time}, penalized={len(self._until)})"
