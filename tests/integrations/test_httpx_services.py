"""BalancedTransport over several Services: each host by its own balancer, one watch per Service."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from helpers_pods import running_pods

from kube_balance import ConfigurationError, LoadBalancer
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport


async def test_two_services_through_one_client(rng: random.Random) -> None:
    """web.shop and cart.shop each reach only their own pods; other hosts pass through."""
    async with running_pods(4) as pods:
        web, cart = pods[:2], pods[2:]
        transport = BalancedTransport(
            [
                LoadBalancer("web.shop:http", source=StaticSource([p.key for p in web]), rng=rng),
                LoadBalancer("cart.shop:http", source=StaticSource([p.key for p in cart]), rng=rng),
            ]
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            seen: dict[str, set[str]] = {"web": set(), "cart": set()}
            for _ in range(20):
                for name in seen:
                    seen[name].add((await client.get(f"http://{name}.shop/")).json()["pod"])
            direct = await client.get(f"http://127.0.0.1:{pods[3].port}/")
            assert direct.json()["host"] == f"127.0.0.1:{pods[3].port}"
        assert seen == {"web": {"pod-0", "pod-1"}, "cart": {"pod-2", "pod-3"}}
        assert [lb.service.name for lb in transport.balancers] == ["web", "cart"]
        assert all(lb.status().inflight == 0 for lb in transport.balancers)
        for lb in transport.balancers:  # given, so not closed by the transport
            await lb.aclose()


async def test_services_by_name_are_owned_and_closed(rng: random.Random) -> None:
    """Services given by name get balancers the transport starts and closes; a second reference
    to the same Service, or one source for two Services, is refused."""
    async with running_pods(1) as pods:
        transport = BalancedTransport(
            ["web.shop:http", "cart.shop:http"], fallback=f"127.0.0.1:{pods[0].port}", rng=rng
        )
        assert [str(lb.service) for lb in transport.balancers] == ["web.shop:http", "cart.shop:http"]
        await transport.aclose()
        assert not any(lb.running for lb in transport.balancers)
    with pytest.raises(ConfigurationError, match="given twice"):
        BalancedTransport(["web.shop:http", "web.shop.svc:http"])
    with pytest.raises(ConfigurationError, match="source= applies to one Service"):
        BalancedTransport(["web.shop:http", "cart.shop:http"], source=StaticSource([]))
    with pytest.raises(ConfigurationError, match="empty"):
        BalancedTransport([])
