"""How the transport copies a request for a pod: httpx internals for IPv4, the public API otherwise."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from helpers_pods import Pod, running_pods

from kube_balance.discovery.static import StaticSource
from kube_balance.integrations import httpx as integration
from kube_balance.integrations.httpx import BalancedTransport, _fast_copy, _public_copy


def test_httpx_internals_still_have_the_shape_the_fast_copy_needs() -> None:
    """Fails loudly when httpx changes Request/URL internals (the transport then uses the public API)."""
    assert integration.FAST_COPY, (
        f"httpx {httpx.__version__} changed the internals _fast_copy relies on (Request.__dict__, "
        "URL._uri_reference._replace): requests to pods now take the public, slower path; update or drop it"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://web.shop/",
        "http://web.shop.svc.cluster.local:8080/a/b?x=1&y=%20#frag",
        "https://user:pw@web.shop/items?q=caf%C3%A9",
        "http://web/",
    ],
)
def test_fast_copy_equals_the_public_copy(url: str) -> None:
    """For an IPv4 pod both copies send the same method, URL, headers, body stream and extensions."""
    request = httpx.Request("PUT", url, headers={"X-A": "1"}, content=b"body")
    fast = _fast_copy(request, "10.0.0.7", 8080, {"sni_hostname": "web.shop"})
    public = _public_copy(request, "10.0.0.7", 8080, {"sni_hostname": "web.shop"})
    assert str(fast.url) == str(public.url) and fast.url.host == "10.0.0.7" and fast.url.port == 8080
    assert fast.headers.raw == public.headers.raw and fast.stream is public.stream is request.stream
    assert fast.extensions == public.extensions
    assert request.url == httpx.URL(url)  # the caller's request is left alone


async def test_an_ipv6_pod_goes_through_the_public_path_end_to_end(rng: random.Random) -> None:
    """A pod on ::1 gets the request (Host still the Service) and response.url keeps the Service URL."""
    pod = await Pod("pod-v6", host="::1").start()
    try:
        transport = BalancedTransport("web.shop:http", source=StaticSource([pod.key]), rng=rng)
        async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(10):
            response = await client.post("http://web.shop/echo", content=b"hello")
        assert response.json() == {"pod": "pod-v6", "host": "web.shop", "cookie": None, "length": 5}
        assert str(response.url) == "http://web.shop/echo"
    finally:
        await pod.kill()


async def test_the_public_path_serves_ipv4_pods_when_the_internals_changed(
    rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With FAST_COPY off (as on an httpx whose internals changed) requests still reach the pods."""
    monkeypatch.setattr(integration, "FAST_COPY", False)
    async with running_pods(2) as pods, asyncio.timeout(10):
        source = StaticSource([p.key for p in pods])
        transport = BalancedTransport("web.shop:http", source=source, algorithm="round_robin", rng=rng)
        async with httpx.AsyncClient(transport=transport) as client:
            seen = {(await client.get("http://web.shop/")).json()["pod"] for _ in range(4)}
    assert seen == {"pod-0", "pod-1"}
