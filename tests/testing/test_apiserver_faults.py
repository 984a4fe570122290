"""FakeApiServer scripted faults: each one observed by a real client on the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from helpers_aiohttp import DROPS_TO_FAIL, RETRIES_AFTER_DROP
from kube_balance import ConfigurationError
from kube_balance.testing import FakeApiServer, Fault, endpoint_slice

SLICES = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(bookmark_interval=0.05) as server:
        server.apply(endpoint_slice("web", "shop", name="a", endpoints=["10.0.0.1"]))
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # force_close: one connection per request, so aiohttp never retries on a stale keep-alive
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


def auth(api: FakeApiServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token}"}


async def watch(api: FakeApiServer, session: aiohttp.ClientSession, **params: str) -> aiohttp.ClientResponse:
    query = {"watch": "1", "resourceVersion": "0", "timeoutSeconds": "2", **params}
    return await session.get(api.url + SLICES, params=query, headers=auth(api))


async def read_all(resp: aiohttp.ClientResponse) -> tuple[bytes, BaseException | None]:
    """Everything the body delivered, and the error that ended it (None for a clean end)."""
    data = b""
    try:
        while chunk := await resp.content.read(65536):
            data += chunk
    except aiohttp.ClientPayloadError as exc:
        return data, exc
    return data, None


def lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


async def test_drop_before_headers(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """The connection closes before any response byte; the request log shows status 0 for each drop."""
    api.inject(Fault.drop_before_headers(count=DROPS_TO_FAIL))  # aiohttp >= 3.10 retries a GET once
    async with asyncio.timeout(5):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.get(api.url + SLICES, headers=auth(api))
        async with session.get(api.url + SLICES, headers=auth(api)) as resp:  # the fault is used up
            assert resp.status == 200
    expected = [(0, "drop_before_headers")] * DROPS_TO_FAIL + [(200, None)]
    assert [(r.status, r.fault) for r in api.requests] == expected


@pytest.mark.skipif(not RETRIES_AFTER_DROP, reason="aiohttp < 3.10 does not retry a dropped GET")
async def test_single_drop_is_retried_by_aiohttp(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """aiohttp >= 3.10 (so kubernetes_asyncio) silently retries a GET dropped once before its headers."""
    api.inject(Fault.drop_before_headers())
    async with asyncio.timeout(5), session.get(api.url + SLICES, headers=auth(api)) as resp:
        assert resp.status == 200
    assert [r.status for r in api.requests] == [0, 200]


async def test_drop_before_headers_with_kubernetes_asyncio(api: FakeApiServer) -> None:
    """Drops past aiohttp's own retry reach the kubernetes_asyncio caller as a connection error."""
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        discovery = client.DiscoveryV1Api(api_client)
        await discovery.list_namespaced_endpoint_slice("shop", _preload_content=False)  # warm a keep-alive
        api.inject(Fault.drop_before_headers(count=DROPS_TO_FAIL))
        with pytest.raises(aiohttp.ClientConnectionError):
            await discovery.list_namespaced_endpoint_slice("shop", _preload_content=False)
    assert [r.status for r in api.requests] == [200] + [0] * DROPS_TO_FAIL


