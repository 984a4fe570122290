"""Shared benchmark plumbing: a same-run baseline, best-of-N timing, a load driver, a table printer.

Machines here are shared and noisy, so every figure is reported as a ratio to a baseline measured
in the same process a moment before, and each timing is the best of several repeats.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import time
import timeit
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp
    import httpx

Fetch = Callable[[], Awaitable[None]]
"""One request: sends it, reads the body, raises on a status other than 200."""


def empty(key: object = None) -> None:
    """The baseline: an empty Python function taking the same argument shape as ``get()``."""
    return None


def ns_per_op(stmt: str, env: Mapping[str, object], number: int, repeat: int = 7) -> float:
    """Best of ``repeat`` runs of ``number`` executions of ``stmt``, in nanoseconds each.

    ``stmt`` is a source string run inline by timeit (no wrapper call is added to the cost).
    """
    timer = timeit.Timer(stmt, globals=dict(env))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def empty_call_ns(number: int = 500_000) -> float:
    """Nanoseconds for one call of an empty Python function, measured now."""
    return ns_per_op("empty(None)", {"empty": empty}, number)


def ratio_to_empty(stmt: str, env: Mapping[str, object], number: int, repeat: int = 7) -> tuple[float, float]:
    """(ns per ``stmt``, ratio to an empty call), timing the two interleaved run by run.

    Interleaving means a burst of load from another process hits both sides alike; the best of
    each side over ``repeat`` rounds is kept.
    """
    target = timeit.Timer(stmt, globals=dict(env))
    base = timeit.Timer("empty(None)", globals={"empty": empty})
    best_t = best_b = float("inf")
    for _ in range(repeat):
        best_b = min(best_b, base.timeit(number))
        best_t = min(best_t, target.timeit(number))
    return best_t / number * 1e9, best_t / best_b


async def drive(fetch: Fetch, requests: int, concurrency: int, timeout: float = 120.0) -> None:
    """``requests`` calls of ``fetch`` from ``concurrency`` tasks, all done within ``timeout`` s."""
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await fetch()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout)


def httpx_get(client: httpx.AsyncClient, url: str) -> Fetch:
    """A GET of ``url`` through an httpx client (the body is read with the response)."""

    async def fetch() -> None:
        r = await client.get(url)
        if r.status_code != 200:
            raise RuntimeError(f"status {r.status_code}")

    return fetch


def aiohttp_get(session: aiohttp.ClientSession, url: str) -> Fetch:
    """A GET of ``url`` through an aiohttp session, its body read."""

    async def fetch() -> None:
        async with session.get(url) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"status {r.status}")

    return fetch


def freeze_heap() -> None:
    """Collect, then move every object alive now out of the garbage collector's generations.

    Call it once setup is done, before a timed window. A benchmark process holds far more
    long-lived objects than a client pod (the fake API server, kubernetes_asyncio's models, the
    plotting stack): there a full collection stopped the event loop for 65-99 ms (measured with
    ``gc.callbacks``, 2026-12-07), every request in flight waited it out, and with 8 in flight
    one such pause was the whole p99.9 of 10,000 requests. Frozen, the collections that remain
    scan only what the run allocates (5-9 ms). A service does the same with ``gc.freeze()``
    after startup (docs/algorithms.md).
    """
    gc.collect()
    gc.freeze()


def machine() -> str:
    """One line naming the machine and the date, for RESULTS.md."""
    return (
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (it reads fine in a terminal too)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
