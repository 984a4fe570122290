"""The transport-independent per-request core: pick, retry on another pod, put once.

Every integration (httpx transport, aiohttp connector, FastAPI dependency) sends requests through
a :class:`Dispatcher`; only "send one attempt to this pool", "what kind of failure is this" and
"how to discard a response" are theirs. The pieces here:

- a :class:`~kube_balance._pools.Lease` per ``get()``: its ``release()`` calls ``put()`` exactly
  once (a guard flag), with the time to response headers and whether the endpoint failed;
- retries on a different endpoint under a :class:`~kube_balance._retry.RetryPolicy` and its budget;
- one connection pool per endpoint (:class:`~kube_balance._pools.PoolSet`), closed after the
  endpoint leaves the eligible set and its last lease is released;
- the fallback target when no endpoint is usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, NamedTuple, TypeVar

from ._balancer import LoadBalancer
from ._endpoint import Endpoint
from ._pools import FALLBACK_KEY, Lease, PoolSet
from ._retry import Failure, RetryBudget, RetryPolicy

__all__ = ["FALLBACK_KEY", "Attempts", "Dispatcher", "Lease", "Verdict"]

logger = logging.getLogger("kube_balance")

P = TypeVar("P")
R = TypeVar("R")
MAX_RETRY_PICKS = 32
"""Bound on get() calls to find an untried endpoint for a retry (a hash key may map to one)."""


class Verdict(NamedTuple):
    """What an integration's ``classify`` hook says about an exception from one attempt.

    ``failure``: how it failed as far as retry safety goes (None: not retried).
    ``endpoint_at_fault``: whether ``put()`` reports the endpoint as failed. False for local
    trouble such as our own pool being full (httpx's ``PoolTimeout``): a load-aware algorithm
    must not charge a pod a failure penalty for congestion on the client's side.
    """

    failure: Failure | None
    endpoint_at_fault: bool = True


class Attempts(NamedTuple):
    """What a request that failed tried, for an error that says so (see ``Dispatcher.send``'s ``explain``).

    ``tried``: ``host:port`` of every attempt, in order (their number is the attempt count).
    ``fallback_reason``: why the request went to the fallback (None: it went to pods).
    """

    service: str
    tried: tuple[str, ...]
    fallback_reason: str | None


def _target(lease: Lease[Any]) -> str:
    host = f"[{lease.host}]" if ":" in lease.host else lease.host
    return f"{host}:{lease.port}"


def _remove_quietly(remove: Callable[[], None]) -> None:
    with contextlib.suppress(ValueError):  # already removed
        remove()


class Dispatcher(Generic[P]):
    """Sends requests through a :class:`LoadBalancer` with per-endpoint pools of type ``P``.

    ``open_pool()`` creates a pool; ``close_pool(pool)`` closes one. ``clock`` measures elapsed
    times (``time.perf_counter`` by default). The balancer holds the dispatcher only weakly: a
    dispatcher dropped without :meth:`aclose` is collected, its pools with it.
    """

    def __init__(
        self,
        balancer: LoadBalancer,
        *,
        open_pool: Callable[[], P],
        close_pool: Callable[[P], Awaitable[None]],
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.balancer = balancer
        self.retry = retry if retry is not None else RetryPolicy()
        self.budget: RetryBudget = self.retry.new_budget()
        self.clock = clock if clock is not None else time.perf_counter
        self._pools: PoolSet[P] = PoolSet(open_pool, close_pool)
        self._closed = False
        self.retries = 0  # retries sent, for status and tests
        method = weakref.WeakMethod(self._on_eligible)

        def listener(eligible: tuple[Endpoint, ...]) -> None:
            on_eligible = method()
            if on_eligible is not None:
                on_eligible(eligible)

        # The finalizer unregisters the listener when the dispatcher is collected or closed.
        self._unlisten = weakref.finalize(self, _remove_quietly, balancer.add_listener(listener))

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
        endpoint = self.balancer.algorithm.get(key)
        if endpoint is None:
            host, port = await self.balancer.fallback_target(wait)  # raises NoEndpointsAvailable
            return self._lease(None, FALLBACK_KEY, host, port)
        return self._lease(endpoint, endpoint.key, endpoint.address, endpoint.port)

    def _lease(self, endpoint: Endpoint | None, key: str, host: str, port: int) -> Lease[P]:
        pool = self._pools.take(key)
        self.budget.request_started()
        return Lease(self, endpoint, key, pool, host, port)

    def _pick_other(self, key: str | bytes | None, tried: set[str]) -> Lease[P] | None:
        """A lease on an endpoint not in ``tried``, or None after ``MAX_RETRY_PICKS`` picks.

        Picks of tried endpoints are held until the search ends: their raised in-flight counts
        steer load-aware algorithms (P2C, bounded-load hashing) elsewhere. Putting them back at
        once would not: a dead pod fails fast, looks idle, and P2C would pick it again.
        """
        algorithm = self.balancer.algorithm
        held: list[Endpoint] = []
        try:
            for _ in range(MAX_RETRY_PICKS):
                endpoint = algorithm.get(key)
                if endpoint is None:
                    return None
                if endpoint.key not in tried:
                    return self._lease(endpoint, endpoint.key, endpoint.address, endpoint.port)
                held.append(endpoint)
            return None
        finally:
            for endpoint in held:
                algorithm.put(endpoint, None, False)

    def _release(self, lease: Lease[Any], failed: bool, leaked: bool) -> None:
        if lease.endpoint is not None:
            self.balancer.algorithm.put(lease.endpoint, lease.elapsed, failed)
        if leaked:
            self.balancer.unclosed_responses += 1
        self.budget.request_finished()
        if lease.retry:
            self.budget.release()
        self._pools.give_back(lease.key)

    # -- sending with retries ------------------------------------------------------------
    async def send(
        self,
        attempt: Callable[[Lease[P]], Awaitable[R]],
        *,
        key: str | bytes | None,
        method: str,
        replayable: bool,
        classify: Callable[[BaseException], Verdict],
        status: Callable[[R], int],
        discard: Callable[[R], Awaitable[None]],
        explain: Callable[[Exception, Attempts], BaseException | None] | None = None,
        wait: float | None = None,
    ) -> tuple[R, Lease[P]]:
        """Run ``attempt`` on a leased endpoint, retrying on other endpoints when the policy allows.

        Returns the result with the lease still held: the caller releases it when the response
        body is closed. On an exception every lease taken has been released. When the last
        attempt fails, ``explain(exc, attempts)`` may build a clearer error to raise instead
        (``from`` the original): the integration keeps its HTTP client's exception types.
        ``wait`` bounds the wait for the fallback's Service port.
        """
        lease = await self.acquire(key, wait=wait)
        tried: set[str] = set()
        targets = [_target(lease)]
        number = 1
        while True:
            try:
                result = await attempt(lease)
            except BaseException as exc:
                failed = not isinstance(exc, asyncio.CancelledError)
                try:
                    verdict = classify(exc)
                    failed = failed and verdict.endpoint_at_fault
                finally:
                    lease.release(failed=failed)
                nxt = None
                if verdict.failure is not None and self.retry.should_retry(
                    verdict.failure, method=method, replayable=replayable, attempt=number
                ):
                    nxt = self._next_attempt(key, tried, lease, self.retry.uses_budget(verdict.failure))
                if nxt is None:
                    better = self._explain(explain, exc, lease, targets)
                    if better is None:
                        raise
                    raise better from exc
                lease, number = nxt, number + 1
                targets.append(_target(lease))
                continue
            lease.headers_received()
            code = status(result)
            if code in self.retry.statuses and self.retry.retry_status(
                code, method=method, replayable=replayable, attempt=number
            ):
                nxt = self._next_attempt(key, tried, lease, True)
                if nxt is not None:
                    try:
                        await discard(result)
                    except Exception:  # the retry does not need this body: log it and go on
                        logger.warning("discarding a %d response before a retry failed", code, exc_info=True)
                    except BaseException:  # cancelled while discarding: the next lease too
                        nxt.release()
                        raise
                    finally:
                        lease.release(failed=True)
                    lease, number = nxt, number + 1
                    targets.append(_target(lease))
                    continue
            return result, lease

    def _explain(
        self,
        explain: Callable[[Exception, Attempts], BaseException | None] | None,
        exc: BaseException,
        lease: Lease[P],
        targets: list[str],
    ) -> BaseException | None:
        if explain is None or not isinstance(exc, Exception):  # never rewrite a cancellation
            return None
        reason = self.balancer.fallback_reason() if lease.endpoint is None else None
        return explain(exc, Attempts(str(self.balancer.service), tuple(targets), reason))

    def _next_attempt(
        self, key: str | bytes | None, tried: set[str], failed: Lease[P], budgeted: bool
    ) -> Lease[P] | None:
        if failed.endpoint is None:  # the fallback has nowhere else to go
            return None
        tried.add(failed.key)
        if budgeted and not self.budget.try_acquire():
            return None
        lease = self._pick_other(key, tried)
        if lease is None:
            if budgeted:
                self.budget.release()
            return None
        lease.retry = budgeted  # holds a budget slot until released
        self.retries += 1
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
        self._unlisten()
        await self._pools.close_all()

    # -- introspection --------------------------------------------------------------------
    @property
    def pools(self) -> dict[str, P]:
        """The open pools by endpoint key (a copy)."""
        return dict(self._pools.pools)

    def inflight(self, key: str) -> int:
        """Leases held on an endpoint key (the fallback's key is ``FALLBACK_KEY``)."""
        return self._pools.inflight.get(key, 0)

    def __repr__(self) -> str:
        return (
            f"<Dispatcher pools={len(self._pools.pools)} inflight={sum(self._pools.inflight.values())} "
            f"retired={len(self._pools.retired)} retries={self.retries} {self.budget!r}>"
        )
