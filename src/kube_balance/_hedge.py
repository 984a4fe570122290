"""Hedged requests: a second attempt on another pod when the first is slow to answer.

A hedge is sent when an idempotent request (the :class:`~kube_balance.RetryPolicy`'s notion:
GET, HEAD, OPTIONS, TRACE, PUT, DELETE with a body that can be replayed) has not received its
response headers after a delay; the first attempt to answer wins and the other is cancelled
(its ``put()`` reports the time it waited: a lower bound of its latency, so a latency-aware
algorithm still sees a slow pod). "The Tail at Scale" (Dean and Barroso, 2013) measured the idea;
Envoy, Finagle and gRPC ship it.

A first attempt that loses to its hedge reports ``Outcome.SLOW``: a second request sent a whole
delay later answered first, which says the pod is slow *now* (Envoy's router records the first
attempt as a timeout for outlier detection when it sends the hedge). The 429 penalty
(:class:`~kube_balance.OverloadPenalty`) then steers new requests away from the pod for a while,
as an algorithm that compares in-flight counts (``least_request``) cannot see latency. A hedge
that loses to its first attempt, and an attempt cancelled by the caller, report
``Outcome.CANCELLED``: not a failure of their pod, and no evidence either.

The delay is fixed (``delay=0.05``) or follows the Service: the ``percentile`` (default p95) of
the time to response headers of recent successful attempts (the last ``window``), recomputed
every ``window // 16`` samples, never below ``min_delay``, and ``default_delay`` until
``min_samples`` were seen. Hedging at p95 sends a hedge for about 5% of requests.

The :class:`HedgeBudget` caps hedges at ``budget_percent`` (5%) of the requests that could be
hedged, as Finagle's ``RetryBudget`` caps retries: each such request deposits ``budget_percent``
of a hedge, a hedge withdraws one, and at most ``budget_max`` hedges may be saved up. A rate
rather than the retry budget's cap on retries in flight (Envoy's): a hedge is an extra request
on a Service that may be slow because it is overloaded, and what the operator sizes for is the
share of extra requests. The first hedge is earned after ``1 / budget_percent`` requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from ._endpoint import Endpoint
from ._outcome import Outcome
from ._pools import Lease
from ._retry import IDEMPOTENT_METHODS
from ._validate import check_int, check_number, invalid

__all__ = ["HedgeBudget", "HedgePolicy", "Hedging", "LatencyWindow", "RaceSide", "race"]

T = TypeVar("T")
logger = logging.getLogger("kube_balance")

DEFAULT_PERCENTILE = 95.0
DEFAULT_MIN_DELAY = 0.005
"""Seconds: below this a hedge would race its own first attempt's connection setup."""
DEFAULT_DELAY = 0.05
"""Seconds, until ``min_samples`` latencies were seen: our choice, a few times a typical
in-cluster answer (Envoy and gRPC leave the delay to the operator)."""
DEFAULT_WINDOW = 512
DEFAULT_MIN_SAMPLES = 64
DEFAULT_BUDGET_PERCENT = 0.05
DEFAULT_BUDGET_MAX = 10
_UNIT = 1_000_000
"""The budget counts in millionths of a hedge: 20 deposits of 5% are exactly one hedge."""


