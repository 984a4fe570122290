"""FakeApiServer lists, gets and discovery, through the real kubernetes_asyncio client and raw HTTP."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kube_balance.testing import FakeApiServer, core_endpoints, endpoint_slice, service, slice_endpoint

SLICES = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(bookmark_interval=0.05) as server:
        yield server


async def raw_get(api: FakeApiServer, path: str, **params: str) -> tuple[int, Any]:
    """GET with the server's token; returns (status, parsed JSON body)."""
    headers = {"Authorization": f"Bearer {api.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(api.url + path, params=params, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def slices(n: int, service_name: str = "web", namespace: str = "shop") -> list[dict[str, Any]]:
    return [
        endpoint_slice(service_name, namespace, name=f"{service_name}-{i:02d}", endpoints=[f"10.0.0.{i}"])
        for i in range(n)
    ]


async def test_list_shape_matches_the_real_api(api: FakeApiServer) -> None:
    """A list is an EndpointSliceList with a string RV; items carry no kind/apiVersion."""
    async with asyncio.timeout(5):
        for obj in slices(2):
            api.apply(obj)
        status, body = await raw_get(api, SLICES)
    assert status == 200
    assert body["kind"] == "EndpointSliceList"
    assert body["apiVersion"] == "discovery.k8s.io/v1"
    assert body["metadata"]["resourceVersion"] == api.resource_version
    assert isinstance(body["metadata"]["resourceVersion"], str)
    assert [i["metadata"]["name"] for i in body["items"]] == ["web-00", "web-01"]
    assert all("kind" not in i and "apiVersion" not in i for i in body["items"])
    item = body["items"][0]
    assert isinstance(item["metadata"]["resourceVersion"], str)
    assert item["metadata"]["uid"]
    assert item["metadata"]["creationTimestamp"].endswith("Z")


async def test_resource_versions_are_strings_with_gaps(api: FakeApiServer) -> None:
    """Every write takes a new RV from one global counter that skips values."""
    rvs = [int(api.apply(obj)["metadata"]["resourceVersion"]) for obj in slices(30)]
    rvs.append(int(api.apply(service("web", "shop"))["metadata"]["resourceVersion"]))
    steps = [b - a for a, b in itertools.pairwise(rvs)]
    assert all(1 <= s <= 7 for s in steps)
    assert any(s > 1 for s in steps), "no gap in 30 writes"
    assert api.resource_version == str(rvs[-1])


async def test_same_seed_same_resource_versions() -> None:
    """The RV sequence is deterministic for a seed and differs between seeds."""

    def run(seed: int) -> list[str]:
        server = FakeApiServer(seed=seed)
        return [server.apply(obj)["metadata"]["resourceVersion"] for obj in slices(5)]

    assert run(1) == run(1)
    assert run(1) != run(2)


async def test_apply_noop_update_keeps_resource_version(api: FakeApiServer) -> None:
    """Re-applying an unchanged object is a no-op (no new RV), a changed one bumps RV and generation."""
    first = api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    again = api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    changed = api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.2"]))
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert int(changed["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert changed["metadata"]["uid"] == first["metadata"]["uid"]
    assert changed["metadata"]["generation"] == 2


async def test_list_with_kubernetes_asyncio(api: FakeApiServer) -> None:
    """The real client deserializes the list, slices, conditions and nil conditions."""
    api.apply(
        endpoint_slice(
            "web",
            "shop",
            endpoints=[
                slice_endpoint("10.0.0.1", zone="a", hints=["a"]),
                slice_endpoint("10.0.0.2", ready=None, serving=None, terminating=None),
            ],
        )
    )
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        result = await client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice("shop")
    assert result.metadata.resource_version == api.resource_version
    (item,) = result.items
    assert item.metadata.labels["kubernetes.io/service-name"] == "web"
    first, second = item.endpoints
    assert first.conditions.ready is True
    assert first.hints.for_zones[0].name == "a"
    assert second.conditions.ready is None
    assert item.ports[0].port == 8080


async def test_pagination_is_a_consistent_snapshot(api: FakeApiServer) -> None:
    """limit/continue pages through the list as of the first page's RV, even while writes go on."""
    for obj in slices(5):
        api.apply(obj)
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        discovery = client.DiscoveryV1Api(api_client)
        page1 = await discovery.list_namespaced_endpoint_slice("shop", limit=2)
        api.delete("EndpointSlice", "shop", "web-03")  # after the snapshot: still listed
        api.apply(endpoint_slice("web", "shop", name="web-99", endpoints=["10.9.9.9"]))  # not listed
        page2 = await discovery.list_namespaced_endpoint_slice(
            "shop", limit=2, _continue=page1.metadata._continue
        )
        page3 = await discovery.list_namespaced_endpoint_slice(
            "shop", limit=2, _continue=page2.metadata._continue
        )
    assert page1.metadata.remaining_item_count == 3
    names = [i.metadata.name for p in (page1, page2, page3) for i in p.items]
    assert names == ["web-00", "web-01", "web-02", "web-03", "web-04"]
    assert page3.metadata._continue is None
    assert page1.metadata.resource_version == page3.metadata.resource_version != api.resource_version


async def test_expired_continue_token_is_410(api: FakeApiServer) -> None:
    """A continue token from before a compaction gets 410 Expired with a fresh continue token."""
    for obj in slices(3):
        api.apply(obj)
    async with asyncio.timeout(5):
        _, page1 = await raw_get(api, SLICES, limit="1")
        api.apply(endpoint_slice("web", "shop", name="web-late"))
        api.compact()
        status, body = await raw_get(api, SLICES, limit="1", **{"continue": page1["metadata"]["continue"]})
    assert status == 410
    assert body["kind"] == "Status"
    assert body["reason"] == "Expired"
    assert body["code"] == 410
    assert "continue parameter is too old" in body["message"]
    assert body["metadata"]["continue"]


async def test_expired_continue_through_kubernetes_asyncio(api: FakeApiServer) -> None:
    """kubernetes_asyncio surfaces the expired continue as ApiException(410)."""
    for obj in slices(3):
        api.apply(obj)
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        discovery = client.DiscoveryV1Api(api_client)
        page1 = await discovery.list_namespaced_endpoint_slice("shop", limit=1)
        api.apply(endpoint_slice("web", "shop", name="web-late"))
        api.compact()
        with pytest.raises(ApiException) as err:
            await discovery.list_namespaced_endpoint_slice(
                "shop", limit=1, _continue=page1.metadata._continue
            )
    assert err.value.status == 410


async def test_list_at_exact_resource_version(api: FakeApiServer) -> None:
    """resourceVersionMatch=Exact lists the state at that RV; NotOlderThan and unset list the newest."""
    first = api.apply(endpoint_slice("web", "shop", name="a"))
    api.apply(endpoint_slice("web", "shop", name="b"))
    rv = first["metadata"]["resourceVersion"]
    async with asyncio.timeout(5):
        _, exact = await raw_get(api, SLICES, resourceVersion=rv, resourceVersionMatch="Exact")
        _, newest = await raw_get(api, SLICES, resourceVersion=rv, resourceVersionMatch="NotOlderThan")
        _, any_rv = await raw_get(api, SLICES, resourceVersion="0")
    assert (exact["metadata"]["resourceVersion"], [i["metadata"]["name"] for i in exact["items"]]) == (
        rv,
        ["a"],
    )
    assert (
        newest["metadata"]["resourceVersion"] == any_rv["metadata"]["resourceVersion"] == api.resource_version
    )
    assert len(newest["items"]) == 2


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=front", ["a"]),
        ("tier==front", ["a"]),
        ("tier!=front", ["b", "c"]),  # != matches objects without the key
        ("tier in (front, back)", ["a", "b"]),
        ("tier notin (front)", ["b", "c"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c"]),
        ("tier,env=prod", ["a"]),
        ("kubernetes.io/service-name=web,tier in (back)", ["b"]),
    ],
)
async def test_label_selectors(api: FakeApiServer, selector: str, expected: list[str]) -> None:
    """labelSelector supports =, ==, !=, in, notin, exists and !exists as the apiserver does."""
    api.apply(endpoint_slice("web", "shop", name="a", labels={"tier": "front", "env": "prod"}))
    api.apply(endpoint_slice("web", "shop", name="b", labels={"tier": "back"}))
    api.apply(endpoint_slice("web", "shop", name="c"))
    async with asyncio.timeout(5):
        status, body = await raw_get(api, SLICES, labelSelector=selector)
    assert status == 200
    assert [i["metadata"]["name"] for i in body["items"]] == expected
    assert "remainingItemCount" not in body["metadata"]


async def test_field_selector_and_all_namespaces(api: FakeApiServer) -> None:
    """fieldSelector filters on metadata.name/namespace; the cluster-wide path lists every namespace."""
    api.apply(endpoint_slice("web", "shop", name="a"))
    api.apply(endpoint_slice("web", "other", name="a"))
    api.apply(endpoint_slice("web", "shop", name="b"))
    async with asyncio.timeout(5):
        _, by_name = await raw_get(api, SLICES, fieldSelector="metadata.name=a")
        _, everywhere = await raw_get(
            api, "/apis/discovery.k8s.io/v1/endpointslices", fieldSelector="metadata.name==a"
        )
        _, not_shop = await raw_get(
            api, "/apis/discovery.k8s.io/v1/endpointslices", fieldSelector="metadata.namespace!=shop"
        )
    assert [i["metadata"]["name"] for i in by_name["items"]] == ["a"]
    assert [i["metadata"]["namespace"] for i in everywhere["items"]] == ["other", "shop"]
    assert [i["metadata"]["namespace"] for i in not_shop["items"]] == ["other"]


@pytest.mark.parametrize(
    "params",
    [
        {"labelSelector": "tier in front"},
        {"fieldSelector": "spec.foo=bar"},
        {"limit": "ten"},
        {"continue": "%%%"},
    ],
)
async def test_bad_query_is_400_status(api: FakeApiServer, params: dict[str, str]) -> None:
    """Unparsable selectors, limits and continue tokens get 400 BadRequest Status bodies."""
    async with asyncio.timeout(5):
        status, body = await raw_get(api, SLICES, **params)
    assert status == 400
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "BadRequest", 400)


async def test_get_named_objects_and_404(api: FakeApiServer) -> None:
    """Named GETs return the object with kind/apiVersion; a missing one is a NotFound Status."""
    api.apply(service("web", "shop"))
    api.apply(core_endpoints("web", "shop", addresses=["10.0.0.1"]))
    api.apply(endpoint_slice("web", "shop", name="web-x"))
    async with asyncio.timeout(5):
        _, svc = await raw_get(api, "/api/v1/namespaces/shop/services/web")
        _, eps = await raw_get(api, "/api/v1/namespaces/shop/endpoints/web")
        _, es = await raw_get(api, SLICES + "/web-x")
        status, missing = await raw_get(api, SLICES + "/nope")
        _, eps_list = await raw_get(api, "/api/v1/namespaces/shop/endpoints")
    assert (svc["kind"], svc["apiVersion"], svc["spec"]["ports"][0]["targetPort"]) == ("Service", "v1", 8080)
    assert eps["subsets"][0]["addresses"] == [{"ip": "10.0.0.1"}]
    assert (es["kind"], es["apiVersion"]) == ("EndpointSlice", "discovery.k8s.io/v1")
    assert status == 404
    assert missing["reason"] == "NotFound"
    assert missing["message"] == 'endpointslices.discovery.k8s.io "nope" not found'
    assert eps_list["kind"] == "EndpointsList"


async def test_read_service_with_kubernetes_asyncio(api: FakeApiServer) -> None:
    """CoreV1Api reads a Service and lists Endpoints from the fake."""
    api.apply(service("web", "shop", ports=[{"name": "grpc", "port": 9000, "targetPort": "grpc"}]))
    api.apply(core_endpoints("web", "shop", addresses=["10.0.0.1"], not_ready_addresses=["10.0.0.2"]))
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        core = client.CoreV1Api(api_client)
        svc = await core.read_namespaced_service("web", "shop")
        eps = await core.list_namespaced_endpoints("shop")
    assert svc.spec.ports[0].target_port == "grpc"
    assert eps.items[0].subsets[0].not_ready_addresses[0].ip == "10.0.0.2"


async def test_nodes_are_cluster_scoped(api: FakeApiServer) -> None:
    """A Node is stored without a namespace and read at /api/v1/nodes/<name> by the real client."""
    from kube_balance.testing import node

    stored = api.apply(node("worker-1", zone="eu-west-1a"))
    assert "namespace" not in stored["metadata"]
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        got = await client.CoreV1Api(api_client).read_node("worker-1")
    assert got.metadata.labels["topology.kubernetes.io/zone"] == "eu-west-1a"


async def test_discovery_documents(api: FakeApiServer) -> None:
    """/version, /api, /apis and the group resource lists answer as a cluster serving discovery/v1."""
    async with asyncio.timeout(5), await api.new_api_client() as api_client:
        version = await client.VersionApi(api_client).get_code()
        groups = await client.ApisApi(api_client).get_api_versions()
        resources = await client.DiscoveryV1Api(api_client).get_api_resources()
        core = await client.CoreV1Api(api_client).get_api_resources()
        versions = await client.CoreApi(api_client).get_api_versions()
    assert version.major == "1"
    assert [g.name for g in groups.groups] == ["discovery.k8s.io"]
    assert [r.name for r in resources.resources] == ["endpointslices"]
    assert "watch" in resources.resources[0].verbs
    assert sorted(r.name for r in core.resources) == ["endpoints", "nodes", "services"]
    assert {r.name: r.namespaced for r in core.resources}["nodes"] is False  # cluster-scoped
    assert versions.versions == ["v1"]


async def test_old_cluster_without_discovery_v1() -> None:
    """serve_discovery_v1=False: the group is absent from /apis and its paths are 404."""
    async with asyncio.timeout(5), FakeApiServer(serve_discovery_v1=False) as api:
        api.apply(core_endpoints("web", "shop", addresses=["10.0.0.1"]))
        _, groups = await raw_get(api, "/apis")
        status_doc, _ = await raw_get(api, "/apis/discovery.k8s.io/v1")
        status_list, body = await raw_get(api, SLICES)
        status_watch, _ = await raw_get(api, SLICES, watch="1")
        status_eps, _ = await raw_get(api, "/api/v1/namespaces/shop/endpoints")
    assert groups["groups"] == []
    assert (status_doc, status_list, status_watch, status_eps) == (404, 404, 404, 200)
    assert (body["kind"], body["reason"]) == ("Status", "NotFound")


async def test_unknown_path_and_method(api: FakeApiServer) -> None:
    """Unknown paths and non-GET methods get a NotFound Status, as unserved resources do."""
    async with asyncio.timeout(5):
        status, body = await raw_get(api, "/apis/apps/v1/namespaces/shop/deployments")
        headers = {"Authorization": f"Bearer {api.token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(api.url + SLICES, headers=headers, json={}) as resp,
        ):
            post_status = resp.status
    assert (status, body["reason"], post_status) == (404, "NotFound", 404)
