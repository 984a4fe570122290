"""Test plumbing for the Kubernetes source: a recording sink, a recording sleep, a running source."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from kube_balance import DiscoveryError, EndpointSet
from kube_balance.discovery import KubernetesSource
from kube_balance.testing import FakeClock

TIMEOUT = 5.0


class Sink:
    """Records snapshots and errors; ``wait_for`` awaits a condition on them (bounded)."""

    def __init__(self) -> None:
        self.snapshots: list[EndpointSet] = []
        self.errors: list[DiscoveryError] = []
        self._event = asyncio.Event()

    def on_endpoints(self, snapshot: EndpointSet) -> None:
        self.snapshots.append(snapshot)
        self._event.set()

    def on_error(self, error: DiscoveryError) -> None:
        self.errors.append(error)
        self._event.set()

    @property
    def keys(self) -> list[str]:
        """The current endpoint keys, sorted."""
        return sorted(self.snapshots[-1].keys) if self.snapshots else []

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async def loop() -> None:
            while not predicate():
                self._event.clear()
                await self._event.wait()

        await asyncio.wait_for(loop(), timeout)

    async def wait_keys(self, *keys: str) -> None:
        await self.wait_for(lambda: self.keys == sorted(keys))


class Sleeper:
    """The injected backoff sleep: records each delay, then yields briefly (or waits while held)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._gate = asyncio.Event()
        self._gate.set()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self._gate.wait()
        await asyncio.sleep(0.005)  # a real but tiny pause bounds the retry rate of a failing test


async def until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` (for the server's request log) every few ms, at most ``timeout`` s."""

    async def loop() -> None:
        while not predicate():  # noqa: ASYNC110 - the server's request log has no event to wait on
            await asyncio.sleep(0.005)

    await asyncio.wait_for(loop(), timeout)


def requests(api: Any, verb: str | None = None) -> list[Any]:
    """The server's request log for our Service's collection, optionally one verb."""
    return [
        r for r in api.requests if (verb is None or r.verb == verb) and r.verb in ("list", "watch", "get")
    ]


def make_source(service: str, sleeper: Sleeper, **kwargs: Any) -> KubernetesSource:
    kwargs.setdefault("rng", random.Random(4))
    kwargs.setdefault("clock", FakeClock(1000.0))
    return KubernetesSource(service, sleep=sleeper, **kwargs)


@contextlib.asynccontextmanager
async def running(source: Any, sink: Sink) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``source`` for the block; on exit it must still be alive, then it is cancelled."""
    task = asyncio.create_task(source.run(sink))
    try:
        yield task
        assert not task.done(), f"the source stopped: {task!r}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)