async def test_drop_mid_stream(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """After N complete lines the connection is cut without a final chunk: a payload error."""
    api.inject(Fault.drop_mid_stream(after_events=1))
    async with asyncio.timeout(5):
        resp = await watch(api, session)
        async with resp:
            data, error = await read_all(resp)
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert [e["type"] for e in lines(data)] == ["ADDED"]


async def test_drop_mid_line(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """After N lines, half of the next event's JSON is sent, then the connection is cut."""
    api.inject(Fault.drop_mid_line(after_events=1))
    async with asyncio.timeout(5):
        resp = await watch(api, session)
        async with resp:
            first = await resp.content.readline()
            api.apply(endpoint_slice("web", "shop", name="b", endpoints=["10.0.0.2"]))
            rest, error = await read_all(resp)
    assert json.loads(first)["type"] == "ADDED"
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert rest.startswith(b'{"type":"ADDED"')
    assert not rest.endswith(b"\n")
    with pytest.raises(json.JSONDecodeError):
        json.loads(rest)


async def test_end_stream_early(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """end_stream closes the watch cleanly after N lines, long before timeoutSeconds."""
    api.inject(Fault.end_stream(after_events=1))
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        start = loop.time()
        resp = await watch(api, session, timeoutSeconds="30")
        async with resp:
            data, error = await read_all(resp)
    assert error is None
    assert [e["type"] for e in lines(data)] == ["ADDED"]
    assert loop.time() - start < 1.0


async def test_stall_then_continue(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """stall(S) sends headers, then nothing for S seconds, then the stream goes on."""
    api.inject(Fault.stall(0.3, on="watch"))
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        resp = await watch(api, session)
        async with resp:
            headers_at = loop.time()
            assert resp.status == 200
            first = await resp.content.readline()
            first_at = loop.time()
    assert json.loads(first)["type"] == "ADDED"
    assert first_at - headers_at >= 0.25


async def test_stall_a_list(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """A stalled list sends its headers at once and its body only after the stall."""
    api.inject(Fault.stall(0.3, on="list"))
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5), session.get(api.url + SLICES, headers=auth(api)) as resp:
        headers_at = loop.time()
        body = await resp.json()
        body_at = loop.time()
    assert body["kind"] == "EndpointSliceList"
    assert body_at - headers_at >= 0.25


async def test_stall_until_server_stops(session: aiohttp.ClientSession) -> None:
    """stall() without seconds holds the stream until the server stops, which drops it."""

    async def stop_soon(api: FakeApiServer) -> None:
        await asyncio.sleep(0.2)
        await api.stop()

    async with asyncio.timeout(5), FakeApiServer() as api:
        api.inject(Fault.stall())
        resp = await watch(api, session, timeoutSeconds="60")
        stopper = asyncio.create_task(stop_soon(api))
        async with resp:
            data, error = await read_all(resp)
        await stopper
    assert data == b""
    assert isinstance(error, aiohttp.ClientPayloadError)


async def test_gone_in_stream_after_events(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """gone_in_stream sends N events, then an ERROR 410 Expired Status, then ends cleanly."""
    api.inject(Fault.gone_in_stream(after_events=1))
    async with asyncio.timeout(5):
        resp = await watch(api, session, timeoutSeconds="30")
        async with resp:
            data, error = await read_all(resp)
    events = lines(data)
    assert error is None
    assert [e["type"] for e in events] == ["ADDED", "ERROR"]
    assert (events[1]["object"]["kind"], events[1]["object"]["code"], events[1]["object"]["reason"]) == (
        "Status",
        410,
        "Expired",
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [(500, "InternalError"), (503, "ServiceUnavailable"), (504, "Timeout"), (410, "Expired")],
)
async def test_http_errors_have_status_bodies(api: FakeApiServer, status: int, reason: str) -> None:
    """Injected HTTP errors carry a Status JSON body; kubernetes_asyncio raises ApiException."""
    api.inject(Fault.http_error(status))
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        with pytest.raises(ApiException) as err:
            await client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice("shop")
    body = json.loads(err.value.body)
    assert err.value.status == status
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert (body["code"], body["reason"]) == (status, reason)
    assert body["message"]


async def test_too_many_requests_retry_after(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """429 comes with a Retry-After header and details.retryAfterSeconds."""
    api.inject(Fault.too_many_requests(retry_after=3))
    async with asyncio.timeout(5), session.get(api.url + SLICES, headers=auth(api)) as resp:
        body = await resp.json()
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "3"
    assert (body["reason"], body["details"]["retryAfterSeconds"]) == ("TooManyRequests", 3)


async def test_non_json_error_body(api: FakeApiServer) -> None:
    """raw_response sends a proxy's HTML 502; the client sees a non-JSON body."""
    api.inject(Fault.raw_response())
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        with pytest.raises(ApiException) as err:
            await client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice("shop")
    assert err.value.status == 502
    assert err.value.headers["Content-Type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in err.value.body
    assert api.requests[-1].status == 502


@pytest.mark.parametrize(
    "bad_line", ["this is not json", '{"object": {"kind": "EndpointSlice"}}', '{"type": "ADDED"}']
)
async def test_malformed_line_in_stream(
    api: FakeApiServer, session: aiohttp.ClientSession, bad_line: str
) -> None:
    """malformed_line inserts the given line after N events; the stream then goes on normally."""
    api.inject(Fault.malformed_line(bad_line, after_events=1))
    async with asyncio.timeout(5):
        resp = await watch(api, session)
        async with resp:
            received = [await resp.content.readline() for _ in range(2)]
            api.apply(endpoint_slice("web", "shop", name="b"))
            after = await resp.content.readline()
    assert json.loads(received[0])["type"] == "ADDED"
    assert received[1] == bad_line.encode() + b"\n"
    assert json.loads(after)["object"]["metadata"]["name"] == "b"


async def test_malformed_list_body(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """malformed_line on a list replaces its 200 body with the given text."""
    api.inject(Fault.malformed_line("<not json>", on="list"))
    async with asyncio.timeout(5), session.get(api.url + SLICES, headers=auth(api)) as resp:
        body = await resp.read()
    assert (resp.status, body) == (200, b"<not json>")


async def test_cut_list_body(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """A stream fault on a list cuts its JSON body in half and drops the connection."""
    api.inject(Fault.drop_mid_stream(on="list"))
    async with asyncio.timeout(5), session.get(api.url + SLICES, headers=auth(api)) as resp:
        data, error = await read_all(resp)
    assert isinstance(error, aiohttp.ClientPayloadError)
    with pytest.raises(json.JSONDecodeError):
        json.loads(data)


async def test_fault_matching_on_path_and_count(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """A fault hits only matching requests (kind, path), `count` times; discovery does not use it up."""
    api.inject(Fault.http_error(503, on="watch", count=2))
    api.inject(Fault.http_error(500, path="/services"))
    statuses = []
    async with asyncio.timeout(5):
        for path, params in [
            ("/apis/discovery.k8s.io/v1", {}),
            (SLICES, {}),
            (SLICES, {"watch": "1", "timeoutSeconds": "1"}),
            ("/api/v1/namespaces/shop/services/web", {}),
            (SLICES, {"watch": "1", "timeoutSeconds": "1"}),
            (SLICES, {"watch": "1", "timeoutSeconds": "1"}),
        ]:
            async with session.get(api.url + path, params=params, headers=auth(api)) as resp:
                statuses.append(resp.status)
                await resp.read()
    assert statuses == [200, 200, 503, 500, 503, 200]
    assert api.pending_faults == []


async def test_restart_fault(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """Fault.restart() drops the request and brings the server back on the same port with the same data."""
    port, rv = api.port, api.resource_version
    api.inject(Fault.restart())
    async with asyncio.timeout(5):
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(api.url + SLICES, headers=auth(api))
        body: dict[str, Any] = {}
        for _ in range(50):  # the restart runs in the background; wait for it to come back
            try:
                async with session.get(api.url + SLICES, headers=auth(api)) as resp:
                    body = await resp.json()
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
    assert api.port == port
    assert body["metadata"]["resourceVersion"] == rv
    assert [i["metadata"]["name"] for i in body["items"]] == ["a"]


async def test_restart_drops_watches_and_keeps_data(
    api: FakeApiServer, session: aiohttp.ClientSession
) -> None:
    """restart() cuts live watches (payload error); a re-watch from the last RV resumes without loss."""
    async with asyncio.timeout(5):
        resp = await watch(api, session, timeoutSeconds="30")
        async with resp:
            first = json.loads(await resp.content.readline())
            await api.restart()
            _, error = await read_all(resp)
        api.apply(endpoint_slice("web", "shop", name="b"))
        resp = await watch(api, session, resourceVersion=first["object"]["metadata"]["resourceVersion"])
        async with resp:
            resumed = json.loads(await resp.content.readline())
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert (resumed["type"], resumed["object"]["metadata"]["name"]) == ("ADDED", "b")


def test_fault_validation() -> None:
    """Bad fault parameters are ConfigurationErrors."""
    with pytest.raises(ConfigurationError):
        Fault.http_error(200)
    with pytest.raises(ConfigurationError):
        Fault.drop_mid_stream(count=0)
    with pytest.raises(ConfigurationError):
        Fault.end_stream(on="post")  # type: ignore[arg-type]
