"""BalancedTransport against real aiohttp pods on 127.0.0.1: spread, Host, TLS, redirects, fallback."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import Counter

import httpx
import pytest
from helpers_pods import SERVICE_HOST, running_pods
from scipy.stats import chisquare

import kube_balance
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport, NoEndpointsAvailable

URL = f"http://{SERVICE_HOST}"


async def test_round_robin_spreads_exactly_across_four_pods(rng: random.Random) -> None:
    """400 sequential requests with round_robin land exactly 100 on each of 4 pods."""
    async with running_pods(4) as pods:
        source = StaticSource([p.key for p in pods])
        transport = BalancedTransport("web.shop:http", source=source, algorithm="round_robin", rng=rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(20):
            seen = Counter([(await client.get(f"{URL}/")).json()["pod"] for _ in range(400)])
        assert seen == {f"pod-{i}": 100 for i in range(4)}


async def test_least_request_spreads_concurrent_load(rng: random.Random) -> None:
    """The default algorithm spreads 50-way concurrent load over 4 pods (chi-square, alpha 1e-6)."""
    async with running_pods(4) as pods:
        transport = BalancedTransport("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(20):
            sem = asyncio.Semaphore(50)

            async def one() -> str:
                async with sem:
                    return str((await client.get(f"{URL}/")).json()["pod"])

            seen = Counter(await asyncio.gather(*(one() for _ in range(800))))
        assert set(seen) == {p.name for p in pods}
        assert chisquare(list(seen.values())).pvalue > 1e-6
        assert transport.balancer.algorithm.total_inflight() == 0  # type: ignore[attr-defined]


async def test_host_header_is_the_service_and_url_is_kept(rng: random.Random) -> None:
    """Each pod sees Host: the Service name; response.url stays the Service URL, not the pod IP."""
    async with running_pods(2) as pods:
        transport = BalancedTransport("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            for _ in range(10):
                r = await client.get(f"{URL}/?q=1")
                assert r.json()["host"] == SERVICE_HOST
                assert r.url == httpx.URL(f"{URL}/?q=1")
            short = await client.get("http://web.shop/")
            assert short.json()["host"] == "web.shop"  # the host the caller wrote, as any client
        assert {h for p in pods for h in p.hosts} == {SERVICE_HOST, "web.shop"}


async def test_redirects_and_cookies_keep_the_service_url(rng: random.Random) -> None:
    """A relative redirect and a Set-Cookie resolve against the Service URL and are sent back."""
    async with running_pods(3) as pods:
        transport = BalancedTransport("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        async with (
            httpx.AsyncClient(transport=transport, follow_redirects=True) as client,
            asyncio.timeout(10),
        ):
            r = await client.get(f"{URL}/redirect")
            assert r.url == httpx.URL(f"{URL}/")
            assert [str(h.url) for h in r.history] == [f"{URL}/redirect"]
            assert r.json()["cookie"] is not None and r.json()["cookie"].startswith("from-pod-")
            assert client.cookies.get("session", domain=SERVICE_HOST) is not None


async def test_tls_verifies_the_service_name_while_connecting_by_ip(
    rng: random.Random, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    """A certificate for the Service name only verifies through the transport (SNI), not by IP."""
    async with running_pods(2, ssl_context=server_ssl) as pods:
        transport = BalancedTransport(
            "web.shop:https",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            verify=client_ssl,
            rng=rng,
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            seen = {(await client.get(f"https://{SERVICE_HOST}/")).json()["pod"] for _ in range(20)}
        assert seen == {"pod-0", "pod-1"}
        async with httpx.AsyncClient(verify=client_ssl) as plain, asyncio.timeout(10):
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await plain.get(f"https://127.0.0.1:{pods[0].port}/")


async def test_tls_rejects_a_certificate_for_another_name(
    rng: random.Random, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    """Verification is real: the same pods under another Service name fail the handshake."""
    async with running_pods(1, ssl_context=server_ssl) as pods:
        transport = BalancedTransport(
            "api.shop:https", source=StaticSource([p.key for p in pods]), verify=client_ssl, rng=rng
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get("https://api.shop.svc.cluster.local/")
        assert transport.balancer.algorithm.total_inflight() == 0  # type: ignore[attr-defined]


async def test_other_hosts_pass_through(rng: random.Random) -> None:
    """A request to a host that is not the Service goes straight to that host."""
    async with running_pods(2) as pods:
        transport = BalancedTransport("web.shop:http", source=StaticSource([pods[0].key]), rng=rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            r = await client.get(f"http://127.0.0.1:{pods[1].port}/")
        assert r.json() == {"pod": "pod-1", "host": f"127.0.0.1:{pods[1].port}", "cookie": None}
        assert pods[0].hits == 0


async def test_fallback_sends_to_the_service_name_with_no_endpoints(rng: random.Random) -> None:
    """With no endpoints, the request goes to the fallback target with the Service Host header."""
    async with running_pods(1) as pods:
        transport = BalancedTransport(
            "web.shop:http", source=StaticSource([]), fallback=f"127.0.0.1:{pods[0].port}", rng=rng
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            r = await client.get(f"{URL}/")
        assert r.json()["host"] == SERVICE_HOST
        assert transport.dispatcher.inflight("<fallback>") == 0


async def test_default_fallback_targets_the_service_dns_name_and_port() -> None:
    """fallback='service' resolves to name.ns.svc.cluster.local and the Service's numeric port."""
    lb = kube_balance._balancer.LoadBalancer("web.shop:8080", source=StaticSource([]))
    assert await lb.fallback_target() == ("web.shop.svc.cluster.local", 8080)


