"""ClientConfig: kubeconfig (explicit, KUBECONFIG, context), in-cluster files over TLS, 401 re-reads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from helpers_kube_discovery import Sink, Sleeper, make_source, requests, running

from kube_balance import ConfigurationError, DiscoveryAuthError, DiscoveryError
from kube_balance.discovery import ClientConfig, KubernetesSource
from kube_balance.testing import FakeApiServer, endpoint_slice


class FakeApiClient:
    """Enough of an ApiClient for construction-time checks (they look for ``configuration``)."""

    configuration = None


async def list_names(client: Any) -> list[str]:
    from kubernetes_asyncio.client import DiscoveryV1Api

    result = await asyncio.wait_for(DiscoveryV1Api(client).list_namespaced_endpoint_slice("shop"), 5)
    return [item.metadata.name for item in result.items]


async def test_kubeconfig_env_is_read_when_the_source_starts(
    api: Any, sleeper: Sleeper, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no arguments and no in-cluster env, $KUBECONFIG (set after import) is used."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", api.write_kubeconfig(tmp_path / "kc"))
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    source, sink = make_source("web.shop:http", sleeper), Sink()
    async with running(source, sink):
        await sink.wait_keys("10.0.0.1:8080")
    assert ClientConfig().describe() == f"kubeconfig {tmp_path / 'kc'}"


async def test_chosen_context_is_used(api: Any, sleeper: Sleeper, tmp_path: Any) -> None:
    """A kubeconfig with two contexts: the chosen one's credentials are sent."""
    good = api.kubeconfig_dict(context="good")
    bad = api.kubeconfig_dict(token="wrong", context="bad")
    merged = {**good, "current-context": "bad"}
    for section in ("clusters", "users", "contexts"):
        merged[section] = good[section] + bad[section]
    path = tmp_path / "kc"
    path.write_text(json.dumps(merged))
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    source, sink = make_source("web.shop:http", sleeper, kubeconfig=str(path), context="good"), Sink()
    async with running(source, sink):
        await sink.wait_keys("10.0.0.1:8080")
    assert {r.token for r in requests(api)} == {"test-token"}
    current, sink2 = make_source("web.shop:http", sleeper, kubeconfig=str(path)), Sink()
    async with running(current, sink2):  # current-context "bad": 401, re-read, still 401, surfaced
        await sink2.wait_for(lambda: any(isinstance(e, DiscoveryAuthError) for e in sink2.errors))


async def test_in_cluster_files_over_tls_and_token_rotation(tmp_path: Any) -> None:
    """In-cluster config reads host/port env, token and CA files; reload() picks up a rotated token."""
    async with FakeApiServer(tls=True, tokens={"sa-1": None}) as api:
        api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
        token = tmp_path / "token"
        token.write_text("sa-1")
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
        config = ClientConfig(token_file=str(token), ca_file=api.ca_pem_path, environ=env)
        assert config.mode == "in-cluster" and "token" in config.describe()
        try:
            async with asyncio.timeout(20):
                client = await config.client()
                assert config.host == api.url
                assert await list_names(client) == ["web-ipv4"]
                token.write_text("sa-2")
                api.set_tokens({"sa-2": None})
                assert await config.reload() is True
                assert await list_names(client) == ["web-ipv4"]
        finally:
            await asyncio.wait_for(config.aclose(), 10)
        assert [r.token for r in api.requests if r.verb == "list"] == ["sa-1", "sa-2"]


async def test_missing_in_cluster_files_are_a_discovery_error(tmp_path: Any) -> None:
    """in_cluster=True outside a pod raises DiscoveryError naming where it looked."""
    config = ClientConfig(in_cluster=True, token_file=str(tmp_path / "none"), environ={})
    with pytest.raises(DiscoveryError, match="in-cluster"):
        await asyncio.wait_for(config.client(), 10)


async def test_unloadable_config_is_reported_and_retried(
    sleeper: Sleeper, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source whose kubeconfig cannot load reports DiscoveryError with backoff and stays alive."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    sink = Sink()
    async with running(make_source("web.shop:http", sleeper), sink):
        await sink.wait_for(lambda: len(sink.errors) >= 3)
    assert "no Kubernetes configuration: no kubeconfig at" in str(sink.errors[0])
    assert sleeper.delays[0] >= 0.8 and sleeper.delays[1] >= 1.6


def test_auto_mode_detection(tmp_path: Any) -> None:
    """in_cluster=None picks in-cluster only with KUBERNETES_SERVICE_HOST and a token file."""
    token = tmp_path / "token"
    token.write_text("t")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert ClientConfig(token_file=str(token), environ=env).mode == "in-cluster"
    assert ClientConfig(token_file=str(tmp_path / "none"), environ=env).mode == "kubeconfig"
    assert ClientConfig(token_file=str(token), environ={}).mode == "kubeconfig"
    assert ClientConfig(api_client=FakeApiClient()).mode == "injected"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"api_client": FakeApiClient(), "kubeconfig": "x"}, "either api_client"),
        ({"in_cluster": True, "context": "c"}, "in_cluster=True"),
        ({"kubeconfig": "/no/such/kubeconfig"}, "does not exist"),
    ],
)
def test_bad_combinations_are_configuration_errors(kwargs: dict[str, Any], match: str) -> None:
    """Conflicting or missing config raises ConfigurationError at construction, in the source too."""
    with pytest.raises(ConfigurationError, match=match):
        ClientConfig(**kwargs)
    with pytest.raises(ConfigurationError, match=match):
        KubernetesSource("web.shop:http", **kwargs)


def test_bad_source_arguments() -> None:
    """A bad service reference or address family fails at construction."""
    with pytest.raises(ConfigurationError):
        KubernetesSource("Not A Service")
    with pytest.raises(ConfigurationError, match="address_family"):
        KubernetesSource("web.shop:http", address_family=5)


async def test_injected_client_is_not_closed(api: Any, client: Any, sleeper: Sleeper) -> None:
    """The source never closes an ApiClient it was given; it still works after the source stops."""
    api.apply(endpoint_slice("web", "shop", endpoints=["10.0.0.1"]))
    sink = Sink()
    async with running(make_source("web.shop:http", sleeper, api_client=client), sink):
        await sink.wait_keys("10.0.0.1:8080")
    assert await list_names(client) == ["web-ipv4"]


async def test_concurrent_first_calls_build_one_client(api: Any, tmp_path: Any) -> None:
    """Two callers asking at once while the kubeconfig loads share one ApiClient (none leaks unclosed)."""
    config = ClientConfig(kubeconfig=str(api.write_kubeconfig(tmp_path / "kc")))
    try:
        first, second = await asyncio.wait_for(asyncio.gather(config.client(), config.client()), 10)
        assert first is second
        assert await list_names(first) == []
    finally:
        await asyncio.wait_for(config.aclose(), 5)
