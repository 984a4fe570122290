"""FakeApiServer auth (401, RBAC 403, token rotation), TLS, kubeconfig, request log and exports."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

import kube_balance.testing
from kube_balance import ConfigurationError
from kube_balance.testing import FakeApiServer, Permissions, endpoint_slice

SLICES = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"
READER = "system:serviceaccount:shop:kb"


async def raw_get(api: FakeApiServer, path: str, token: str | None, **params: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(api.url + path, params=params, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_missing_or_unknown_token_is_401(token: str | None) -> None:
    """No bearer token or an unknown one gets a 401 Unauthorized Status, discovery included."""
    async with asyncio.timeout(5), FakeApiServer() as api:
        status, body = await raw_get(api, SLICES, token)
        status_apis, _ = await raw_get(api, "/apis", token)
    assert (status, status_apis) == (401, 401)
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert api.requests[0].token == token


async def test_rbac_forbidden_message_shape() -> None:
    """A token without the verb gets 403 with RBAC's exact wording for list, watch, get and cluster scope."""
    perms = Permissions.allow("endpointslices:list", namespaces={"shop"}, user=READER)
    async with asyncio.timeout(5), FakeApiServer(tokens={"reader": perms}) as api:
        api.apply(endpoint_slice("web", "shop", name="web-1"))
        ok, _ = await raw_get(api, SLICES, "reader")
        watch_status, watch_body = await raw_get(api, SLICES, "reader", watch="1")
        _, get_body = await raw_get(api, SLICES + "/web-1", "reader")
        _, other_ns = await raw_get(api, "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices", "reader")
        _, cluster = await raw_get(api, "/apis/discovery.k8s.io/v1/endpointslices", "reader")
        _, services = await raw_get(api, "/api/v1/namespaces/shop/services/web", "reader")
    assert (ok, watch_status) == (200, 403)
    assert (watch_body["kind"], watch_body["reason"], watch_body["code"]) == ("Status", "Forbidden", 403)
    assert watch_body["message"] == (
        'endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:shop:kb" cannot watch '
        'resource "endpointslices" in API group "discovery.k8s.io" in the namespace "shop"'
    )
    assert watch_body["details"] == {"group": "discovery.k8s.io", "kind": "endpointslices"}
    assert get_body["message"].startswith('endpointslices.discovery.k8s.io "web-1" is forbidden: ')
    assert get_body["details"]["name"] == "web-1"
    assert other_ns["message"].endswith(
        'cannot list resource "endpointslices" in API group "discovery.k8s.io" in the namespace "prod"'
    )
    assert cluster["message"].endswith("at the cluster scope")
    assert services["message"] == (
        'services "web" is forbidden: User "system:serviceaccount:shop:kb" cannot get resource "services" '
        'in API group "" in the namespace "shop"'
    )


async def test_rbac_through_kubernetes_asyncio() -> None:
    """The documented reader role lists and watches; the client sees 403 as ApiException."""
    tokens = {"reader": Permissions.endpoint_slice_reader(), "nobody": Permissions()}
    async with asyncio.timeout(5), FakeApiServer(tokens=tokens) as api:
        async with await api.new_api_client(token="reader") as reader:
            listed = await client.DiscoveryV1Api(reader).list_namespaced_endpoint_slice("shop")
            with pytest.raises(ApiException) as denied_svc:
                await client.CoreV1Api(reader).read_namespaced_service("web", "shop")
        async with await api.new_api_client(token="nobody") as nobody:
            with pytest.raises(ApiException) as denied:
                await client.DiscoveryV1Api(nobody).list_namespaced_endpoint_slice("shop")
    assert listed.kind == "EndpointSliceList"
    assert (denied_svc.value.status, denied.value.status) == (403, 403)
    assert json.loads(denied.value.body)["reason"] == "Forbidden"


def test_permissions_validation() -> None:
    """Malformed rules are ConfigurationErrors; wildcards allow everything."""
    with pytest.raises(ConfigurationError):
        Permissions.allow("endpointslices")
    with pytest.raises(ConfigurationError):
        Permissions.allow(("endpointslices", "delete"))
    wildcard = Permissions.allow("*:*")
    assert wildcard.allows("services", "watch", "any")
    assert wildcard.allows("services", "list", None)


async def test_token_rotation_via_token_file(tmp_path: Path) -> None:
    """After set_tokens() the old token gets 401; a client re-reading its token file gets through."""
    token_file = tmp_path / "token"
    token_file.write_text("old")
    async with asyncio.timeout(5), FakeApiServer(tokens={"old": None}) as api:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token_file=str(token_file))
        before = await load_and_list(kubeconfig)
        api.set_tokens({"new": None})
        token_file.write_text("new")  # the kubelet rotates the projected token file
        with pytest.raises(ApiException) as stale:
            await list_with(before)
        after = await load_and_list(kubeconfig)
        await before.close()
        await after.close()
    assert stale.value.status == 401
    assert [r.status for r in api.requests] == [200, 401, 200]
    assert [r.token for r in api.requests] == ["old", "old", "new"]


