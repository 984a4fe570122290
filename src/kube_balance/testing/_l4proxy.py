"""An L4 "Service" for tests and the demo: a TCP proxy that picks one pod per *connection*.

This is what a ClusterIP does (kube-proxy's iptables or IPVS rules pick a backend when a
connection opens, never per request): with keep-alive HTTP/1.1 a client stays on the pods its
connections reached, and with HTTP/2 every request rides one connection to one pod. Bytes are
piped both ways untouched, so TLS and h2c go through as they would.

::

    async with L4Proxy([("127.0.0.1", 8001), ("127.0.0.1", 8002)]) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/"   # connection 1 -> 8001, 2 -> 8002, 3 -> 8001 ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from types import TracebackType

from .._validate import check_int, invalid

__all__ = ["L4Proxy"]

_CHUNK = 65536


class L4Proxy:
    """A TCP proxy on 127.0.0.1 choosing the next target round robin for each accepted connection.

    ``targets`` are ``(host, port)`` pairs (at least one); ``port`` (0: any free one) is where it
    listens. ``connections`` counts accepted connections per target (``"host:port"``);
    :meth:`set_targets` changes the targets for new connections (open ones stay where they are).
    """

    def __init__(self, targets: Sequence[tuple[str, int]], *, port: int = 0) -> None:
        self.set_targets(targets)
        self._port = check_int("L4Proxy port", port, low=0, high=65535)
        self._next = 0
        self.connections: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    def set_targets(self, targets: Sequence[tuple[str, int]]) -> None:
        """The targets new connections go to, round robin."""
        checked = list(targets) if isinstance(targets, (list, tuple)) else None
        if not checked or not all(_is_target(t) for t in checked):
            raise invalid("L4Proxy targets", targets, "expected a non-empty list of (host, port) pairs")
        self._targets = [(str(h), int(p)) for h, p in checked]

    @property
    def port(self) -> int:
        """The port it listens on (after start)."""
        if self._server is None:
            raise RuntimeError("L4Proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> L4Proxy:
        """Listen on 127.0.0.1."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._port)
        return self

    async def aclose(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def __aenter__(self) -> L4Proxy:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        host, port = self._targets[self._next % len(self._targets)]
        self._next += 1
        self.connections[f"{host}:{port}"] += 1
        try:
            pod_r, pod_w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError):
            client_w.close()  # as a ClusterIP to a dead pod: the connection is reset
            return
        for task in (
            asyncio.create_task(_pipe(client_r, pod_w)),
            asyncio.create_task(_pipe(pod_r, client_w)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


def _is_target(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
        and 0 < value[1] < 65536
    )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
