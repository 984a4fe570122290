"""Cluster mode's lifecycle policy: which watched Services stop, and when.

A Service with no request for ``idle_timeout`` seconds and nothing in flight is stopped by the
sweep, which runs in the background every ``idle_timeout / 4`` (at most every minute). When
``max_services`` Services are watched, the least recently used idle one makes room for a new
one; when every one has requests in flight, :class:`TooManyServices`. A route whose Service
changed under it (a port renamed or removed, the Service deleted or made ExternalName) is
retired: no new request takes it, and it is closed once nothing is in flight on it.

Pure choices (:func:`idle`, :func:`least_recently_used`) over the table's entries; the closing
is the table's (``_cluster.py``), so this module owns no I/O but the sweep's timer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ._balancer import LoadBalancer
from ._errors import DiscoveryError

__all__ = ["Entry", "Sweeper", "busy", "idle", "least_recently_used"]

K = TypeVar("K")


class Route(Protocol):
    """What cluster mode needs of an integration's route: its balancer and dispatcher."""

    @property
    def balancer(self) -> LoadBalancer: ...

    @property
    def dispatcher(self) -> Any: ...  # a Dispatcher: closed with the route


R = TypeVar("R", bound=Route)


@dataclass(eq=False)
class Entry(Generic[R]):
    """One Service: what its last read said, until when that holds, and its running ports."""

    obj: Mapping[str, Any] | None = None  # None: not found, or the read failed
    error: DiscoveryError | None = None  # a read that failed in a way to report (403)
    expires: float = 0.0  # clock time after which the Service is read again
    routes: dict[int, R] = field(default_factory=dict)  # Service port -> route
    used: float = 0.0  # clock time of the last request


def busy(routes: Any) -> bool:
    """Whether any of ``routes`` has a request (or an open response) in flight."""
    return any(r.balancer.status().inflight for r in routes)


def idle(entries: Mapping[K, Entry[Any]], now: float, idle_timeout: float) -> list[K]:
    """The watched Services without a request for ``idle_timeout`` and nothing in flight."""
    return [
        key
        for key, e in entries.items()
        if e.routes and now - e.used >= idle_timeout and not busy(e.routes.values())
    ]


def least_recently_used(entries: Mapping[K, Entry[Any]]) -> K | None:
    """The idle watched Service used longest ago (None: every watched one is busy)."""
    candidates = [key for key, e in entries.items() if e.routes and not busy(e.routes.values())]
    return min(candidates, key=lambda key: entries[key].used) if candidates else None


class Sweeper:
    """Runs ``sweep()`` every ``idle_timeout / 4`` seconds (at least 0.01, at most 60) in a task
    started on the first request and cancelled by :meth:`aclose`."""

    def __init__(self, idle_timeout: float, sweep: Callable[[], Awaitable[object]]) -> None:
        self.interval = min(max(idle_timeout / 4, 0.01), 60.0)
        self._sweep = sweep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="kube-balance cluster idle sweep"
            )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._sweep()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
