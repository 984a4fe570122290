"""Peak EWMA: power of two choices over latency x load.

Each endpoint keeps an exponentially weighted moving average of its response latency that jumps
straight up to any slower observation (the *peak*) and decays smoothly otherwise; the cost of an
endpoint is ``max(ewma, wait) x (in-flight + 1)``. Two random candidates, the cheaper wins
(Finagle's and Linkerd's ``PeakEwma``, tower's ``load::PeakEwma``, plus the wait below).

The *wait* is what the endpoint has not answered yet: while it has requests in flight, the time
since it last made progress, i.e. since its last answer (any outcome) or since the request that
ended an idle spell, whichever is later; 0 when it has none in flight. A pod that turns slow
shows it before its first slow answer returns: once it has kept a request longer than its
estimate, the wait is the latency it is showing, and it loses picks from then on instead of
only once that answer arrives (a pod 10x slower for a while keeps getting requests for a whole
slow answer's time otherwise). The wait is exact and O(1): one time stamp per endpoint, set on
an answer and on a pick of an idle endpoint; it is never more than the age of the oldest request
in flight (that request was either sent when the endpoint was idle, or sent while an older one
was in flight, which has been answered since). A mean of the in-flight requests' start times
would need each answer's start, which ``put()`` does not get (``elapsed`` is the time to the
response headers, not to the release). The 429 penalty's phantom requests multiply the cost
but do not wait; ``take()`` (a retry's direct pick) starts the wait as ``get()`` does.

The estimate also decays toward zero while an endpoint is not observed, so a pod that was slow is
tried again after a few decay periods and, if it has recovered, wins its traffic back.

Defaults, from Linkerd (``linkerd2-proxy``): decay 10 s; endpoints never measured start at 30 ms.
A failed request counts as ``failure_penalty`` seconds (default 1 s, our choice: far above a
healthy RTT, so failing pods lose traffic fast, yet recoverable within a few decay periods).

Invalid samples are dropped, not clamped: an ``elapsed`` that is NaN, negative (a clock that
stepped back) or infinite releases the request but leaves the estimate as it was. A clock that
steps back (or returns NaN) never moves an endpoint's time stamp backwards, so no decay is
computed over a negative or undefined interval. Such a reading makes a wait negative or NaN,
which loses to the estimate: the cost falls back to plain peak EWMA until the next answer.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from math import exp

from .._endpoint import Endpoint
from .._errors import ConfigurationError
from ._base import BaseAlgorithm, Clock, Slot

DEFAULT_DECAY = 10.0
"""Seconds; Linkerd's and Finagle's default decay time."""
DEFAULT_RTT = 0.030
"""Seconds; Linkerd's default RTT estimate for an endpoint with no measurement yet."""
DEFAULT_FAILURE_PENALTY = 1.0
"""Seconds counted as the latency of a failed request."""
_INF = math.inf


class EwmaSlot(Slot):
    """A slot with a latency estimate (seconds), the time it was last updated, and the time the
    endpoint last made progress: its last answer, or the request that ended an idle spell."""

    __slots__ = ("ewma", "stamp", "since")

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self.ewma = DEFAULT_RTT
        self.stamp = 0.0
        self.since = 0.0  # meaningful only while requests of its own are in flight


