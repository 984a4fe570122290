"""The client's zone from its Node object (fake apiserver, real client), and RBAC 403 handled."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
from helpers_kube_discovery import until

from kube_balance import DiscoveryAuthError, EndpointSet, LoadBalancer, ZoneAware
from kube_balance.discovery import KubernetesSource
from kube_balance.discovery.kubernetes._node import node_zone
from kube_balance.testing import (
    FakeApiServer,
    Permissions,
    StaticSource,
    endpoint_slice,
    node,
    slice_endpoint,
)


async def test_node_zone_reads_the_topology_label(api: Any, client: Any) -> None:
    """GET /api/v1/nodes/<name> gives topology.kubernetes.io/zone; an unlabelled node gives None."""
    api.apply(node("worker-1", zone="eu-west-1b"))
    api.apply(node("worker-2"))
    async with asyncio.timeout(10):
        assert await node_zone(client, "worker-1") == "eu-west-1b"
        assert await node_zone(client, "worker-2") is None
    assert [r.path for r in api.requests if r.verb == "get"] == [
        "/api/v1/nodes/worker-1",
        "/api/v1/nodes/worker-2",
    ]


async def test_node_zone_403_names_the_cluster_role_rule() -> None:
    """Without get on nodes (a namespaced Role cannot grant it) the error says what to grant or set."""
    perms = Permissions.allow("endpointslices:*", "nodes:get", namespaces={"shop"})
    async with asyncio.timeout(10), FakeApiServer(tokens={"t": perms}, token="t") as api:
        api.apply(node("worker-1", zone="a"))
        client = await api.new_api_client()
        try:
            with pytest.raises(DiscoveryAuthError) as info:
                await node_zone(client, "worker-1")
        finally:
            await client.close()
    message = str(info.value)
    assert "403" in message and 'resources ["nodes"]' in message and "KUBE_BALANCE_ZONE" in message


def two_zone_slice() -> dict[str, Any]:
    return endpoint_slice(
        "web",
        "shop",
        endpoints=[slice_endpoint("10.0.0.1", zone="a"), slice_endpoint("10.0.0.2", zone="b")],
    )


async def test_balancer_learns_its_zone_from_the_node(api: Any, client: Any) -> None:
    """NODE_NAME set, no zone: the filter reads the Node once and narrows to its zone."""
    api.apply(node("worker-1", zone="b"))
    api.apply(two_zone_slice())
    zones = ZoneAware(environ={"NODE_NAME": "worker-1"})
    source = KubernetesSource("web.shop:http", api_client=client, rng=random.Random(1))
    async with (
        asyncio.timeout(10),
        LoadBalancer("web.shop:http", source=source, policy=zones.policy(), fallback="none") as lb,
    ):
        await until(lambda: [e.address for e in lb.eligible] == ["10.0.0.2"])
    status = lb.status().zone
    assert status is not None
    assert (status.zone, status.zone_source, status.mode) == ("b", "node worker-1", "same-zone")


async def test_forbidden_node_read_leaves_every_zone_serving(caplog: pytest.LogCaptureFixture) -> None:
    """RBAC 403 on nodes: logged once, zone unknown, both zones keep their traffic."""
    perms = Permissions.allow("endpointslices:*", "services:get", namespaces={"shop"})
    async with asyncio.timeout(10), FakeApiServer(tokens={"t": perms}, token="t") as api:
        api.apply(node("worker-1", zone="b"))
        api.apply(two_zone_slice())
        client = await api.new_api_client()
        try:
            zones = ZoneAware(environ={"NODE_NAME": "worker-1"})
            source = KubernetesSource("web.shop:http", api_client=client, rng=random.Random(1))
            with caplog.at_level(logging.WARNING, "kube_balance"):
                async with LoadBalancer(
                    "web.shop:http", source=source, policy=zones.policy(), fallback="none"
                ) as lb:
                    await until(lambda: zones.status().zone_source.startswith("unknown"))
                    assert len(lb.eligible) == 2
        finally:
            await client.close()
    assert zones.status().zone_source == "unknown (reading the Node is forbidden)"
    assert [r.status for r in api.requests if r.path == "/api/v1/nodes/worker-1"] == [403]
    assert sum("zone-aware routing is off" in r.getMessage() for r in caplog.records) == 1


def test_zone_from_env_needs_no_node_read(rng: random.Random) -> None:
    """KUBE_BALANCE_ZONE set: no lookup is ever started, even with NODE_NAME set."""
    zones = ZoneAware(environ={"KUBE_BALANCE_ZONE": "a", "NODE_NAME": "worker-1"})
    lb = LoadBalancer("web.shop:80", source=StaticSource(), policy=zones.policy(), fallback="none", rng=rng)
    lb.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
    assert zones._lookup == "no" and zones.status().zone_source == "env KUBE_BALANCE_ZONE"


async def test_missing_node_is_tried_three_times_then_given_up(api: Any, client: Any) -> None:
    """A Node that cannot be read (404) is tried 3 times, then the zone stays unknown: all zones serve."""
    api.apply(two_zone_slice())
    zones = ZoneAware(environ={"NODE_NAME": "ghost"})
    source = KubernetesSource("web.shop:http", api_client=client, rng=random.Random(1))
    async with (
        asyncio.timeout(10),
        LoadBalancer("web.shop:http", source=source, policy=zones.policy(), fallback="none") as lb,
    ):
        await until(lambda: zones.status().zone_source.startswith("unknown"))
        assert len(lb.eligible) == 2
    assert zones.status().zone_source == "unknown (reading node ghost failed)"
    assert [r.status for r in api.requests if r.path == "/api/v1/nodes/ghost"] == [404, 404, 404]
