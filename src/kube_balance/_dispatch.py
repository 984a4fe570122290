"""The transport-independent per-request core: pick, retry on another pod, put once.

Every integration (httpx transport, aiohttp connector, and so FastAPI) sends requests through a
:class:`Dispatcher` and brings one :class:`Adapter`: what "send one attempt", "classify this
exception", "status of this result" and "discard this result" mean for its client, and how to
open and close a per-endpoint pool if it keeps them (httpx) or not (aiohttp pools connections
itself, per connection key). The pieces here:

- a :class:`~kube_balance._pools.Lease` per pick: its ``release()`` calls
  ``LoadBalancer.put()`` exactly once (a guard flag), with the time to response headers, the
  :class:`~kube_balance.Outcome` and the status;
- retries on a different endpoint under a :class:`~kube_balance._retry.RetryPolicy` and its budget;
- one pool per endpoint (:class:`~kube_balance._pools.PoolSet`), closed after the endpoint leaves
  the eligible set and its last lease is released;
- the fallback target when no endpoint is usable.

Every pick and every outcome goes through the :class:`LoadBalancer` (never around it to the
algorithm), so outlier ejection, penalties and metrics observe each request in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from ._balancer import LoadBalancer
from ._endpoint import Endpoint
from ._hedge import HedgePolicy, Hedging, RaceSide, race
from ._outcome import Outcome
from ._pools import _NO_POOL, FALLBACK_KEY, Lease, PoolSet
from ._retry import Failure, RetryBudget, RetryPolicy

__all__ = ["FALLBACK_KEY", "Adapter", "Attempts", "Dispatcher", "Lease", "Verdict"]

logger = logging.getLogger("kube_balance")

P = TypeVar("P")
R = TypeVar("R")
Q = TypeVar("Q", contravariant=True)
_CANCELLED, _SLOW = Outcome.CANCELLED, Outcome.SLOW
MAX_RETRY_PICKS = 32
"""Bound on get() calls to find an untried endpoint for a retry (a hash key may map to one)."""


class Verdict(NamedTuple):
    """What an integration's ``classify`` says about an exception from one attempt.

    ``failure``: how it failed as far as retry safety goes (None: not retried).
    ``outcome``: what ``put()`` reports. ``Outcome.LOCAL`` for trouble on our side such as our
    own pool being full (httpx's ``PoolTimeout``): a load-aware algorithm must not charge a pod a
    failure penalty for congestion on the client's side.
    """

    failure: Failure | None
    outcome: Outcome = Outcome.ERROR


class Attempts(NamedTuple):
    """What a request that failed tried, for an error that says so (see :meth:`Adapter.explain`).

    ``tried``: ``host:port`` of every attempt, in order (their number is the attempt count).
    ``fallback_reason``: why the request went to the fallback (None: it went to pods).
    """

    service: str
    tried: tuple[str, ...]
    fallback_reason: str | None

    def message(self, exc: BaseException) -> str:
        """The error message naming what was tried (or why the fallback served), ending with ``exc``."""
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.fallback_reason is not None:
            return (
                f"the fallback {self.tried[-1]} failed ({cause}); requests go to the fallback because "
                f"{self.fallback_reason}. Fix discovery (see LoadBalancer.status().last_error), "
                "or choose another fallback ('host:port') or none"
            )
        count = len(self.tried)
        return (
            f"service {self.service}: {count} attempt{'s' if count > 1 else ''} failed, on "
            f"{', '.join(self.tried)}; last error: {cause}"
        )


def _target(lease: Lease[Any]) -> str:
    host = f"[{lease.host}]" if ":" in lease.host else lease.host
    return f"{host}:{lease.port}"


class Adapter(Protocol[P, Q, R]):
    """What one HTTP client integration tells the dispatcher (P: its pool, Q: a request, R: a result)."""

    pooled: bool
    """False for a client that pools connections itself (aiohttp): no pool of ours is opened,
    and no lease is counted per endpoint (:meth:`Dispatcher.inflight` stays 0). Default True."""

    def open_pool(self) -> P:
        """A new pool for one endpoint (anything, None included, for a client that pools itself)."""
        ...

    async def close_pool(self, pool: P) -> None:
        """Close a pool (called once, shielded, after its endpoint left and its last lease ended)."""
        ...

    async def attempt(self, lease: Lease[P], request: Q) -> R:
        """Send one attempt of ``request`` to the lease's endpoint (``lease.host``, ``lease.port``)."""
        ...

    def classify(self, exc: BaseException) -> Verdict:
        """What an exception raised by :meth:`attempt` means for retries and for the endpoint."""
        ...

    def status(self, result: R) -> int:
        """The status of a result (0 when the result has none yet: never retried on status)."""
        ...

    def retry_after(self, result: R) -> float | None:
        """The result's Retry-After in seconds, if it has one."""
        ...

    async def discard(self, result: R) -> None:
        """Drop a result that will be retried (close its body)."""
        ...

    def explain(self, exc: Exception, attempts: Attempts, request: Q) -> BaseException | None:
        """A clearer error to raise (``from`` ``exc``) when the last attempt failed, naming what
        was tried, in the client's own exception types; None keeps ``exc``."""
        ...


def _remove_quietly(remove: Callable[[], None]) -> None:
    with contextlib.suppress(ValueError):  # already removed
        remove()


class Dispatcher(Generic[P, Q, R]):
    """Sends requests through a :class:`LoadBalancer` with an integration's :class:`Adapter`.

    ``clock`` measures elapsed times (``time.perf_counter`` by default). The balancer holds the
    dispatcher only weakly: a dispatcher dropped without :meth:`aclose` is collected, its pools
    with it. Retries, budget refusals, fallback use and unclosed responses are counted on the
    balancer (``LoadBalancer.status()``).
    """

    def __init__(
        self,
        balancer: LoadBalancer,
        adapter: Adapter[P, Q, R],
        *,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] | None = None,
        hedge: HedgePolicy | None = None,
        lease_type: type[Lease[P]] = Lease,
    ) -> None:
        self.balancer = balancer
        self.adapter = adapter
        self._lease_type = lease_type  # an integration may carry its own state on the lease
        self.retry = retry if retry is not None else RetryPolicy()
        self.budget: RetryBudget = self.retry.new_budget()
        self.clock = clock if clock is not None else time.perf_counter
        self._pools: PoolSet[P] = PoolSet(adapter.open_pool, adapter.close_pool)
        self._pooled: bool = getattr(adapter, "pooled", True)
        self._closed = False
        self._live = False  # the loop is known and the dispatcher open: the fast paths may run
        method = weakref.WeakMethod(self._on_eligible)

        def listener(eligible: tuple[Endpoint, ...]) -> None:
            on_eligible = method()
            if on_eligible is not None:
                on_eligible(eligible)

        # The finalizer unregisters the listener when the dispatcher is collected or closed.
        self._unlisten = weakref.finalize(self, _remove_quietly, balancer.add_listener(listener))
        self.hedging = Hedging(hedge) if hedge is not None else None
        self._unobserve: Callable[[], None] | None = None
        if self.hedging is not None and self.hedging.latency is not None:
            # The window holds no reference to the dispatcher: the balancer may outlive it.
            self._unobserve = weakref.finalize(
                self, _remove_quietly, balancer.add_observer(self.hedging.latency)
            )

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop of the first request (finalizers hand releases to it)."""
        return self._pools.loop

    # -- leases ---------------------------------------------------------------------------
    async def acquire(self, key: str | bytes | None = None, *, wait: float | None = None) -> Lease[P]:
        """A lease on the endpoint the algorithm picks, or on the fallback target.

        ``wait`` bounds the wait for the fallback's Service port (the balancer's startup wait
        bounds it anyway).
        """
        if self._closed:
            raise RuntimeError("cannot send a request: the dispatcher (transport) has been closed")
        if not self.balancer.started:
            await self.balancer.ensure_started()
        if self._pools.loop is None:
            self._pools.loop = asyncio.get_running_loop()
            self._live = not self._closed
        endpoint = self.balancer.get(key)
        if endpoint is None:
            host, port = await self.balancer.fallback_target(wait)  # raises NoEndpointsAvailable
            self.balancer.counters.fallback_requests += 1
            return self._lease(None, FALLBACK_KEY, host, port)
        return self._lease(endpoint, endpoint.key, endpoint.address, endpoint.port)

    def _pick_now(self, key: str | bytes | None) -> Lease[P] | None:
        """:meth:`acquire` without a coroutine of its own, when nothing needs waiting for: a
        lease on the endpoint the algorithm picks, or None (then :meth:`acquire` decides)."""
        balancer = self.balancer
        if not self._live or not balancer.started:
            return None
        # LoadBalancer.get() past its start check (started: nothing to start), inlined.
        endpoint = balancer.algorithm.get(key)
        if endpoint is None:
            return None
        return self._lease(endpoint, endpoint.key, endpoint.address, endpoint.port)

    def first_attempt(self, request: Q, key: str | bytes | None) -> tuple[Lease[P], Awaitable[R]] | None:
        """The first attempt of a request without the :meth:`send` coroutine, when an endpoint can
        be picked at once: its lease and the adapter's attempt, for the caller to await (None:
        use :meth:`send`). If the attempt raises, hand the lease and the exception to
        :meth:`send` (``first=lease, failed=exc``): it releases the lease and retries as it would
        have. Only for an adapter whose results have no status (``status()`` is 0, aiohttp's
        connection): a status is neither recorded nor retried on here."""
        # _pick_now(), inlined: this is nearly every request of such a client.
        balancer = self.balancer
        if not self._live or not balancer.started:
            return None
        endpoint = balancer.algorithm.get(key)
        if endpoint is None:
            return None
        if self._pooled:
            lease = self._lease(endpoint, endpoint.key, endpoint.address, endpoint.port)
        else:  # _lease() without pools, inlined
            self.budget.active += 1
            lease = self._lease_type(self, endpoint, endpoint.key, None, endpoint.address, endpoint.port)  # type: ignore[arg-type]
        try:
            return lease, self.adapter.attempt(lease, request)
        except BaseException:
            lease.release(Outcome.LOCAL)
            raise

    def has_other(self, tried: set[str]) -> bool:
        """Whether an eligible endpoint is left outside ``tried`` (for a retry from outside)."""
        return any(ep.key not in tried for ep in self.balancer.eligible)

    def _lease(self, endpoint: Endpoint | None, key: str, host: str, port: int) -> Lease[P]:
        pool: Any = None
        if self._pooled:
            pools = self._pools
            pool = pools.pools.get(key, _NO_POOL)  # PoolSet.take(), inlined for an open pool
            if pool is _NO_POOL:
                pool = pools.take(key)
            else:
                inflight = pools.inflight
                inflight[key] = inflight.get(key, 0) + 1
        self.budget.active += 1  # budget.request_started(), inlined: on every request's path
        return self._lease_type(self, endpoint, key, pool, host, port)

    def _pick_other(self, key: str | bytes | None, tried: set[str]) -> Lease[P] | None:
        """A lease on an endpoint not in ``tried``, or None when no eligible one is left.

        Picks of tried endpoints are held until the search ends: their raised in-flight counts
        steer load-aware algorithms (P2C, bounded-load hashing) elsewhere. Putting them back at
        once would not: a dead pod fails fast, looks idle, and P2C would pick it again. After
        ``MAX_RETRY_PICKS`` picks of tried endpoints, the least loaded untried eligible endpoint
        is taken directly: with 3 of 4 pods refusing, the live pod carries every request in
        flight and loses each two-choice comparison against the idle dead ones.
        """
        balancer = self.balancer
        held: list[Endpoint] = []
        try:
            for _ in range(MAX_RETRY_PICKS):
                endpoint = balancer.get(key)
                if endpoint is None:
                    return None
                if endpoint.key not in tried:
                    return self._lease(endpoint, endpoint.key, endpoint.address, endpoint.port)
                held.append(endpoint)
            endpoint = balancer.get_untried(tried)
            if endpoint is None:
                return None
            return self._lease(endpoint, endpoint.key, endpoint.address, endpoint.port)
        finally:
            for endpoint in held:
                balancer.unget(endpoint)

    def _pick_retry(
        self, key: str | bytes | None, tried: set[str], taken: RaceSide | None
    ) -> Lease[P] | None:
        """:meth:`_pick_other` for a retry. A side of a hedged request (``taken``) avoids the other
        side's endpoints too while another is left: a hash algorithm would otherwise pick the
        hedge's own pod, sending a third copy to a pod already slow to answer."""
        other = taken.other_keys() if taken is not None else None
        lease = self._pick_other(key, tried | other) if other else None
        return lease if lease is not None else self._pick_other(key, tried)

    def _release(self, lease: Lease[Any], outcome: Outcome, leaked: bool) -> None:
        endpoint = lease.endpoint
        if endpoint is not None:
            if outcome is _CANCELLED and lease.outrun:  # a hedge answered first (RaceSide.outrun)
                outcome = _SLOW
            # failed=False: put() takes it from the outcome given alongside
            self.balancer.put(endpoint, lease.elapsed, False, outcome, lease.status, lease.retry_after)
        if leaked:
            self.balancer.counters.unclosed_responses += 1
        budget = self.budget
        if budget.active > 0:  # budget.request_finished(), inlined
            budget.active -= 1
        if lease.retry:
            budget.release()
        if not self._pooled:
            return
        key, pools = lease.key, self._pools
        inflight = pools.inflight
        left = inflight.get(key, 1) - 1
        if left > 0:  # PoolSet.give_back(), inlined but for the last lease of a retired endpoint
            inflight[key] = left
        elif key in pools.retired:  # the endpoint left: its pool closes now
            pools.give_back(key)
        else:
            inflight.pop(key, None)

    # -- sending with retries ------------------------------------------------------------
    async def send(
        self,
        request: Q,
        *,
        key: str | bytes | None,
        method: str,
        replayable: bool,
        exclude: set[str] | None = None,
        retry_slot: bool = False,
        wait: float | None = None,
        first: Lease[P] | None = None,
        taken: RaceSide | None = None,
        failed: BaseException | None = None,
    ) -> tuple[R, Lease[P]]:
        """Send ``request`` on a leased endpoint, retrying on other endpoints when the policy allows.

        Returns the result with the lease still held: the caller releases it when the response
        body is closed. On an exception every lease taken has been released. ``exclude``: endpoint
        keys an outer retry (aiohttp's ``BalancedMiddleware``) already tried, avoided when another
        endpoint is left; ``retry_slot``: that retry holds a budget slot, released with the lease.
        When the last attempt fails, ``adapter.explain`` may build a clearer error to raise
        instead. ``wait`` bounds the wait for the fallback's Service port. For the hedged path:
        ``first`` is a lease already taken for the first attempt, and ``taken`` the
        :class:`~kube_balance._hedge.RaceSide` to which every lease this call takes is added (a
        hedge avoids their endpoints); a cancelled attempt then reports how long it waited
        (:meth:`Lease.waited`). ``failed``: the exception the
        attempt on ``first`` raised (:meth:`first_attempt`): handled as if raised here.
        """
        adapter = self.adapter
        try:
            lease = (
                first
                or (self._pick_retry(key, exclude, taken) if exclude else self._pick_now(key))
                or await self.acquire(key, wait=wait)
            )
        except BaseException:
            if retry_slot:
                self.budget.release()
            raise
        lease.retry = retry_slot
        if taken is not None:
            taken.add(lease)
        # The retry bookkeeping (endpoints tried, targets for the error message) is allocated
        # only once an attempt failed: the first attempt, nearly every request, needs none.
        tried: set[str] | None = None
        targets: list[str] | None = None
        number = 1
        while True:
            try:
                if failed is not None:
                    exc, failed = failed, None
                    raise exc
                result = await adapter.attempt(lease, request)
            except BaseException as exc:
                verdict = Verdict(None, Outcome.CANCELLED)
                try:
                    if not isinstance(exc, asyncio.CancelledError):
                        verdict = adapter.classify(exc)
                    elif taken is not None:  # a hedged attempt: put() sees how long it waited
                        lease.waited()
                finally:
                    lease.release(verdict.outcome)
                if tried is None or targets is None:
                    tried, targets = set(exclude or ()), [_target(lease)]
                nxt = None
                if verdict.failure is not None and self.retry.should_retry(
                    verdict.failure, method=method, replayable=replayable, attempt=number
                ):
                    nxt = self._next_attempt(
                        key, tried, lease, self.retry.uses_budget(verdict.failure), taken
                    )
                if nxt is None:
                    better = self._explain(exc, lease, targets, request)
                    if better is None:
                        raise
                    raise better from exc
                lease, number = nxt, number + 1
                targets.append(_target(lease))
                if taken is not None:
                    taken.add(lease)
                continue
            code = adapter.status(result)
            if code:  # 0: no response yet (aiohttp's connection), whose own hook records it
                lease.headers_received(code, adapter.retry_after(result) if code in (429, 503) else None)
            if code in self.retry.statuses and self.retry.retry_status(
                code, method=method, replayable=replayable, attempt=number
            ):
                if tried is None or targets is None:
                    tried, targets = set(exclude or ()), [_target(lease)]
                nxt = self._next_attempt(key, tried, lease, True, taken)
                if nxt is not None:
                    try:
                        await adapter.discard(result)
                    except Exception:  # the retry does not need this body: log it and go on
                        logger.warning("discarding a %d response before a retry failed", code, exc_info=True)
                    except BaseException:  # cancelled while discarding: the next lease too
                        nxt.release(Outcome.CANCELLED)
                        raise
                    finally:
                        lease.release()
                    lease, number = nxt, number + 1
                    targets.append(_target(lease))
                    if taken is not None:
                        taken.add(lease)
                    continue
            return result, lease

    # -- hedged requests (only with a HedgePolicy) ---------------------------------------
    async def send_hedged(
        self,
        request: Q,
        *,
        key: str | bytes | None,
        method: str,
        replayable: bool,
        wait: float | None = None,
    ) -> tuple[R, Lease[P]]:
        """:meth:`send`, and after the policy's delay without response headers a second
        :meth:`send` to another endpoint (see :mod:`kube_balance._hedge`); the first to answer
        wins, the other is cancelled (its lease released as ``CANCELLED``). Only for requests
        the policy says may be hedged (``hedging.applies()``)."""
        hedging = self.hedging
        assert hedging is not None, "send_hedged needs a HedgePolicy"
        hedging.budget.deposit()
        taken, hedged = RaceSide.pair()
        first = self.send(request, key=key, method=method, replayable=replayable, wait=wait, taken=taken)

        def hedge() -> Coroutine[Any, Any, tuple[R, Lease[P]]] | None:
            lease = self.hedge_lease(key, taken)
            if lease is None:
                return None
            return self.send(
                request,
                key=key,
                method=method,
                replayable=replayable,
                exclude=set(taken.keys),
                first=lease,
                taken=hedged,
            )

        return await race(first, hedge, hedging.delay(), self._drop, taken.outrun)

    def hedge_lease(self, key: str | bytes | None, taken: RaceSide) -> Lease[P] | None:
        """A lease for a hedge on an endpoint outside ``taken.keys`` (where the first attempt
        went), if the budget allows one and such an endpoint is eligible; counted in
        ``status().hedges``. The attempt in flight is marked as the one the hedge left."""
        hedging = self.hedging
        keys = taken.keys
        if hedging is None or not keys or FALLBACK_KEY in keys:  # the first is still connecting
            return None
        if not self.has_other(keys):
            return None
        if not hedging.budget.available():
            self.balancer.counters.hedge_budget_exhausted += 1
            return None
        lease = self._pick_other(key, keys)
        if lease is None:
            return None
        hedging.budget.withdraw()
        self.balancer.counters.hedges += 1
        taken.hedged()
        return lease

    async def _drop(self, sent: tuple[R, Lease[P]]) -> None:
        """Close a hedged request's losing response that arrived anyway: its put() says CANCELLED
        (SLOW for a first attempt the hedge outran)."""
        result, lease = sent
        try:
            await self.adapter.discard(result)
        finally:
            lease.release(Outcome.CANCELLED)

    def _explain(
        self, exc: BaseException, lease: Lease[P], targets: list[str], request: Q
    ) -> BaseException | None:
        if not isinstance(exc, Exception):  # never rewrite a cancellation
            return None
        return self.adapter.explain(exc, self.attempts(lease, targets), request)

    def attempts(self, lease: Lease[P], targets: list[str] | None = None) -> Attempts:
        """What a request tried, ``lease`` its last attempt (``targets``: every attempt's
        ``host:port``, default the lease's alone), for an error message that says so."""
        reason = self.balancer.fallback_reason() if lease.endpoint is None else None
        return Attempts(str(self.balancer.service), tuple(targets or [_target(lease)]), reason)

    def _next_attempt(
        self,
        key: str | bytes | None,
        tried: set[str],
        failed: Lease[P],
        budgeted: bool,
        taken: RaceSide | None = None,
    ) -> Lease[P] | None:
        if failed.endpoint is None:  # the fallback has nowhere else to go
            return None
        tried.add(failed.key)
        if budgeted and not self.budget.try_acquire():
            self.balancer.counters.retry_budget_exhausted += 1
            return None
        lease = self._pick_retry(key, tried, taken)
        if lease is None:
            if budgeted:
                self.budget.release()
            return None
        lease.retry = budgeted  # holds a budget slot until released
        self.balancer.counters.retries += 1
        return lease

    # -- pool lifecycle -------------------------------------------------------------------
    def _on_eligible(self, eligible: tuple[Endpoint, ...]) -> None:
        self._pools.on_eligible(ep.key for ep in eligible)

    async def drained(self) -> None:
        """Wait for the pools being closed after a drain (for tests and orderly shutdown)."""
        await self._pools.drained()

    async def aclose(self) -> None:
        """Close every pool (requests still in flight fail) and stop listening to the balancer.

        Cancelling it does not interrupt the closes; a second call waits for them again.
        """
        if self._closed:
            await self._pools.drained()
            return
        self._closed = True
        self._live = False
        self._unlisten()
        if self._unobserve is not None:
            self._unobserve()
        await self._pools.close_all()

    # -- introspection --------------------------------------------------------------------
    @property
    def pools(self) -> dict[str, P]:
        """The open pools by endpoint key (a copy)."""
        return dict(self._pools.pools)

    def inflight(self, key: str) -> int:
        """Leases held on an endpoint key (the fallback's key is ``FALLBACK_KEY``)."""
        return self._pools.inflight.get(key, 0)

    @property
    def retries(self) -> int:
        """Retries sent by every dispatcher of this balancer (``LoadBalancer.status().retries``)."""
        return self.balancer.counters.retries

    def __repr__(self) -> str:
        return (
            f"<Dispatcher pools={len(self._pools.pools)} inflight={sum(self._pools.inflight.values())} "
            f"retired={len(self._pools.retired)} retries={self.retries} {self.budget!r}>"
        )
