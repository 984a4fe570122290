"""Peak EWMA: power of two choices over latency x load.

Each endpoint keeps an exponentially weighted moving average of its response latency that jumps
straight up to any slower observation (the *peak*) and decays smoothly otherwise; the cost of an
endpoint is ``ewma x (in-flight + 1)``. Two random candidates, the cheaper wins (Finagle's and
Linkerd's ``PeakEwma``, tower's ``load::PeakEwma``).

The estimate also decays toward zero while an endpoint is not observed, so a pod that was slow is
tried again after a few decay periods and, if it has recovered, wins its traffic back.

Defaults, from Linkerd (``linkerd2-proxy``): decay 10 s; endpoints never measured start at 30 ms.
A failed request counts as ``failure_penalty`` seconds (default 1 s, our choice: far above a
healthy RTT, so failing pods lose traffic fast, yet recoverable within a few decay periods).

Invalid samples are dropped, not clamped: an ``elapsed`` that is NaN, negative (a clock that
stepped back) or infinite releases the request but leaves the estimate as it was. A clock that
steps back (or returns NaN) never moves an endpoint's time stamp backwards, so no decay is
computed over a negative or undefined interval.
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
    """A slot with a latency estimate (seconds) and the time it was last updated."""

    __slots__ = ("ewma", "stamp")

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self.ewma = DEFAULT_RTT
        self.stamp = 0.0


class PeakEwma(BaseAlgorithm):
    """P2C with cost = peak-EWMA latency x (in-flight + 1)."""

    name = "peak_ewma"
    honours_penalty = True  # cost = ewma x (in-flight + 1): the 429 penalty multiplies it
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
            if b.ewma * (b.inflight + 1) < a.ewma * (a.inflight + 1):
                a = b
        elif n:
            a = pool[0]
        else:
            return None
        a.inflight += 1
        return a.endpoint

    def put(self, endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        slot = self._lookup(endpoint.key)
        if slot is None or slot.inflight <= 0:
            return
        slot.inflight -= 1
        rtt = self._penalty if failed and self._penalty is not None else elapsed
        # One chained comparison drops NaN, negative and infinite samples (a clock stepping back
        # gives a negative elapsed): NaN would stick forever, a negative cost would draw traffic.
        if rtt is None or not 0.0 <= rtt < _INF or not slot.active:
            return
        now = self._clock()
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

    def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
        now = self._clock()
        for slot in added:
            assert isinstance(slot, EwmaSlot)
            if slot.inflight == 0:  # a returning endpoint keeps its estimate while draining
                slot.ewma, slot.stamp = self._default_rtt, now
        self._pool = active  # type: ignore[assignment]