class PeakEwma(BaseAlgorithm):
    """P2C with cost = max(peak-EWMA latency, wait without an answer) x (in-flight + 1)."""

    name = "peak_ewma"
    honours_penalty = True  # cost = max(ewma, wait) x (in-flight + 1): the 429 penalty multiplies it
    slot_type = EwmaSlot

    _pool: tuple[EwmaSlot, ...]
    _lookup: Callable[[str], EwmaSlot | None]  # type: ignore[assignment]

    def __init__(
        self,
        *,
        decay: float = DEFAULT_DECAY,
        default_rtt: float = DEFAULT_RTT,
        failure_penalty: float | None = DEFAULT_FAILURE_PENALTY,
        rng: _random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        for label, value in (
            ("decay", decay),
            ("default_rtt", default_rtt),
            ("failure_penalty", failure_penalty),
        ):
            if value is not None and not (
                isinstance(value, (int, float)) and value > 0 and math.isfinite(value)
            ):
                raise ConfigurationError(
                    f"peak_ewma {label} must be a finite number of seconds > 0, not {value!r}"
                )
        self._neg_inv_tau = -1.0 / float(decay)
        self._default_rtt = float(default_rtt)
        self._penalty = failure_penalty
        super().__init__(rng=rng, clock=clock)
        self._random = self._rng.random

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        pool = self._pool
        n = len(pool)
        if n > 1:
            rnd = self._random
            # Two distinct candidates, as in least_request's get(); inlined in both rather than a
            # shared helper, because a call here costs about an empty call per request (pure Python).
            i = int(rnd() * n)
            j = int(rnd() * (n - 1))
            if j >= i:
                j += 1
            a = pool[i]
            b = pool[j]
            now = self._clock()
            # Decay both estimates toward zero since their last update, and keep the decayed
            # value (tower's decay on load()); inlined, as get() is on every request's path.
            rate = self._neg_inv_tau
            if now > a.stamp:
                a.ewma *= exp((now - a.stamp) * rate)
                a.stamp = now
            if now > b.stamp:
                b.ewma *= exp((now - b.stamp) * rate)
                b.stamp = now
            # An endpoint with requests in flight that has not answered for longer than its
            # estimate is slower than it: the wait is the latency it is showing now. (NaN or a
            # negative wait, from a clock that is not monotonic, loses both comparisons.)
            cost_a = a.ewma
            if a.inflight > a.penalty:
                wait = now - a.since
                if wait > cost_a:
                    cost_a = wait
            cost_b = b.ewma
            if b.inflight > b.penalty:
                wait = now - b.since
                if wait > cost_b:
                    cost_b = wait
            if cost_b * (b.inflight + 1) < cost_a * (a.inflight + 1):
                a = b
            if a.inflight <= a.penalty:  # idle until now: the wait starts with this request
                a.since = now
        elif n:
            a = pool[0]
            if a.inflight <= a.penalty:
                a.since = self._clock()
        else:
            return None
        a.inflight += 1
        return a.endpoint

    def take(self, endpoint: Endpoint) -> Endpoint | None:
        slot = self._lookup(endpoint.key)
        if slot is not None and slot.inflight <= slot.penalty:  # an idle removed slot is dropped
            slot.since = self._clock()
        return super().take(endpoint)

    def put(self, endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        slot = self._lookup(endpoint.key)
        if slot is None or slot.inflight <= 0:
            return
        slot.inflight -= 1
        now = self._clock()
        slot.since = now  # an answer (whatever its outcome) restarts the wait of those in flight
        rtt = self._penalty if failed and self._penalty is not None else elapsed
        # One chained comparison drops NaN, negative and infinite samples (a clock stepping back
        # gives a negative elapsed): NaN would stick forever, a negative cost would draw traffic.
        if rtt is None or not 0.0 <= rtt < _INF or not slot.active:
            return
        if rtt >= slot.ewma:
            slot.ewma = rtt  # the peak: react to a slowdown at once
        else:
            dt = now - slot.stamp  # <= 0 or NaN from a clock that is not monotonic: no decay
            w = exp(dt * self._neg_inv_tau) if dt > 0.0 else 1.0
            slot.ewma = slot.ewma * w + rtt * (1.0 - w)
        if now > slot.stamp:  # never move the stamp back (or to NaN): decay resumes from the latest
            slot.stamp = now

    def ewma(self, endpoint: Endpoint | str) -> float | None:
        """The current latency estimate of an endpoint in seconds (None if unknown)."""
        slot = self._slots.get(endpoint.key if isinstance(endpoint, Endpoint) else endpoint)
        return slot.ewma if isinstance(slot, EwmaSlot) else None

    def wait(self, endpoint: Endpoint | str) -> float:
        """Seconds the endpoint has kept requests in flight without answering any (see the module
        docstring); 0.0 when it has none in flight or is unknown. Negative or NaN only with a
        clock that is not monotonic."""
        slot = self._slots.get(endpoint.key if isinstance(endpoint, Endpoint) else endpoint)
        if not isinstance(slot, EwmaSlot) or slot.inflight <= slot.penalty:
            return 0.0
        return self._clock() - slot.since

    def cost(self, endpoint: Endpoint | str) -> float | None:
        """What ``get()`` compares for the endpoint now, in seconds: max(estimate decayed to now,
        wait) x (in-flight + 1), the 429 penalty included (None if unknown). Reading it changes
        nothing (``get()`` stores the decay of its two candidates)."""
        slot = self._slots.get(endpoint.key if isinstance(endpoint, Endpoint) else endpoint)
        if not isinstance(slot, EwmaSlot):
            return None
        now = self._clock()
        estimate = slot.ewma
        if now > slot.stamp:
            estimate *= exp((now - slot.stamp) * self._neg_inv_tau)
        wait = now - slot.since if slot.inflight > slot.penalty else 0.0
        return (wait if wait > estimate else estimate) * (slot.inflight + 1)

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        now = self._clock()
        for slot in added:
            assert isinstance(slot, EwmaSlot)
            if slot.inflight == 0:  # a returning endpoint keeps its estimate while draining
                slot.ewma, slot.stamp = self._default_rtt, now
        self._pool = active  # type: ignore[assignment]
