"""One list and one watch per Service for equal credentials, on every way of configuring them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from helpers_kube_discovery import Sink, Sleeper, make_source, requests, running, until

from kube_balance import LoadBalancer
from kube_balance.discovery import ClientConfig, KubernetesSource
from kube_balance.discovery.kubernetes._shared import running_watches
from kube_balance.testing import FakeApiServer, endpoint_slice


async def run_three(api: Any, make: Callable[[], KubernetesSource]) -> None:
    """Run three sources built by ``make`` together; each sees the pods; then count the requests."""
    sources, sinks = [make() for _ in range(3)], [Sink() for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for source, sink in zip(sources, sinks, strict=True):
            await stack.enter_async_context(running(source, sink))
            await sink.wait_keys("10.0.0.1:8080")
        await until(lambda: len(requests(api, "watch")) >= 1)
        api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.2"]))
        for sink in sinks:  # all three follow the one watch
            await sink.wait_keys("10.0.0.2:8080")
        assert len(running_watches()) == 1
        assert (len(requests(api, "list")), len(requests(api, "watch"))) == (1, 1)
    assert running_watches() == {}


@pytest.fixture
def no_pod_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a pod: no in-cluster service host."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.mark.usefixtures("no_pod_env")
async def test_kubeconfig_env_sources_share_one_watch(
    api: Any, sleeper: Sleeper, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three sources configured by $KUBECONFIG make one list and one watch."""
    monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kc"))
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    await run_three(api, lambda: make_source("web.shop:http", sleeper))


@pytest.mark.usefixtures("no_pod_env")
async def test_kubeconfig_argument_sources_share_one_watch(api: Any, sleeper: Sleeper, tmp_path: Any) -> None:
    """Three sources given the same kubeconfig= make one list and one watch."""
    path = api.write_kubeconfig(tmp_path / "kc")
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    await run_three(api, lambda: make_source("web.shop:http", sleeper, kubeconfig=path))


@pytest.mark.usefixtures("no_pod_env")
async def test_context_sources_share_one_watch_and_other_contexts_do_not(
    api: Any, sleeper: Sleeper, tmp_path: Any
) -> None:
    """Same kubeconfig and context= share one watch; another context of that kubeconfig gets its own."""
    good, other = api.kubeconfig_dict(context="good"), api.kubeconfig_dict(context="other")
    merged = {**good, "current-context": "other"}
    for section in ("clusters", "users", "contexts"):
        merged[section] = good[section] + other[section]
    path = tmp_path / "kc"
    path.write_text(json.dumps(merged))
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    await run_three(api, lambda: make_source("web.shop:http", sleeper, kubeconfig=str(path), context="good"))
    first, second = Sink(), Sink()
    async with (
        running(make_source("web.shop:http", sleeper, kubeconfig=str(path), context="good"), first),
        running(make_source("web.shop:http", sleeper, kubeconfig=str(path)), second),
    ):
        await first.wait_keys("10.0.0.2:8080")
        await second.wait_keys("10.0.0.2:8080")
        assert len(running_watches()) == 2


async def test_in_cluster_sources_share_one_watch(
    sleeper: Sleeper, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three sources on in-cluster config (service host env, token and CA files, TLS) share one watch."""
    async with FakeApiServer(tls=True, tokens={"sa-1": None}, bookmark_interval=3600.0) as api:
        token = tmp_path / "token"
        token.write_text("sa-1")
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
        # The service-account mount lives at a fixed path; point the defaults at ours.
        defaults = ClientConfig.__init__.__kwdefaults__
        monkeypatch.setitem(defaults, "token_file", str(token))
        monkeypatch.setitem(defaults, "ca_file", api.ca_pem_path)
        assert ClientConfig().mode == "in-cluster"
        api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
        await run_three(api, lambda: make_source("web.shop:http", sleeper))
        assert {r.token for r in requests(api)} == {"sa-1"}


async def test_injected_client_sources_share_one_watch(api: Any, client: Any, sleeper: Sleeper) -> None:
    """Three sources given the same ApiClient make one list and one watch."""
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    await run_three(api, lambda: make_source("web.shop:http", sleeper, api_client=client))


@pytest.mark.usefixtures("no_pod_env")
async def test_three_default_balancers_share_one_watch(
    api: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three LoadBalancers with the default source (from $KUBECONFIG) make one list and one watch."""
    monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kc"))
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    balancers = [LoadBalancer("web.shop:http") for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack, asyncio.timeout(20):
        for lb in balancers:
            await stack.enter_async_context(lb)
            await lb.wait_ready(5)
        await until(lambda: len(requests(api, "watch")) >= 1)
        api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.2"]))
        for lb in balancers:
            await until(lambda lb=lb: [ep.key for ep in lb.eligible] == ["10.0.0.2:8080"])  # type: ignore[misc]
        assert (len(requests(api, "list")), len(requests(api, "watch"))) == (1, 1)
