"""Deterministic subsetting end to end: 30 real pods, subset 5, httpx and aiohttp; identity from the
peers' EndpointSlices through KubernetesSource against the fake apiserver, peers joining and leaving."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from helpers_cluster import api_client
from helpers_pods import SERVICE_HOST, Pod, pod_slice, running_pods

from kube_balance import EndpointPolicy, LoadBalancer, Subset, deterministic_subset
from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.aiohttp import BalancedConnector
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeApiServer, Permissions, endpoint_slice, slice_endpoint

URL = f"http://{SERVICE_HOST}"
PODS, SIZE, CLIENTS = 30, 5, 6
PROC_TCP = Path("/proc/net/tcp")  # the kernel's TCP table (Linux), not a file of this repository


def connected_ports(ports: set[int]) -> set[int]:
    """Pod ports this machine has an established TCP connection to, read from /proc/net/tcp."""
    seen = set()
    if not PROC_TCP.exists():
        pytest.skip("connections are read from Linux's /proc/net/tcp, absent here")
    for line in PROC_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        address, port = remote.split(":")
        if state == "01" and address == "0100007F" and int(port, 16) in ports:
            seen.add(int(port, 16))
    return seen


@contextlib.asynccontextmanager
async def watching_connections(pods: list[Pod]) -> AsyncIterator[set[int]]:
    """Sample the established connections to the pods every 5 ms while the block runs."""
    ports, seen = {p.port for p in pods}, set[int]()

    async def sample() -> None:
        while True:
            seen.update(connected_ports(ports))
            await asyncio.sleep(0.005)

    task = asyncio.create_task(sample())
    try:
        yield seen
    finally:
        seen.update(connected_ports(ports))
        task.cancel()
        await asyncio.wait({task})


async def load(send: Callable[[], Awaitable[str]], requests: int = 150, concurrency: int = 15) -> set[str]:
    """``requests`` requests, ``concurrency`` at a time; the pods that answered."""
    answered: set[str] = set()

    async def worker() -> None:
        for _ in range(requests // concurrency):
            answered.add(await send())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answered


def expected(pods: list[Pod], client_id: int, count: int) -> tuple[set[str], set[int]]:
    keys = set(deterministic_subset([p.key for p in pods], SIZE, client_id, count))
    chosen = [p for p in pods if p.key in keys]
    return {p.name for p in chosen}, {p.port for p in chosen}


Send = Callable[[], Awaitable[str]]
"""One request to the Service; the name of the pod that answered."""


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[tuple[FakeApiServer, list[Pod]]]:
    """The fake apiserver with the EndpointSlices of ``PODS`` running pods; the block has 60 s."""
    async with asyncio.timeout(60), FakeApiServer() as api, running_pods(PODS) as pods:
        for pod in pods:
            api.apply(pod_slice(pod.name, pod.port))
        yield api, pods


def balanced(kube: Any, policy: EndpointPolicy, rng: random.Random) -> LoadBalancer:
    """A balancer of web.shop:http, its slices watched through ``kube``, with ``policy``."""
    source = KubernetesSource("web.shop:http", api_client=kube)
    return LoadBalancer("web.shop:http", source=source, policy=policy, rng=rng)


@contextlib.asynccontextmanager
async def httpx_send(balancer: LoadBalancer) -> AsyncIterator[Send]:
    """Slow GETs through an httpx client over ``balancer``."""
    async with httpx.AsyncClient(transport=BalancedTransport(balancer)) as client:

        async def send() -> str:
            return str((await client.get(f"{URL}/slow", params={"delay": "0.01"})).json()["pod"])

        yield send


@contextlib.asynccontextmanager
async def aiohttp_send(balancer: LoadBalancer) -> AsyncIterator[Send]:
    """Slow GETs through an aiohttp session over ``balancer``."""
    async with aiohttp.ClientSession(connector=BalancedConnector(balancer)) as session:

        async def send() -> str:
            async with session.get(f"{URL}/slow", params={"delay": "0.01"}) as r:
                return str((await r.json())["pod"])

        yield send


@pytest.mark.parametrize(
    ("client", "client_id"), [(httpx_send, 3), (aiohttp_send, 5)], ids=["httpx", "aiohttp"]
)
async def test_client_only_ever_connects_to_its_subset(
    client: Callable[[LoadBalancer], contextlib.AbstractAsyncContextManager[Send]],
    client_id: int,
    rng: random.Random,
) -> None:
    """30 pods, subset 5, client 3 of 6 (httpx's BalancedTransport) or 5 of 6 (aiohttp's
    BalancedConnector): 150 concurrent requests reach and connect to those 5 pods only."""
    async with cluster() as (api, pods), api_client(api) as kube:
        balancer = balanced(kube, Subset(SIZE, client_id=client_id, client_count=CLIENTS).policy(), rng)
        names, ports = expected(pods, client_id, CLIENTS)
        async with balancer:
            await balancer.wait_ready(10)
            async with client(balancer) as send, watching_connections(pods) as connected:
                answered = await load(send)
            assert answered == names
            assert connected == ports, (connected, ports)
        assert {p.name for p in pods if p.hits} == names


def peer_slice(*names: str, unready: tuple[str, ...] = ()) -> dict[str, Any]:
    """The client Service's one EndpointSlice: its pods (addresses are never dialled)."""
    entries = [slice_endpoint(f"10.7.0.{i}", pod_name=n) for i, n in enumerate(names)]
    entries += [slice_endpoint(f"10.7.1.{i}", pod_name=n, ready=False) for i, n in enumerate(unready)]
    return endpoint_slice("client", "shop", name="client-slice", endpoints=entries)


