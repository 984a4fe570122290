"""List and watch requests through kubernetes_asyncio, read raw (``_preload_content=False``).

Raw JSON is several times faster than the client's model deserialisation for large lists
(``benchmarks/bench_discovery.py``), and a raw watch body can be read line by line with our own
deadline, which ``watch.Watch`` does not allow.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..._errors import DiscoveryUnavailable
from ._merge import SERVICE_NAME_LABEL
from ._status import PageTooLarge, Resource, http_error

_CHUNK = 256 * 1024  # bytes read at a time from a list answer


@asynccontextmanager
async def collection(
    client: Any, namespace: str, service: str, *, legacy: bool, verb: str, resource: Resource, **params: Any
) -> AsyncIterator[Any]:
    """GET the Service's EndpointSlices (or its Endpoints object); yields the 2xx aiohttp response.

    A non-2xx answer raises its typed error. The connection is released after a complete read
    and closed on any error, so a half-read stream never goes back into the pool.
    """
    from kubernetes_asyncio import client as k8s

    call: Any
    if legacy:
        call = k8s.CoreV1Api(client).list_namespaced_endpoints
        params["field_selector"] = f"metadata.name={service}"
    else:
        call = k8s.DiscoveryV1Api(client).list_namespaced_endpoint_slice
        params["label_selector"] = f"{SERVICE_NAME_LABEL}={service}"
    resp: Any = await call(namespace, _preload_content=False, **params)
    try:
        if not 200 <= resp.status < 300:
            body = await resp.read()
            raise http_error(
                resp.status,
                body,
                verb=verb,
                resource=resource,
                namespace=namespace,
                retry_after=resp.headers.get("Retry-After"),
            )
        yield resp
    except BaseException:
        resp.close()
        raise
    else:
        resp.release()


async def read_limited(resp: Any, limit: int, what: str) -> bytes:
    """The whole body of ``resp``, or :class:`PageTooLarge` as soon as it passes ``limit`` bytes.

    Counted after decompression, so a small gzip body cannot expand past the cap either. A
    declared Content-Length over the cap fails before any byte is read.
    """
    length = resp.content_length
    if length is not None and length > limit:
        raise PageTooLarge(f"{what}: the answer is {length:,} bytes, over the cap of {limit:,}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PageTooLarge(f"{what}: the answer passed the cap of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` as a JSON object, else :class:`DiscoveryUnavailable` (a proxy's HTML page, a cut body)."""
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise DiscoveryUnavailable(f"{what} answered with a body that is not a JSON object: {body[:100]!r}")
    return value
