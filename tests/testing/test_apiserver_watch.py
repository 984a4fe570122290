"""FakeApiServer watch streams: wire format, resume, 410, selector transitions, bookmarks, timeouts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from kube_balance.testing import FakeApiServer, Fault, core_endpoints, endpoint_slice, service

SLICES = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(bookmark_interval=0.05) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def open_watch(
    api: FakeApiServer, session: aiohttp.ClientSession, **params: str
) -> aiohttp.ClientResponse:
    """Start a raw watch on the shop slices (the caller closes the response)."""
    query = {"watch": "1", **params}
    headers = {"Authorization": f"Bearer {api.token}"}
    return await session.get(api.url + SLICES, params=query, headers=headers)


async def next_event(resp: aiohttp.ClientResponse, *, skip_bookmarks: bool = True) -> dict[str, Any]:
    """The next JSON line of a watch stream."""
    while True:
        line = await resp.content.readline()
        assert line, "stream ended"
        event: dict[str, Any] = json.loads(line)
        if not (skip_bookmarks and event["type"] == "BOOKMARK"):
            return event


async def rest_of_stream(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    """Read until the stream ends cleanly; returns the non-bookmark events."""
    events = [json.loads(line) async for line in resp.content]
    return [e for e in events if e["type"] != "BOOKMARK"]


async def test_watch_wire_format(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """A watch is chunked application/json, one {type, object} line per event, objects with kind."""
    rv = api.resource_version
    async with asyncio.timeout(5):
        resp = await open_watch(api, session, resourceVersion=rv)
        async with resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            assert resp.headers["Transfer-Encoding"] == "chunked"
            api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
            raw = await resp.content.readline()
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 1
    event = json.loads(raw)
    assert set(event) == {"type", "object"}
    assert event["type"] == "ADDED"
    assert (event["object"]["kind"], event["object"]["apiVersion"]) == (
        "EndpointSlice",
        "discovery.k8s.io/v1",
    )
    assert event["object"]["metadata"]["resourceVersion"] == api.resource_version


async def test_watch_resumes_from_rv_without_loss(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """A watch from RV x replays exactly the events after x, then continues live."""
    first = api.apply(endpoint_slice("web", "shop", name="a"))
    api.apply(endpoint_slice("web", "shop", name="b", endpoints=["10.0.0.2"]))
    api.apply(endpoint_slice("web", "shop", name="a", endpoints=["10.0.0.9"]))
    last_b = api.delete("EndpointSlice", "shop", "b")
    async with asyncio.timeout(5):
        resp = await open_watch(api, session, resourceVersion=first["metadata"]["resourceVersion"])
        async with resp:
            replay = [await next_event(resp) for _ in range(3)]
            api.apply(endpoint_slice("web", "shop", name="c"))
            live = await next_event(resp)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in replay] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    deleted = replay[2]["object"]
    assert deleted == last_b  # the last state, stamped with the delete's RV
    assert int(deleted["metadata"]["resourceVersion"]) > int(
        replay[1]["object"]["metadata"]["resourceVersion"]
    )
    assert deleted["endpoints"][0]["addresses"] == ["10.0.0.2"]  # DELETED carries the last state
    assert (live["type"], live["object"]["metadata"]["name"]) == ("ADDED", "c")


@pytest.mark.parametrize("rv", [None, "0"])
async def test_watch_without_rv_starts_with_current_state(
    api: FakeApiServer, session: aiohttp.ClientSession, rv: str | None
) -> None:
    """No resourceVersion or "0": synthetic ADDED for every existing object first."""
    api.apply(endpoint_slice("web", "shop", name="a"))
    api.apply(endpoint_slice("web", "shop", name="b"))
    params = {} if rv is None else {"resourceVersion": rv}
    async with asyncio.timeout(5):
        resp = await open_watch(api, session, **params)
        async with resp:
            events = [await next_event(resp) for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a"), ("ADDED", "b")]


async def test_too_old_rv_is_in_stream_410(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """After compaction an old RV gets HTTP 200 and one ERROR event with a 410 Expired Status."""
    old = api.resource_version
    api.apply(endpoint_slice("web", "shop"))
    api.compact()
    async with asyncio.timeout(5):
        resp = await open_watch(api, session, resourceVersion=old)
        async with resp:
            assert resp.status == 200
            events = [json.loads(line) async for line in resp.content]
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["apiVersion"], status["status"]) == ("Status", "v1", "Failure")
    assert (status["reason"], status["code"]) == ("Expired", 410)
    assert status["message"] == f"too old resource version: {old} ({api.resource_version})"


async def test_history_limit_expires_old_rvs(session: aiohttp.ClientSession) -> None:
    """Only history_limit events are kept: an RV older than them is 410, a newer one resumes."""
    async with asyncio.timeout(5), FakeApiServer(history_limit=3) as api:
        rvs = [
            api.apply(endpoint_slice("web", "shop", name=f"s{i}"))["metadata"]["resourceVersion"]
            for i in range(5)
        ]
        resp_old = await open_watch(api, session, resourceVersion=rvs[0], timeoutSeconds="1")
        async with resp_old:
            old_event = await next_event(resp_old)
        resp_ok = await open_watch(api, session, resourceVersion=rvs[1], timeoutSeconds="1")
        async with resp_ok:
            ok_events = [await next_event(resp_ok) for _ in range(3)]
    assert old_event["type"] == "ERROR"
    assert [e["object"]["metadata"]["name"] for e in ok_events] == ["s2", "s3", "s4"]


async def test_http_410_variant_is_a_fault(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """Fault.gone() answers the watch with HTTP 410 and the Status body instead."""
    api.inject(Fault.gone())
    async with asyncio.timeout(5):
        resp = await open_watch(api, session, resourceVersion=api.resource_version)
        async with resp:
            body = await resp.json()
    assert resp.status == 410
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Expired", 410)


async def test_future_rv_is_504_too_large(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """A resourceVersion ahead of the server gets 504 "Too large resource version"."""
    ahead = str(int(api.resource_version) + 100)
    async with asyncio.timeout(5):
        resp = await open_watch(api, session, resourceVersion=ahead)
        async with resp:
            body = await resp.json()
    assert resp.status == 504
    assert body["reason"] == "Timeout"
    assert body["message"].startswith("Too large resource version")


async def test_label_selector_transitions(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """With a selector, an object that starts matching is ADDED and one that stops is DELETED (prior state)."""
    rv = api.resource_version
    async with asyncio.timeout(5):
        resp = await open_watch(
            api, session, resourceVersion=rv, labelSelector="kubernetes.io/service-name=web"
        )
        async with resp:
            api.apply(
                endpoint_slice("api", "shop", name="s1", endpoints=["10.0.0.1"])
            )  # not matching: nothing
            moved = api.apply(
                endpoint_slice("web", "shop", name="s1", endpoints=["10.0.0.1"])
            )  # starts matching
            api.apply(endpoint_slice("web", "shop", name="s1", endpoints=["10.0.0.2"]))  # still matching
            gone = api.apply(
                endpoint_slice("api", "shop", name="s1", endpoints=["10.0.0.3"])
            )  # stops matching
            events = [await next_event(resp) for _ in range(3)]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["resourceVersion"] == moved["metadata"]["resourceVersion"]
    deleted = events[2]["object"]
    assert deleted["metadata"]["labels"]["kubernetes.io/service-name"] == "web"  # the last matching state
    assert deleted["endpoints"][0]["addresses"] == ["10.0.0.2"]
    assert deleted["metadata"]["resourceVersion"] == gone["metadata"]["resourceVersion"]  # at the event's RV


async def test_namespace_scoping(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """A namespaced watch sees nothing from other namespaces."""
    async with asyncio.timeout(5):
        resp = await open_watch(api, session, resourceVersion=api.resource_version)
        async with resp:
            api.apply(endpoint_slice("web", "other", name="x"))
            api.apply(endpoint_slice("web", "shop", name="y"))
            event = await next_event(resp)
    assert event["object"]["metadata"]["name"] == "y"


async def test_periodic_bookmarks(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """allowWatchBookmarks gives BOOKMARKs carrying only kind, apiVersion and the current RV."""
    async with asyncio.timeout(5):
        resp = await open_watch(
            api, session, resourceVersion=api.resource_version, allowWatchBookmarks="true"
        )
        async with resp:
            api.apply(endpoint_slice("other-svc", "elsewhere"))  # a foreign write still advances bookmarks
            bookmarks = [await next_event(resp, skip_bookmarks=False)]
            while bookmarks[-1]["object"]["metadata"]["resourceVersion"] != api.resource_version:
                bookmarks.append(await next_event(resp, skip_bookmarks=False))
    assert {b["type"] for b in bookmarks} == {"BOOKMARK"}
    assert bookmarks[-1]["object"] == {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"resourceVersion": api.resource_version},
    }


async def test_watch_one_named_object(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """A watch on .../endpointslices/<name> sees only that object."""
    headers = {"Authorization": f"Bearer {api.token}"}
    params = {"watch": "true", "resourceVersion": api.resource_version}
    async with (
        asyncio.timeout(5),
        session.get(api.url + SLICES + "/b", params=params, headers=headers) as resp,
    ):
        api.apply(endpoint_slice("web", "shop", name="a"))
        api.apply(endpoint_slice("web", "shop", name="b"))
        event = await next_event(resp)
    assert event["object"]["metadata"]["name"] == "b"


async def test_no_bookmarks_unless_asked(session: aiohttp.ClientSession) -> None:
    """Without allowWatchBookmarks no BOOKMARK is sent, not even by send_bookmark()."""
    async with asyncio.timeout(5), FakeApiServer(bookmark_interval=0.01) as api:
        rv = api.resource_version
        resp = await open_watch(api, session, resourceVersion=rv, timeoutSeconds="1")
        control = await open_watch(
            api, session, resourceVersion=rv, allowWatchBookmarks="1", timeoutSeconds="1"
        )
        async with resp, control:
            api.send_bookmark()
            # The control watch receiving bookmarks shows the fake had its turns to send them.
            for _ in range(2):
                assert (await next_event(control, skip_bookmarks=False))["type"] == "BOOKMARK"
            api.apply(endpoint_slice("web", "shop"))
            first = await next_event(resp, skip_bookmarks=False)
    assert first["type"] == "ADDED"


async def test_send_bookmark_on_demand(session: aiohttp.ClientSession) -> None:
    """send_bookmark() emits a BOOKMARK at the current RV at once, after the queued events."""
    async with asyncio.timeout(5), FakeApiServer(bookmark_interval=600) as api:
        resp = await open_watch(api, session, resourceVersion=api.resource_version, allowWatchBookmarks="1")
        async with resp:
            api.apply(endpoint_slice("web", "shop"))
            api.send_bookmark()
            events = [await next_event(resp, skip_bookmarks=False) for _ in range(2)]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["resourceVersion"] == api.resource_version


async def test_timeout_seconds_ends_stream_cleanly(
    api: FakeApiServer, session: aiohttp.ClientSession
) -> None:
    """timeoutSeconds ends the stream with a proper final chunk after about that long."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        start = loop.time()
        resp = await open_watch(api, session, resourceVersion=api.resource_version, timeoutSeconds="1")
        async with resp:
            api.apply(endpoint_slice("web", "shop"))
            events = await rest_of_stream(resp)  # raises ClientPayloadError if the end were not clean
        elapsed = loop.time() - start
    assert [e["type"] for e in events] == ["ADDED"]
    assert 0.9 <= elapsed < 4.0


