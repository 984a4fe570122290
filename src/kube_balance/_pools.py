"""Per-endpoint connection pools and the :class:`Lease` that holds one for one attempt.

A pool opens lazily on the first lease of its endpoint. When the endpoint leaves the eligible
set its pool closes once its last lease is released, in a task of its own and under
``asyncio.shield`` (httpcore closes connections the same way): neither a cancelled request nor a
cancelled ``aclose()`` can interrupt a close half-way and leak its sockets.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from ._endpoint import Endpoint
from ._outcome import Outcome

__all__ = ["FALLBACK_KEY", "Lease", "PoolSet"]

logger = logging.getLogger("kube_balance")

P = TypeVar("P")
FALLBACK_KEY = "<fallback>"
_NO_POOL: Any = object()


class LeaseOwner(Protocol):
    """What a :class:`Lease` needs from its dispatcher."""

    clock: Callable[[], float]

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    def _release(self, lease: Lease[Any], outcome: Outcome, leaked: bool) -> None: ...


class Lease(Generic[P]):
    """One endpoint (or the fallback) taken for one attempt; release it exactly once.

    ``host`` is the address (IPv6 without brackets) or the fallback DNS name; ``port`` its port.
    ``status`` and ``retry_after`` are the response's, once its headers arrived
    (:meth:`headers_received`); they decide the default :class:`Outcome` of :meth:`release`.
    """

    __slots__ = (
        "_owner",
        "endpoint",
        "key",
        "pool",
        "host",
        "port",
        "started",
        "elapsed",
        "status",
        "retry_after",
        "retry",
        "released",
        "outrun",
    )

    def __init__(
        self, owner: LeaseOwner, endpoint: Endpoint | None, key: str, pool: P, host: str, port: int
    ) -> None:
        self._owner = owner
        self.endpoint = endpoint  # None: the fallback target
        self.key = key
        self.pool = pool
        self.host = host
        self.port = port
        self.started = owner.clock()
        self.elapsed: float | None = None
        self.status: int | None = None
        self.retry_after: float | None = None
        self.retry = False
        self.released = False
        self.outrun = False  # a hedge answered first: a cancellation is reported as Outcome.SLOW

    def headers_received(self, status: int | None = None, retry_after: float | None = None) -> None:
        """Record the time to response headers (what ``put()`` reports as ``elapsed``) and the status."""
        self.elapsed = self._owner.clock() - self.started
        self.status, self.retry_after = status, retry_after

    def waited(self) -> None:
        """Record the time waited so far as ``elapsed``: for a hedged attempt cancelled before its
        answer, a lower bound of its latency. A pod whose slow answers are all hedged away must
        still look slow to a latency-aware algorithm (``peak_ewma``)."""
        if self.elapsed is None:
            self.elapsed = self._owner.clock() - self.started

    def outcome(self) -> Outcome:
        """The outcome the response's status gives (``OK`` before any status is known)."""
        return Outcome.OK if self.status is None else Outcome.of_status(self.status)

    def release(self, outcome: Outcome | None = None, *, leaked: bool = False) -> None:
        """Put the endpoint back (only the first call counts), with ``outcome`` (default: from the
        status). ``leaked``: from a safety net, for a response nobody closed."""
        if self.released:
            return
        self.released = True
        self._owner._release(self, outcome if outcome is not None else self.outcome(), leaked)

    def release_from_finalizer(self, outcome: Outcome | None = None) -> None:
        """Release a lease whose holder was garbage-collected unreleased (from ``__del__``).

        A finalizer may run in another thread, or in the middle of the dispatcher iterating its
        pools: it only schedules the release on the loop. Called directly only when that loop
        is closed or not running (nothing else can be touching the bookkeeping then).
        """
        if self.released:
            return
        loop = self._owner.loop
        if loop is not None and loop.is_running() and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(functools.partial(self.release, outcome, leaked=True))
                return
            except RuntimeError:  # closed between the check and the call
                pass
        self.release(outcome, leaked=True)

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Lease {self.key} {state}{' retry' if self.retry else ''}>"


class PoolSet(Generic[P]):
    """The open pools by endpoint key, their lease counts, and the closes in progress."""

    def __init__(self, open_pool: Callable[[], P], close_pool: Callable[[P], Awaitable[None]]) -> None:
        self._open_pool = open_pool
        self._close_pool = close_pool
        self.pools: dict[str, P] = {}
        self.inflight: dict[str, int] = {}
        self.retired: set[str] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None  # set on first use, for finalizers

    def take(self, key: str) -> P:
        """The pool of ``key`` (opened if needed), with one more lease counted on it."""
        pool: P = self.pools.get(key, _NO_POOL)
        if pool is _NO_POOL:  # (a pool may be None: a client that pools itself has none of ours)
            pool = self.pools[key] = self._open_pool()
        self.inflight[key] = self.inflight.get(key, 0) + 1
        return pool

    def give_back(self, key: str) -> None:
        """One lease on ``key`` is over; close its pool if the endpoint left and this was the last."""
        left = self.inflight.get(key, 1) - 1
        if left > 0:
            self.inflight[key] = left
            return
        self.inflight.pop(key, None)
        if key in self.retired:
            self._retire_now(key)

    def on_eligible(self, keys: Iterable[str]) -> None:
        """The eligible set changed: pools of endpoints no longer in it close when idle."""
        keep = set(keys)
        self.retired -= keep  # came back before draining: keep the pool
        for key in [k for k in self.pools if k not in keep and k != FALLBACK_KEY]:
            if self.inflight.get(key, 0):
                self.retired.add(key)
            else:
                self._retire_now(key)

    def _retire_now(self, key: str) -> None:
        self.retired.discard(key)
        pool = self.pools.pop(key, None)
        if pool is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a release outside the loop (its loop stopped): hand the close over
            if self.loop is not None and not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self._spawn_close, pool)
            return
        self._spawn_close(pool)

    def _spawn_close(self, pool: P) -> None:
        # A task of its own: the request whose release triggered the close may be cancelled.
        task = asyncio.get_running_loop().create_task(self._close_one(pool))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_one(self, pool: P) -> None:
        try:
            # Shielded here, not by each integration: whoever cancels this task (a caller
            # gathering the closes, say) must not interrupt a close_pool half-way.
            await asyncio.shield(self._close_pool(pool))
        except Exception:
            logger.warning("closing a drained endpoint pool failed", exc_info=True)

    async def drained(self) -> None:
        """Wait for the pools being closed. ``asyncio.wait``, unlike ``gather``, does not cancel
        the close tasks when this wait is cancelled."""
        while self._closing:
            await asyncio.wait(tuple(self._closing))

    async def close_all(self) -> None:
        """Close every pool (leases still held keep their pool object, now closed)."""
        pools, self.pools = list(self.pools.values()), {}
        self.retired.clear()
        for pool in pools:
            self._spawn_close(pool)
        await self.drained()
