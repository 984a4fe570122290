"""List pages are read up to a byte cap; a page over it is a typed error that says what to do."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from helpers_kube_discovery import TIMEOUT, Sleeper, requests, until

from kube_balance import DiscoveryError
from kube_balance._backoff import Backoff
from kube_balance.discovery import ClientConfig
from kube_balance.discovery.kubernetes._requests import read_limited
from kube_balance.discovery.kubernetes._status import PageTooLarge
from kube_balance.discovery.kubernetes._watcher import SliceWatch
from kube_balance.testing import FakeApiServer, FakeClock, endpoint_slice

CAP = 16 * 1024


class Recorder:
    """A SliceWatch listener that records errors."""

    def __init__(self) -> None:
        self.errors: list[DiscoveryError] = []

    def on_change(self, watch: SliceWatch, changed: set[str] | None) -> None:
        pass

    def on_error(self, error: DiscoveryError) -> None:
        self.errors.append(error)


@contextlib.asynccontextmanager
async def watching(client: Any, sleeper: Sleeper, page_size: int) -> Any:
    rng, clock = random.Random(4), FakeClock(1000.0)
    watch = SliceWatch(
        ClientConfig(api_client=client),
        "shop",
        "web",
        rng=rng,
        clock=clock,
        backoff=Backoff(rng=rng, clock=clock, sleep=sleeper),
        page_size=page_size,
        max_page_bytes=CAP,
    )
    recorder = Recorder()
    watch.listeners.append(recorder)
    task = asyncio.create_task(watch.run())
    try:
        yield watch, recorder
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)


async def test_oversized_list_page_is_refused_and_smaller_pages_fit(
    api: FakeApiServer, client: Any, sleeper: Sleeper
) -> None:
    """A 500-item page of 40 slices (~60 KB) passes a 16 KiB cap: PageTooLarge names the cap and
    page_size, and is retried with backoff; with page_size=2 every page fits and all 40 are listed."""
    for i in range(40):
        api.apply(
            endpoint_slice("web", "shop", name=f"web-{i}", endpoints=[f"10.0.{i}.{j}" for j in range(1, 11)])
        )
    async with watching(client, sleeper, page_size=500) as (watch, recorder):
        await until(lambda: len(recorder.errors) >= 2)
        error = recorder.errors[0]
        assert isinstance(error, PageTooLarge)
        assert f"cap of {CAP:,}" in str(error) and "page_size (now 500)" in str(error)
        assert watch.last_error is not None and not watch.synced
        assert len(sleeper.delays) >= 1 and len(requests(api, "list")) >= 2  # backed off, retried
    async with watching(client, sleeper, page_size=2) as (watch, recorder):
        await until(lambda: watch.synced)
        assert len(watch.slices) == 40 and recorder.errors == []


@pytest.mark.parametrize("size", [CAP - 1, CAP, CAP + 1, 10 * CAP])
async def test_read_limited_counts_a_chunked_body_without_length(size: int) -> None:
    """A chunked answer (no Content-Length) is read up to the cap exactly, and refused past it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, size, 1000):
            await resp.write(b"x" * min(1000, size - start))
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            asyncio.timeout(TIMEOUT),
            session.get(f"http://127.0.0.1:{port}/") as resp,
        ):
            assert resp.content_length is None
            if size <= CAP:
                assert len(await read_limited(resp, CAP, "list")) == size
            else:
                with pytest.raises(PageTooLarge, match=f"passed the cap of {CAP:,} bytes"):
                    await read_limited(resp, CAP, "list")
    finally:
        await runner.cleanup()