@pytest.mark.parametrize(
    ("value", "watches"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("t", True),
        ("", True),
        ("0", False),
        ("false", False),
        ("False", False),
    ],
)
async def test_boolean_query_parsing(
    api: FakeApiServer, session: aiohttp.ClientSession, value: str, watches: bool
) -> None:
    """watch= is parsed like apimachinery: only "0" and "false" (any case) are false."""
    headers = {"Authorization": f"Bearer {api.token}"}
    async with asyncio.timeout(5):
        params = {"watch": value, "timeoutSeconds": "1", "resourceVersion": api.resource_version}
        async with session.get(api.url + SLICES, params=params, headers=headers) as resp:
            if watches:
                api.apply(endpoint_slice("web", "shop"))
                event = await next_event(resp)
                assert event["type"] == "ADDED"
            else:
                body = await resp.json()
                assert body["kind"] == "EndpointSliceList"
    assert api.requests[-1].verb == ("watch" if watches else "list")


async def test_kubernetes_asyncio_watch_stream(api: FakeApiServer) -> None:
    """The real client's watch=True request with _preload_content=False streams the events."""
    api.apply(endpoint_slice("web", "shop", name="a"))
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        discovery = client.DiscoveryV1Api(api_client)
        # Raw, as kube-balance reads it: kubernetes_asyncio's models (30 to 32 at least) reject the
        # ``"endpoints": null`` that the API server (and this fake) sends for an empty slice.
        listed = await discovery.list_namespaced_endpoint_slice("shop", _preload_content=False)
        list_rv = json.loads(await listed.read())["metadata"]["resourceVersion"]
        resp = await discovery.list_namespaced_endpoint_slice(
            "shop",
            watch=True,
            resource_version=list_rv,
            allow_watch_bookmarks=True,
            timeout_seconds=1,
            label_selector="kubernetes.io/service-name=web",
            _preload_content=False,
        )
        async with resp:
            api.apply(endpoint_slice("web", "shop", name="a", endpoints=["10.0.0.7"]))
            events = await rest_of_stream(resp)
    assert [(e["type"], e["object"]["endpoints"][0]["addresses"]) for e in events] == [
        ("MODIFIED", ["10.0.0.7"])
    ]
    watch_record = api.requests[-1]
    assert watch_record.verb == "watch"
    assert watch_record.query["watch"] == "True"  # what kubernetes_asyncio sends for a bool
    assert watch_record.query["resourceVersion"] == list_rv


async def test_watch_core_endpoints_and_services(api: FakeApiServer, session: aiohttp.ClientSession) -> None:
    """core/v1 Endpoints and Services watch like slices, each kind in its own stream."""
    headers = {"Authorization": f"Bearer {api.token}"}
    async with asyncio.timeout(5):
        params = {"watch": "1", "resourceVersion": api.resource_version}
        async with session.get(
            api.url + "/api/v1/namespaces/shop/endpoints", params=params, headers=headers
        ) as resp:
            api.apply(service("web", "shop"))
            api.apply(core_endpoints("web", "shop", addresses=["10.0.0.1"]))
            event = await next_event(resp)
    assert (event["type"], event["object"]["kind"], event["object"]["apiVersion"]) == (
        "ADDED",
        "Endpoints",
        "v1",
    )