@dataclass(frozen=True)
class HedgePolicy:
    """When to send a hedge, and how many; see the module docstring.

    ``delay``: fixed seconds to wait for the first attempt's response headers, or None (the
    default) for the ``percentile`` (0-100, exclusive) of recent successful attempts' time to
    headers, at least ``min_delay``, ``default_delay`` until ``min_samples`` of the last
    ``window`` were recorded. ``budget_percent`` (0-1): hedges allowed per hedgeable request;
    ``budget_max``: hedges that may be saved up for a burst.
    """

    delay: float | None = None
    percentile: float = DEFAULT_PERCENTILE
    min_delay: float = DEFAULT_MIN_DELAY
    default_delay: float = DEFAULT_DELAY
    window: int = DEFAULT_WINDOW
    min_samples: int = DEFAULT_MIN_SAMPLES
    budget_percent: float = DEFAULT_BUDGET_PERCENT
    budget_max: int = DEFAULT_BUDGET_MAX

    def __post_init__(self) -> None:
        if self.delay is not None:
            check_number("HedgePolicy delay", self.delay, low=0.0, low_inclusive=False, unit="seconds")
        percentile = check_number("HedgePolicy percentile", self.percentile, low=0.0, low_inclusive=False)
        if percentile >= 100.0:
            raise invalid("HedgePolicy percentile", self.percentile, "expected a finite number in (0, 100)")
        check_number("HedgePolicy min_delay", self.min_delay, low=0.0, unit="seconds")
        check_number(
            "HedgePolicy default_delay", self.default_delay, low=0.0, low_inclusive=False, unit="seconds"
        )
        check_int("HedgePolicy window", self.window, low=1, high=100_000)
        check_int("HedgePolicy min_samples", self.min_samples, low=1)
        if self.min_samples > self.window:
            if self.min_samples == DEFAULT_MIN_SAMPLES:  # the window is what was set too small
                raise invalid(
                    "HedgePolicy window", self.window, f"expected at least min_samples ({self.min_samples})"
                )
            raise invalid(
                "HedgePolicy min_samples", self.min_samples, f"expected at most window ({self.window})"
            )
        check_number("HedgePolicy budget_percent", self.budget_percent, low=0.0, high=1.0)
        check_int("HedgePolicy budget_max", self.budget_max, low=1)

    def applies(self, method: str, replayable: bool) -> bool:
        """Whether a request may be hedged: idempotent and its body can be sent twice."""
        return replayable and method.upper() in IDEMPOTENT_METHODS


class HedgeBudget:
    """Allows ``percent`` hedges per hedgeable request, at most ``max_saved`` saved up."""

    __slots__ = ("_credit", "_cap", "balance", "exhausted")

    def __init__(self, percent: float, max_saved: int) -> None:
        self._credit = round(percent * _UNIT)
        self._cap = max_saved * _UNIT
        self.balance = 0  # millionths of a hedge
        self.exhausted = 0  # hedges refused

    def deposit(self) -> None:
        """One more hedgeable request."""
        self.balance = min(self._cap, self.balance + self._credit)

    def available(self) -> bool:
        """Whether a hedge may be sent now (counted in ``exhausted`` when not)."""
        if self.balance >= _UNIT:
            return True
        self.exhausted += 1
        return False

    def withdraw(self) -> None:
        """A hedge was sent (after :meth:`available` said yes)."""
        self.balance -= _UNIT

    def __repr__(self) -> str:
        return f"<HedgeBudget {self.balance / _UNIT:.2f} hedges exhausted={self.exhausted}>"