async def load_and_list(kubeconfig: str) -> client.ApiClient:
    """A new client from the kubeconfig (reading the token file now), after one successful list."""
    cfg = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg, persist_config=False)
    api_client = client.ApiClient(configuration=cfg)
    await list_with(api_client)
    return api_client


async def list_with(api_client: client.ApiClient) -> Any:
    return await client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice("shop")


async def test_kubeconfig_is_real(tmp_path: Path) -> None:
    """write_kubeconfig writes a file kubernetes_asyncio loads: server, token and namespace."""
    async with asyncio.timeout(5), FakeApiServer(token="t0k") as api:
        path = api.write_kubeconfig(tmp_path / "config", namespace="shop", context="ctx")
        contexts, current = config.list_kube_config_contexts(path)
        cfg = client.Configuration()
        await config.load_kube_config(config_file=path, client_configuration=cfg, persist_config=False)
        async with client.ApiClient(configuration=cfg) as api_client:
            await list_with(api_client)
    assert current["name"] == "ctx"
    assert current["context"]["namespace"] == "shop"
    assert cfg.host == api.url
    assert cfg.api_key["BearerToken"] == "Bearer t0k"
    assert api.requests[-1].token == "t0k"
    assert len(contexts) == 1


def read(path: str) -> str:
    return Path(path).read_text()


async def test_tls_with_trustme_ca(tmp_path: Path) -> None:
    """tls=True serves HTTPS with a trustme CA written into the kubeconfig; unverified clients fail."""
    async with asyncio.timeout(10), FakeApiServer(tls=True) as api:
        assert api.url.startswith("https://127.0.0.1:")
        assert api.ca_pem_path is not None
        assert read(api.ca_pem_path).startswith("-----BEGIN CERTIFICATE-----")
        doc = json.loads(read(api.write_kubeconfig(tmp_path / "kc")))
        assert doc["clusters"][0]["cluster"]["certificate-authority"] == api.ca_pem_path
        async with await api.new_api_client() as api_client:
            listed = await list_with(api_client)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await raw_get(api, SLICES, api.token)
        trusted = ssl.create_default_context(cafile=api.ca_pem_path)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                api.url + SLICES, ssl=trusted, headers={"Authorization": f"Bearer {api.token}"}
            ) as resp,
        ):
            assert resp.status == 200
        ca_path = api.ca_pem_path
    assert listed.kind == "EndpointSliceList"
    with pytest.raises(FileNotFoundError):  # cleaned up on stop
        read(ca_path)


async def test_tls_survives_restart() -> None:
    """A restart keeps the port and the CA, so a configured client reconnects."""
    async with asyncio.timeout(10), FakeApiServer(tls=True) as api:
        url, ca = api.url, api.ca_pem_path
        async with await api.new_api_client() as api_client:
            await list_with(api_client)
            await api.restart()
            assert (api.url, api.ca_pem_path) == (url, ca)
            await list_with(api_client)
    assert [r.status for r in api.requests] == [200, 200]


async def test_request_log_fields() -> None:
    """Each request is logged with method, path, query strings, status, token, verb and time."""
    async with asyncio.timeout(5), FakeApiServer() as api:
        await raw_get(api, SLICES, api.token, labelSelector="a=b", limit="5")
        await raw_get(api, SLICES + "/missing", api.token)
        await raw_get(api, "/version", api.token)
    first, second, third = api.requests
    assert (first.method, first.path, first.query, first.status, first.token, first.verb) == (
        "GET",
        SLICES,
        {"labelSelector": "a=b", "limit": "5"},
        200,
        "test-token",
        "list",
    )
    assert (second.status, second.verb) == (404, "get")
    assert (third.verb, third.status) == ("discovery", 200)
    assert first.time <= second.time <= third.time


def test_testing_exports() -> None:
    """kube_balance.testing.__all__ is sorted, each name resolves and has a docstring."""
    names = kube_balance.testing.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(kube_balance.testing, name).__doc__, name


def test_import_testing_does_not_load_aiohttp() -> None:
    """`import kube_balance.testing` stays light: the server (and aiohttp) load on first use."""
    code = "import sys, kube_balance.testing as t\nassert 'aiohttp' not in sys.modules\nt.FakeApiServer\nassert 'aiohttp' in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_constructor_validation() -> None:
    """Bad constructor values are ConfigurationErrors."""
    with pytest.raises(ConfigurationError):
        FakeApiServer(history_limit=0)
    with pytest.raises(ConfigurationError):
        FakeApiServer(bookmark_interval=0)
    with pytest.raises(ConfigurationError):
        FakeApiServer().apply({"kind": "Pod", "metadata": {"name": "x"}})
