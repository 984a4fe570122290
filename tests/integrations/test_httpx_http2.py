"""HTTP/2 through BalancedTransport: still balanced per request, unlike one L4 connection."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import Counter

import httpx
from helpers_pods import SERVICE_HOST, l4_proxy, running_h2_pods
from scipy.stats import chisquare

from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport


async def fetch_all(
    client: httpx.AsyncClient, url: str, n: int, concurrency: int = 50
) -> list[dict[str, str]]:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> dict[str, str]:
        async with sem:
            r = await client.get(url)
            assert r.http_version == "HTTP/2"
            return dict(r.json())

    return await asyncio.gather(*(one() for _ in range(n)))


async def test_h2c_requests_spread_evenly_over_four_pods(rng: random.Random) -> None:
    """With http2=True (h2c) 800 multiplexed requests spread over 4 pods (chi-square, alpha 1e-6)."""
    async with running_h2_pods(4) as (ports, _hits):
        transport = BalancedTransport(
            "web.shop:http",
            source=StaticSource([f"127.0.0.1:{p}" for p in ports]),
            http1=False,
            http2=True,
            rng=rng,
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(30):
            answers = await fetch_all(client, f"http://{SERVICE_HOST}/", 800)
        seen = Counter(a["pod"] for a in answers)
        assert set(seen) == {f"pod-{i}" for i in range(4)}
        assert chisquare(list(seen.values())).pvalue > 1e-6
        assert {a["host"] for a in answers} == {SERVICE_HOST}  # :authority is the Service
        assert transport.balancer.algorithm.total_inflight() == 0  # type: ignore[attr-defined]


async def test_plain_http2_client_through_an_l4_service_lands_on_one_pod() -> None:
    """The problem we solve: one HTTP/2 connection through an L4 proxy sends everything to one pod."""
    async with running_h2_pods(4) as (ports, _hits), l4_proxy(ports) as proxy_port:
        async with httpx.AsyncClient(http1=False, http2=True) as client, asyncio.timeout(30):
            answers = await fetch_all(client, f"http://127.0.0.1:{proxy_port}/", 400)
        assert len({a["pod"] for a in answers}) == 1


async def test_http2_over_tls_with_sni_spreads_over_pods(
    rng: random.Random, client_ssl: ssl.SSLContext, cert_files: tuple[str, str]
) -> None:
    """HTTP/2 over TLS (ALPN h2), certificate for the Service name only: verified and balanced."""
    certfile, keyfile = cert_files
    async with running_h2_pods(4, certfile, keyfile) as (ports, _hits):
        transport = BalancedTransport(
            "web.shop:https",
            source=StaticSource([f"127.0.0.1:{p}" for p in ports]),
            http2=True,
            verify=client_ssl,
            algorithm="round_robin",
            rng=rng,
        )
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(30):
            answers = await fetch_all(client, f"https://{SERVICE_HOST}/", 400)
        assert Counter(a["pod"] for a in answers) == {f"pod-{i}": 100 for i in range(4)}
