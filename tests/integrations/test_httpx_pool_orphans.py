"""A request cancelled while it waits for a pod's full pool costs the pod no pool slot.

httpcore 1.0 keeps the new connection it assigned to a queued request that is cancelled before
its task resumes, and that connection holds a slot for good (encode/httpcore#1093): with
``max_connections=1`` every later request to the pod would end in ``PoolTimeout``. The transport
reclaims such a slot after a failed attempt (``_httpcore_orphans``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpcore
import httpx
from helpers_pods import running_pods

from kube_balance.discovery.static import StaticSource
from kube_balance.integrations._httpcore_orphans import orphans, reclaim
from kube_balance.integrations.httpx import BalancedTransport

URL = "http://web.shop.svc.cluster.local"


async def _answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One answer per connection, then close it: the next request needs a new connection."""
    with contextlib.suppress(ConnectionError):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await reader.read(4096)
            if not chunk:
                return
            head += chunk
        if head.startswith(b"GET /slow"):
            await asyncio.sleep(0.1)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def closing_pod() -> AsyncIterator[str]:
    server = await asyncio.start_server(_answer_and_close, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_request_cancelled_as_it_is_given_a_new_connection_leaves_its_slot(
    rng: random.Random,
) -> None:
    async with closing_pod() as pod, asyncio.timeout(10):
        transport = BalancedTransport(
            "web.shop:http", source=StaticSource([pod]), limits=httpx.Limits(max_connections=1), rng=rng
        )
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2.0, pool=0.5)) as client:
            first = await client.send(client.build_request("GET", f"{URL}/slow"), stream=True)
            queued = asyncio.create_task(client.get(f"{URL}/"))
            await asyncio.sleep(0.05)  # queued for the pod's only connection
            await first.aread()
            await first.aclose()  # its connection closes: the pool gives `queued` a new one...
            queued.cancel()  # ...and it is cancelled before its task runs again
            with contextlib.suppress(asyncio.CancelledError):
                await queued
            assert queued.cancelled()
            (pool,) = transport.dispatcher._pools.pools.values()
            assert orphans(pool._pool) == []  # reclaimed when the attempt failed
            after = [(await client.get(f"{URL}/")).status_code for _ in range(3)]
        assert after == [200, 200, 200]  # without the reclaim: PoolTimeout, the slot held for good
        assert transport.balancer.status().outcomes == {"ok": 4, "cancelled": 1}
        assert transport.balancer.status().inflight == 0


def test_an_orphan_is_a_connection_not_yet_connecting_that_no_request_holds() -> None:
    """Only a connection that never started (no socket, no failed connect) and that no request in
    the pool was given; anything else, or a pool without httpcore's internals, is left alone."""
    held = SimpleNamespace(_connection=None, _connect_failed=False)
    orphan = SimpleNamespace(_connection=None, _connect_failed=False)
    opened = SimpleNamespace(_connection=object(), _connect_failed=False)
    failed = SimpleNamespace(_connection=None, _connect_failed=True)
    other = SimpleNamespace()  # another connection class (HTTP/2 proxy, a user's pool)
    pool = SimpleNamespace(
        _connections=[held, orphan, opened, failed, other],
        _requests=[SimpleNamespace(connection=held), SimpleNamespace(connection=None)],
    )
    assert orphans(pool) == [orphan]
    assert orphans(SimpleNamespace(_connections=[orphan], _requests=[])) == [orphan]
    assert orphans(SimpleNamespace(_connections=[held], _requests=[SimpleNamespace(connection=held)])) == []
    assert orphans(SimpleNamespace(_connections=(orphan,), _requests=[])) == []  # not httpcore's shape
    assert orphans(None) == []


async def test_reclaim_removes_orphans_and_closes_what_the_reassignment_retires() -> None:
    """On a real httpcore pool: an orphan (a connection the pool created that nothing holds) is
    removed and counted; the reassignment that follows retires an expired idle connection, which
    is closed, as httpcore closes what it retires; a second pass and a pool-less object find nothing."""
    async with running_pods(1) as pods, asyncio.timeout(10):
        transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(keepalive_expiry=0.01))
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(f"http://{pods[0].key}/")).status_code == 200
            pool = transport._pool
            (idle,) = pool.connections
            await asyncio.sleep(0.05)  # its keep-alive expired
            assert idle.has_expired() and not idle.is_closed()
            host, port = pods[0].key.split(":")
            orphan = pool.create_connection(httpcore.Origin(b"http", host.encode(), int(port)))
            pool._connections.append(orphan)
            assert orphans(pool) == [orphan]
            assert await reclaim(transport) == 1
            assert orphan not in pool.connections and idle not in pool.connections
            assert idle.is_closed()
            assert await reclaim(transport) == 0
    assert await reclaim(object()) == 0