async def test_fallback_none_raises_an_httpx_connect_error(rng: random.Random) -> None:
    """fallback='none' raises NoEndpointsAvailable: an httpx.ConnectError naming the Service."""
    transport = BalancedTransport("web.shop:http", source=StaticSource([]), fallback="none", rng=rng)
    async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"{URL}/")
    assert isinstance(info.value, NoEndpointsAvailable)
    assert isinstance(info.value, kube_balance.NoEndpointsAvailable)
    assert isinstance(info.value.__cause__, kube_balance.NoEndpointsAvailable)
    assert "web.shop:http" in str(info.value) and "fallback='none'" in str(info.value)


async def test_named_port_fallback_without_service_port_explains(rng: random.Random) -> None:
    """A named port cannot be resolved by a StaticSource: the error says how to fix it."""
    transport = BalancedTransport("web.shop:http", source=StaticSource([]), rng=rng)
    async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
        with pytest.raises(NoEndpointsAvailable, match=r"named port 'http'.*numeric port"):
            await client.get(f"{URL}/")


async def test_post_body_reaches_the_pod(rng: random.Random) -> None:
    """A request body is forwarded unchanged."""
    async with running_pods(2) as pods:
        transport = BalancedTransport("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            r = await client.post(f"{URL}/echo", content=b"a" * 12345)
        assert r.json()["length"] == 12345


async def test_affinity_header_pins_a_key_to_one_pod(rng: random.Random) -> None:
    """With a hash algorithm and affinity='X-Affinity', one key always reaches the same pod."""
    async with running_pods(4) as pods:
        transport = BalancedTransport(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="ring_hash",
            affinity="X-Affinity",
            rng=rng,
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            for user in ("alice", "bob", "carol"):
                got = {
                    (await client.get(f"{URL}/", headers={"X-Affinity": user})).json()["pod"]
                    for _ in range(10)
                }
                assert len(got) == 1


async def test_affinity_callable_and_default_header(rng: random.Random) -> None:
    """A callable key source pins by path; ring_hash without affinity= reads X-Affinity."""
    async with running_pods(4) as pods:
        keys = [p.key for p in pods]
        by_path = BalancedTransport(
            "web.shop:http",
            source=StaticSource(keys),
            algorithm="ring_hash",
            affinity=lambda request: request.url.params.get("user"),
            rng=rng,
        )
        default = BalancedTransport(
            "web.shop:http", source=StaticSource(keys), algorithm="ring_hash", rng=rng
        )
        async with (
            httpx.AsyncClient(transport=by_path) as a,
            httpx.AsyncClient(transport=default) as b,
            asyncio.timeout(10),
        ):
            for user in ("alice", "bob"):
                assert len({(await a.get(f"{URL}/?user={user}")).json()["pod"] for _ in range(8)}) == 1
                assert (
                    len(
                        {
                            (await b.get(f"{URL}/", headers={"X-Affinity": user})).json()["pod"]
                            for _ in range(8)
                        }
                    )
                    == 1
                )
            users = [f"user-{i}" for i in range(40)]
            spread = {(await b.get(f"{URL}/", headers={"X-Affinity": u})).json()["pod"] for u in users}
            assert len(spread) > 1  # different keys do reach different pods


async def test_httpx_options_reach_every_pod_pool(rng: random.Random, client_ssl: ssl.SSLContext) -> None:
    """limits, http1/http2, retries, socket_options, local_address and verify reach each pool."""
    import socket

    options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    async with running_pods(2) as pods:
        transport = BalancedTransport(
            "web.shop:http",
            source=StaticSource([p.key for p in pods]),
            algorithm="round_robin",
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            http2=True,
            retries=2,
            socket_options=options,
            local_address="127.0.0.1",
            verify=client_ssl,
            rng=rng,
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            await asyncio.gather(*(client.get(f"{URL}/") for _ in range(8)))
            pools = transport.dispatcher.pools
            assert set(pools) == {p.key for p in pods}
            for pool in pools.values():
                core = pool._pool
                assert (core._max_connections, core._http2, core._retries) == (1, True, 2)
                assert (core._socket_options, core._local_address, core._ssl_context) == (
                    options,
                    "127.0.0.1",
                    client_ssl,
                )
                assert len(core.connections) == 1  # the per-pod limit held under concurrency
