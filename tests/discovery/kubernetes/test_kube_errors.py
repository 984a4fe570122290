"""Errors that say what went wrong and what to do: no config, no such Service, a silent API; logged once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from kube_balance import LoadBalancer
from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.httpx import BalancedTransport, NoEndpointsAvailable
from kube_balance.testing import Fault, endpoint_slice, slice_endpoint


async def request_error(transport: BalancedTransport) -> str:
    """The message of the NoEndpointsAvailable a request to web.shop raises."""
    async with httpx.AsyncClient(transport=transport) as client, asyncio.timeout(20):
        with pytest.raises(NoEndpointsAvailable) as info:
            await client.get("http://web.shop/")
    return str(info.value)


@pytest.mark.parametrize("kubeconfig_env", [True, False], ids=["KUBECONFIG", "default-path"])
async def test_no_kubeconfig_and_no_cluster_says_where_it_looked_and_how_to_fix(
    kubeconfig_env: bool,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Outside a cluster with no kubeconfig: the error names the path looked at and the fixes; the client prints nothing."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.kube/config does not exist
    if kubeconfig_env:
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
        looked = str(tmp_path / "missing")
    else:
        monkeypatch.delenv("KUBECONFIG", raising=False)
        looked = str(tmp_path / ".kube" / "config")
    with caplog.at_level(logging.DEBUG):
        transport = BalancedTransport("web.shop:http", fallback="none")
        transport.balancer.startup_timeout = 2.0
        message = await request_error(transport)
    assert f"no kubeconfig at {looked}" in message
    assert "no in-cluster environment" in message and "KUBERNETES_SERVICE_HOST is not set" in message
    for fix in ("set KUBECONFIG", "kubeconfig=", "context=", "api_client=", "StaticSource"):
        assert fix in message, fix
    assert "Invalid kube-config" not in message
    assert not [r for r in caplog.records if r.name.startswith("kubernetes_asyncio")]
    assert "Config not found" not in capfd.readouterr().err


async def test_a_service_that_does_not_exist_says_so(api: Any, client: Any) -> None:
    """No EndpointSlice for the Service: the error asks whether the Service exists, naming label and namespace."""
    api.apply(endpoint_slice("other", "shop", endpoints=["10.0.0.1"]))
    transport = BalancedTransport(
        "web.shop:http", source=KubernetesSource("web.shop:http", api_client=client), fallback="none"
    )
    message = await request_error(transport)
    assert "total=0" in message
    assert (
        f"no EndpointSlice labelled kubernetes.io/service-name=web in namespace shop at {api.url}: "
        "does the Service exist?"
    ) in message


@pytest.mark.parametrize("port", ["grpc", 9999])
async def test_a_port_the_slices_do_not_carry_names_the_ports_they_do(
    api: Any, client: Any, port: object
) -> None:
    """A typo in the port (``web.shop:grpc``): the error names the port and lists the slices' ports."""
    ports = [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"], ports=ports))
    ref = f"web.shop:{port}"
    transport = BalancedTransport(ref, source=KubernetesSource(ref, api_client=client), fallback="none")
    message = await request_error(transport)
    assert (
        f"the EndpointSlices of shop/web have no TCP port {port!r} (their ports, name=number: "
        "http=8080, metrics=9090); name one of them in the reference, e.g. 'web.shop:http'"
    ) in message


async def test_a_port_the_slices_carry_adds_no_port_explanation(api: Any, client: Any) -> None:
    """Slices with the port but no ready endpoint: the counts explain it, not the port."""
    api.apply(endpoint_slice("web", "shop", endpoints=[slice_endpoint("10.0.0.1", ready=False)]))
    transport = BalancedTransport(
        "web.shop:http", source=KubernetesSource("web.shop:http", api_client=client), fallback="none"
    )
    message = await request_error(transport)
    assert "not_ready=1" in message and "no TCP port" not in message


async def test_an_api_that_never_answers_says_how_long(api: Any, client: Any) -> None:
    """An API that accepts the list and never answers: the error names the API and the time waited."""
    api.inject(Fault.stall(on="list"))
    source = KubernetesSource("web.shop:http", api_client=client)
    transport = BalancedTransport("web.shop:http", source=source, fallback="none")
    transport.balancer.startup_timeout = 0.3
    message = await request_error(transport)
    assert f"the API at {api.url} has not answered for 0." in message
    assert "listing EndpointSlices kubernetes.io/service-name=web in namespace shop" in message


async def test_each_discovery_failure_is_logged_once(
    api: Any, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed list is logged once (by the watch), not again by every balancer that hears of it."""
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    api.inject(Fault.http_error(503, on="list"))
    balancers = [
        LoadBalancer("web.shop:http", source=KubernetesSource("web.shop:http", api_client=client))
        for _ in range(2)
    ]
    with caplog.at_level(logging.DEBUG):
        async with balancers[0], balancers[1], asyncio.timeout(20):
            for lb in balancers:
                await lb.wait_ready(10)
    assert all("HTTP 503" in str(lb.last_error) for lb in balancers)
    logged = [r for r in caplog.records if "HTTP 503" in r.getMessage() and r.levelno >= logging.WARNING]
    assert [r.name for r in logged] == ["kube_balance.discovery"]
