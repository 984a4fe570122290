"""A small cluster for the cluster-mode tests: Services and slices on the fake apiserver, pods on
127.0.0.1, and a forward proxy that stands for "the rest of the network" (passed-through requests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from helpers_pods import Pod

from kube_balance.testing import FakeApiServer, RequestRecord, endpoint_slice, slice_endpoint


def pod_slice(svc: str, ns: str, pod: Pod, *, port_name: str = "http", **conditions: bool) -> dict[str, Any]:
    """One EndpointSlice of ``ns/svc`` for one pod on 127.0.0.1 (its port named ``port_name``)."""
    return endpoint_slice(
        svc,
        ns,
        name=f"{svc}-{pod.name}",
        endpoints=[slice_endpoint("127.0.0.1", **conditions)],
        ports=[{"name": port_name, "port": pod.port, "protocol": "TCP"}],
    )


def reads(api: FakeApiServer, kind: str, name: str | None = None) -> list[RequestRecord]:
    """The API requests for ``kind`` ("services" gets, "endpointslices" lists and watches)."""
    found = []
    for r in api.requests:
        if f"/{kind}" not in r.path:
            continue
        if name is not None and not (
            r.path.endswith(f"/{kind}/{name}")
            or r.query.get("labelSelector") == f"kubernetes.io/service-name={name}"
        ):
            continue
        found.append(r)
    return found


class ForwardProxy:
    """A plain-HTTP forward proxy on 127.0.0.1 that answers itself: ``{"proxied": <request target>}``.

    Requests that reach it were passed through (they would have gone to DNS); the request line
    carries the absolute URL the client asked for, unchanged.
    """

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            self.seen.append(target)
            body = json.dumps({"proxied": target}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def api_client(api: FakeApiServer, token: str | None = None) -> AsyncIterator[Any]:
    """A kubernetes_asyncio ApiClient on the fake, closed on exit."""
    client = await asyncio.wait_for(api.new_api_client(token=token), 10)
    try:
        yield client
    finally:
        await asyncio.wait_for(client.close(), 5)


def two_port_service(name: str, ns: str, ports: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """A Service whose named ports each target the pod port of the same name."""
    from kube_balance.testing import service

    return service(name, ns, ports=[{"name": n, "port": p, "targetPort": n} for n, p in ports])