class LatencyWindow:
    """The ``percentile`` of the last ``size`` successful attempts' time to headers (a balancer
    observer: appends to a ring, sorts a copy every ``size // 16`` samples, never on each request)."""

    __slots__ = ("_ring", "_next", "_count", "_every", "_since", "_rank", "value")

    def __init__(self, size: int, percentile: float) -> None:
        self._ring: list[float] = []
        self._next = 0
        self._count = size
        self._every = max(1, size // 16)
        self._since = 0
        self._rank = percentile / 100.0
        self.value: float | None = None  # None until the first recompute

    def __call__(
        self,
        endpoint: Endpoint,
        elapsed: float | None,
        outcome: Outcome,
        status: int | None,
        ra: float | None,
    ) -> None:
        if elapsed is None or outcome is not Outcome.OK:
            return
        ring = self._ring
        if len(ring) < self._count:
            ring.append(elapsed)
        else:
            ring[self._next] = elapsed
            self._next = (self._next + 1) % self._count
        self._since += 1
        if self._since >= self._every:
            self._since = 0
            ordered = sorted(ring)
            self.value = ordered[min(len(ordered) - 1, int(self._rank * len(ordered)))]

    def __len__(self) -> int:
        return len(self._ring)


class Hedging:
    """One dispatcher's hedging state: the policy, its budget and (for a percentile) its window."""

    __slots__ = ("policy", "budget", "latency")

    def __init__(self, policy: HedgePolicy) -> None:
        self.policy = policy
        self.budget = HedgeBudget(policy.budget_percent, policy.budget_max)
        self.latency = LatencyWindow(policy.window, policy.percentile) if policy.delay is None else None

    def applies(self, method: str, replayable: bool) -> bool:
        """Whether this request goes through the hedged path."""
        return self.policy.applies(method, replayable)

    def delay(self) -> float:
        """Seconds to wait for the first attempt before hedging."""
        policy = self.policy
        if policy.delay is not None:
            return policy.delay
        latency = self.latency
        if latency is None or latency.value is None or len(latency) < policy.min_samples:
            return max(policy.min_delay, policy.default_delay)
        return max(policy.min_delay, latency.value)

    def __repr__(self) -> str:
        return f"<Hedging delay={self.delay():.4f} {self.budget!r}>"


class RaceSide:
    """One side of a hedged request (its first attempt, or its hedge): every endpoint key its
    attempts leased (a hedge avoids them), the lease in flight now, the one a hedge left, and
    the other side (whose endpoints this side's retries avoid while another is left)."""

    __slots__ = ("keys", "current", "left", "other")

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.current: Lease[Any] | None = None
        self.left: Lease[Any] | None = None  # in flight when the hedge was sent
        self.other: RaceSide | None = None

    @classmethod
    def pair(cls) -> tuple[RaceSide, RaceSide]:
        """The two sides of one hedged request (first attempt, hedge), each the other's other."""
        first, hedge = cls(), cls()
        first.other, hedge.other = hedge, first
        return first, hedge

    def other_keys(self) -> set[str]:
        """The endpoints the other side's attempts leased so far (empty without another side)."""
        return self.other.keys if self.other is not None else set()

    def add(self, lease: Lease[Any]) -> None:
        """An attempt of this side took ``lease``."""
        self.keys.add(lease.key)
        self.current = lease

    def hedged(self) -> None:
        """A hedge was sent: the attempt in flight now is the one it may outrun."""
        self.left = self.current

    def outrun(self) -> None:
        """The hedge answered first: the attempt it left, if still in flight, is released as
        ``Outcome.SLOW`` instead of ``CANCELLED`` (one that failed meanwhile has said so)."""
        lease = self.left
        if lease is not None and not lease.released:
            lease.outrun = True


_settling: set[asyncio.Task[None]] = set()
"""Loser clean-ups that outlived a cancelled caller (kept referenced until they end)."""


async def race(
    first: Coroutine[Any, Any, T],
    hedge: Callable[[], Coroutine[Any, Any, T] | None],
    delay: float,
    drop: Callable[[T], Awaitable[None]],
    outrun: Callable[[], None] | None = None,
) -> T:
    """Run ``first``; if it has not finished after ``delay`` seconds, run ``hedge()`` too (None:
    no hedge) and return the first result; the other attempt is cancelled, or ``drop``-ped if it
    finished too. When an attempt fails the other one may still win; when both fail, the first
    attempt's error is raised. Cancelling the race cancels both attempts. ``outrun()`` is called
    when the hedge wins, before the first attempt is cancelled (:meth:`RaceSide.outrun`).
    """
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(first)]
    winner: asyncio.Task[T] | None = None
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if not done:
            second = hedge()
            if second is not None:
                tasks.append(loop.create_task(second))
        pending: set[asyncio.Task[T]] = set(tasks)
        while pending:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            winner = next((t for t in tasks if t.done() and _succeeded(t)), None)
            if winner is not None:
                if winner is not tasks[0] and outrun is not None:
                    outrun()
                return winner.result()
        return tasks[0].result()  # every attempt failed: the first one's error
    finally:
        # Losers: attempts still running, or that finished with a result (a failed one is over).
        losers = [t for t in tasks if t is not winner and (not t.done() or _succeeded(t))]
        if losers:
            settle = loop.create_task(_settle(losers, drop))
            _settling.add(settle)
            settle.add_done_callback(_settling.discard)
            await asyncio.shield(settle)


def _succeeded(task: asyncio.Task[Any]) -> bool:
    return not task.cancelled() and task.exception() is None


async def _settle(losers: list[asyncio.Task[T]], drop: Callable[[T], Awaitable[None]]) -> None:
    """Cancel the losing attempts and wait for them (their leases are released as CANCELLED); an
    attempt that finished before its cancellation landed has its result dropped."""
    for task in losers:
        task.cancel()
    await asyncio.wait(losers)
    for task in losers:
        if _succeeded(task):
            try:
                await drop(task.result())
            except Exception:  # the winner does not need this response: log it and go on
                logger.warning("closing the losing attempt of a hedged request failed", exc_info=True)
