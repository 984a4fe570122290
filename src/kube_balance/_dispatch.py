"""The transport-independent per-request core: pick, retry on another pod, put once, pool lifecycle.

Every integration (httpx transport, aiohttp connector, FastAPI dependency) sends requests through
a :class:`Dispatcher`; only "send one attempt to this pool", "what kind of failure is this" and
"how to discard a response" are theirs. The pieces here:

- a :class:`Lease` per ``get()``: its :meth:`Lease.release` calls ``put()`` exactly once (a guard
  flag), with the time to response headers and whether the attempt failed;
- retries on a different endpoint under a :class:`~kube_balance._retry.RetryPolicy` and its budget;
- one connection pool per endpoint, opened lazily; when an endpoint leaves the eligible set its
  pool closes once its last lease is released, in a task of its own so a cancelled request
  cannot interrupt the close (httpcore closes connections the same way, shielded);
- the fallback target when no endpoint is usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ._balancer import FallbackTarget, LoadBalancer
from ._endpoint import Endpoint
from ._retry import Failure, RetryBudget, RetryPolicy

__all__ = ["Dispatcher", "Lease"]

logger = logging.getLogger("kube_balance")

P = TypeVar("P")
R = TypeVar("R")
FALLBACK_KEY = "<fallback>"
MAX_RETRY_PICKS = 32
"""Bound on get() calls to find an untried endpoint for a retry (a hash key may map to one)."""


class Lease(Generic[P]):
    """One endpoint (or the fallback) taken for one attempt; release it exactly once.

    ``host`` is the address (IPv6 without brackets) or the fallback DNS name; ``port`` its port.
    """

    __slots__ = (
        "_dispatcher",
        "endpoint",
        "key",
        "pool",
        "host",
        "port",
        "started",
        "elapsed",
        "retry",
        "released",
    )

    def __init__(
        self, dispatcher: Dispatcher[P], endpoint: Endpoint | None, key: str, pool: P, host: str, port: int
    ) -> None:
        self._dispatcher = dispatcher
        self.endpoint = endpoint  # None: the fallback target
        self.key = key
        self.pool = pool
        self.host = host
        self.port = port
        self.started = dispatcher.clock()
        self.elapsed: float | None = None
        self.retry = False
        self.released = False

    def headers_received(self) -> None:
        """Record the time to response headers (what ``put()`` reports as ``elapsed``)."""
        self.elapsed = self._dispatcher.clock() - self.started

    def release(self, failed: bool = False, *, leaked: bool = False) -> None:
        """Put the endpoint back (only the first call counts). ``leaked``: from a finalizer."""
        if self.released:
            return
        self.released = True
        self._dispatcher._release(self, failed, leaked)

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Lease {self.key} {state}{' retry' if self.retry else ''}>"


class Dispatcher(Generic[P]):
    """Sends requests through a :class:`LoadBalancer` with per-endpoint pools of type ``P``.

    ``open_pool()`` creates a pool; ``close_pool(pool)`` closes one. ``clock`` measures elapsed
    times (``time.perf_counter`` by default).
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
        self._open_pool = open_pool
        self._close_pool = close_pool
        self._pools: dict[str, P] = {}
        self._inflight: dict[str, int] = {}
        self._retired: set[str] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.retries = 0  # retries sent, for status and tests
        self._remove_listener = balancer.add_listener(self._on_eligible)

    # -- leases ---------------------------------------------------------------------------
    async def acquire(self, key: str | bytes | None = None) -> Lease[P]:
        """A lease on the endpoint the algorithm picks, or on the fallback target."""
        if self._closed:
            raise RuntimeError("cannot send a request: the dispatcher (transport) has been closed")
        if not self.balancer.started:
            await self.balancer.ensure_started()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        endpoint = self.balancer.algorithm.get(key)
        if endpoint is None:
            target = await self.balancer.fallback_target()  # raises NoEndpointsAvailable
            return self._lease(None, FALLBACK_KEY, target)
        return self._lease(endpoint, endpoint.key, FallbackTarget(endpoint.address, endpoint.port))

    def _lease(self, endpoint: Endpoint | None, key: str, target: FallbackTarget) -> Lease[P]:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = self._open_pool()
        self._inflight[key] = self._inflight.get(key, 0) + 1
        self.budget.request_started()
        return Lease(self, endpoint, key, pool, target.host, target.port)

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
                    return self._lease(
                        endpoint, endpoint.key, FallbackTarget(endpoint.address, endpoint.port)
                    )
                held.append(endpoint)
            return None
        finally:
            for endpoint in held:
                algorithm.put(endpoint, None, False)

    def _release(self, lease: Lease[P], failed: bool, leaked: bool) -> None:
        if lease.endpoint is not None:
            self.balancer.algorithm.put(lease.endpoint, lease.elapsed, failed)
        if leaked:
            self.balancer.unclosed_responses += 1
        self.budget.request_finished()
        if lease.retry:
            self.budget.release()
        key = lease.key
        left = self._inflight.get(key, 1) - 1
        if left > 0:
            self._inflight[key] = left
            return
        self._inflight.pop(key, None)
        if key in self._retired:
            self._retire_now(key)

    # -- sending with retries ------------------------------------------------------------
    async def send(
        self,
        attempt: Callable[[Lease[P]], Awaitable[R]],
        *,
        key: str | bytes | None,
        method: str,
        replayable: bool,
        classify: Callable[[BaseException], Failure | None],
        status: Callable[[R], int],
        discard: Callable[[R], Awaitable[None]],
    ) -> tuple[R, Lease[P]]:
        """Run ``attempt`` on a leased endpoint, retrying on other endpoints when the policy allows.

        Returns the result with the lease still held: the caller releases it when the response
        body is closed. On an exception every lease taken has been released.
        """
        lease = await self.acquire(key)
        tried: set[str] = set()
        number = 1
        while True:
            try:
                result = await attempt(lease)
            except BaseException as exc:
                lease.release(failed=not isinstance(exc, asyncio.CancelledError))
                failure = classify(exc)
                nxt = None
                if failure is not None and self.retry.should_retry(
                    failure, method=method, replayable=replayable, attempt=number
                ):
                    nxt = self._next_attempt(key, tried, lease, self.retry.uses_budget(failure))
                if nxt is None:
                    raise
                lease, number = nxt, number + 1
                continue
            lease.headers_received()
            code = status(result)
            if code >= 500 and self.retry.retry_status(
                code, method=method, replayable=replayable, attempt=number
            ):
                nxt = self._next_attempt(key, tried, lease, True)
                if nxt is not None:
                    try:
                        await discard(result)
                    except BaseException:  # cancelled while discarding: the next lease too
                        nxt.release()
                        raise
                    finally:
                        lease.release(failed=True)
                    lease, number = nxt, number + 1
                    continue
            return result, lease

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
        keys = {ep.key for ep in eligible}
        self._retired -= keys  # came back before draining: keep the pool
        for key in [k for k in self._pools if k not in keys and k != FALLBACK_KEY]:
            if self._inflight.get(key, 0):
                self._retired.add(key)
            else:
                self._retire_now(key)

    def _retire_now(self, key: str) -> None:
        self._retired.discard(key)
        pool = self._pools.pop(key, None)
        if pool is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # a finalizer outside the loop: hand the close to the loop
            running = None
        if running is not None:
            self._spawn_close(pool)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._spawn_close, pool)

    def _spawn_close(self, pool: P) -> None:
        # A task of its own: the request whose release triggered the close may be cancelled.
        task = asyncio.get_running_loop().create_task(self._close_one(pool))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_one(self, pool: P) -> None:
        try:
            await self._close_pool(pool)
        except Exception:
            logger.warning("closing a drained endpoint pool failed", exc_info=True)

    async def drained(self) -> None:
        """Wait for the pools being closed after a drain (for tests and orderly shutdown)."""
        while self._closing:
            await asyncio.gather(*tuple(self._closing), return_exceptions=True)

    async def aclose(self) -> None:
        """Close every pool (requests still in flight fail) and stop listening to the balancer."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ValueError):
            self._remove_listener()
        pools, self._pools = list(self._pools.values()), {}
        self._retired.clear()
        for pool in pools:
            self._spawn_close(pool)
        await self.drained()

    # -- introspection --------------------------------------------------------------------
    @property
    def pools(self) -> dict[str, P]:
        """The open pools by endpoint key (a copy)."""
        return dict(self._pools)

    def inflight(self, key: str) -> int:
        """Leases held on an endpoint key (the fallback's key is ``FALLBACK_KEY``)."""
        return self._inflight.get(key, 0)

    def __repr__(self) -> str:
        return (
            f"<Dispatcher pools={len(self._pools)} inflight={sum(self._inflight.values())} "
            f"retired={len(self._retired)} retries={self.retries} {self.budget!r}>"
        )