async def test_identity_from_the_peers_slices_follows_joins_and_leaves(rng: random.Random) -> None:
    """client-b's rank among the ready pods of its own Service, watched through KubernetesSource:
    1 of 3, then 2 of 4 when client-0 joins, 1 of 3 again when client-a leaves; requests follow."""
    async with cluster() as (api, pods), api_client(api) as kube:
        api.apply(peer_slice("client-a", "client-b", "client-c", unready=("client-x",)))
        peers = KubernetesSource("client.shop", api_client=kube)
        subset = Subset(SIZE, peers=peers, pod_name="client-b", environ={})
        balancer = balanced(kube, subset.policy(), rng)

        async def identity(want: tuple[int, int]) -> None:
            while (subset.status().client_id, subset.status().client_count) != want:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        async with balancer, httpx.AsyncClient(transport=BalancedTransport(balancer)) as client:
            await balancer.wait_ready(10)
            for change, want in (
                (None, (1, 3)),
                (peer_slice("client-0", "client-a", "client-b", "client-c"), (2, 4)),
                (peer_slice("client-0", "client-b", "client-c"), (1, 3)),
            ):
                if change is not None:
                    api.apply(change)
                await identity(want)
                names, _ = expected(pods, *want)
                answered = {(await client.get(f"{URL}/")).json()["pod"] for _ in range(40)}
                assert answered == names
                assert len(balancer.eligible) == SIZE
            assert subset.status().source == "peers client.shop"
            api.delete("EndpointSlice", "shop", "client-slice")  # no peer left: alone, 0 of 1
            await identity((0, 1))
        assert subset._task is None  # the balancer's aclose() stopped the peers' watch


async def test_documented_rbac_is_enough_and_a_403_is_reported(rng: random.Random) -> None:
    """list+watch EndpointSlices in the client's namespace suffice; without them the client keeps
    its pending window (5 endpoints, never all 30) and status() names the 403."""
    async with cluster() as (api, _):
        api.set_tokens(
            {
                "client": Permissions.allow(
                    "endpointslices:list", "endpointslices:watch", namespaces={"shop"}
                ),
                "other-namespace": Permissions.allow("endpointslices:*", namespaces={"elsewhere"}),
            }
        )
        api.apply(peer_slice("client-a", "client-b"))
        async with api_client(api, "client") as allowed, api_client(api, "other-namespace") as refused:
            good = Subset(
                SIZE, peers=KubernetesSource("client.shop", api_client=allowed), pod_name="client-a"
            )
            bad = Subset(SIZE, peers=KubernetesSource("client.shop", api_client=refused), pod_name="client-a")
            balancers = [balanced(allowed, s.policy(), rng) for s in (good, bad)]
            async with balancers[0], balancers[1]:
                for b in balancers:
                    await b.wait_ready(10)
                while good.status().client_count != 2 or bad.status().last_error is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                assert (good.status().client_id, good.status().last_error) == (0, None)
                assert bad.status().client_id is None and "403" in str(bad.status().last_error)
                assert bad.status().source.startswith("pending")
                assert len(balancers[1].eligible) == SIZE
