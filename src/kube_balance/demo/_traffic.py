"""Real traffic for the demo: closed-loop workers, and a tally of where every request went."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .._errors import KubeBalanceError

Send = Callable[[str | None], Awaitable[tuple[int, str]]]
"""Sends one request (with an affinity key or None); returns its status and the pod that answered."""

REQUEST_TIMEOUT = 5.0  # seconds: a request slower than this counts as failed


@dataclass(frozen=True, slots=True)
class Record:
    """One request: when it ended (seconds since the tally started), where, how long, its status."""

    at: float
    pod: str  # "" when no pod answered
    latency: float
    status: int  # 0: an error before any status
    key: str | None = None


@dataclass
class Tally:
    """Every request of one phase of a scene; nothing is dropped."""

    label: str
    started: float = field(default_factory=time.monotonic)
    records: list[Record] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, pod: str, latency: float, status: int, key: str | None = None) -> None:
        self.records.append(Record(time.monotonic() - self.started, pod, latency, status, key))

    @property
    def count(self) -> int:
        return len(self.records)

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx answer."""
        return sum(1 for r in self.records if not 200 <= r.status < 300)

    def pods(self) -> Counter[str]:
        """Successful requests per pod."""
        return Counter(r.pod for r in self.records if 200 <= r.status < 300)

    def shares(self, names: Sequence[str] = ()) -> dict[str, float]:
        """Each pod's share of the successful requests (pods in ``names`` included at 0)."""
        pods = self.pods()
        total = sum(pods.values()) or 1
        return {name: pods[name] / total for name in sorted({*names, *pods})}

    def latencies(self) -> list[float]:
        return sorted(r.latency for r in self.records if 200 <= r.status < 300)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the successful requests' latency in seconds (nan if none)."""
        values = self.latencies()
        if not values:
            return math.nan
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


async def drive(
    send: Send,
    tally: Tally,
    *,
    seconds: float,
    concurrency: int,
    keys: Sequence[str] = (),
    stop: asyncio.Event | None = None,
    requests: int | None = None,
) -> Tally:
    """``concurrency`` workers send requests back to back for ``seconds``; each one ends in ``tally``.

    With ``stop``, they go on until it is set instead (``seconds`` is then a cap); with ``requests``,
    until that many were sent (``seconds`` is a cap too). With ``keys``,
    request ``i`` of worker ``w`` carries key ``keys[(w + i * concurrency) % len(keys)]``.
    """
    deadline = time.monotonic() + seconds
    left = [requests if requests is not None else -1]

    def going() -> bool:
        if left[0] == 0:
            return False
        left[0] -= 1
        return time.monotonic() < deadline and (stop is None or not stop.is_set())

    async def worker(index: int) -> None:
        sent = 0
        while going():
            key = keys[(index + sent * concurrency) % len(keys)] if keys else None
            sent += 1
            await one(send, tally, key)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return tally


async def one(send: Send, tally: Tally, key: str | None = None) -> None:
    """Send one request and record it, whatever happens (typed errors only; others propagate)."""
    import aiohttp
    import httpx

    started = time.monotonic()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            status, pod = await send(key)
    except (TimeoutError, KubeBalanceError, httpx.HTTPError, aiohttp.ClientError) as exc:
        tally.errors[type(exc).__name__] += 1
        tally.add("", time.monotonic() - started, 0, key)
    else:
        tally.add(pod, time.monotonic() - started, status, key)
