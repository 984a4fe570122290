"""Give back the pool slot httpcore loses when a request is cancelled at one precise moment.

httpcore 1.0 (1.0.9 included, encode/httpcore#1093, fix proposed in #1099): a request queued in a
full pool is assigned a new connection when a slot frees; if it is cancelled (or times out)
before its task resumes, the pool drops the request but keeps the connection, which never
connects, is never idle, closed or expired, and so holds its slot for the life of the pool. Enough
of them and every later request to that pod fails with ``PoolTimeout``. Cancellations under pool
contention are what the balancer produces on purpose (a hedge's loser, a caller's timeout), so
after any failed attempt the per-pod pool is checked once: a connection that has not started
connecting and that no request in the pool holds is such an orphan. It is removed (it has no
socket to close) and the queued requests are assigned again, as httpcore does after a failure.

Only httpcore's own pool classes are touched, read through ``getattr``: with other internals
this does nothing.
"""

from __future__ import annotations

from typing import Any


def orphans(pool: Any) -> list[Any]:
    """The connections of an httpcore pool that nothing will ever use or close."""
    connections = getattr(pool, "_connections", None)
    requests = getattr(pool, "_requests", None)
    if not isinstance(connections, list) or not isinstance(requests, list):
        return []
    unopened = [
        c
        for c in connections
        if getattr(c, "_connection", False) is None and getattr(c, "_connect_failed", None) is False
    ]
    if not unopened:
        return []
    held = {id(getattr(r, "connection", None)) for r in requests}
    return [c for c in unopened if id(c) not in held]


async def reclaim(transport: Any) -> int:
    """Remove the orphans of ``transport``'s pool (an ``httpx.AsyncHTTPTransport``) and let the
    queued requests take their slots; the number removed."""
    pool: Any = getattr(transport, "_pool", None)
    found = orphans(pool)
    if not found:
        return 0
    for connection in found:
        pool._connections.remove(connection)
    closing = pool._assign_requests_to_connections()
    if closing:  # idle or expired connections the reassignment retires, as httpcore closes them
        await pool._close_connections(closing)
    return len(found)
