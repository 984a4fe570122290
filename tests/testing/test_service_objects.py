"""kube_balance.testing.service() builds the Service shapes the API returns, served as such by the fake."""

from __future__ import annotations

import asyncio

import pytest

from kube_balance.testing import FakeApiServer, service


def test_service_shapes() -> None:
    """ClusterIP with a selector (default), headless, selector-less and ExternalName."""
    default = service("web", "shop")["spec"]
    assert default["type"] == "ClusterIP" and default["selector"] == {"app": "web"}
    headless = service("web", "shop", cluster_ip="None")["spec"]
    assert headless["clusterIP"] == "None" and headless["clusterIPs"] == ["None"]
    assert "selector" not in service("web", "shop", selector=None)["spec"]
    assert service("web", "shop", selector={"tier": "db"})["spec"]["selector"] == {"tier": "db"}
    ext = service("db", "shop", external_name="db.example.com", ports=())["spec"]
    assert ext == {"type": "ExternalName", "externalName": "db.example.com", "ports": []}


async def test_the_fake_serves_them_by_name_and_404s_a_missing_one() -> None:
    """A named get returns the object as applied; a missing name is a 404 Status."""
    async with asyncio.timeout(20), FakeApiServer() as api:
        api.apply(service("db", "shop", external_name="db.example.com"))
        client = await api.new_api_client()
        try:
            from kubernetes_asyncio.client import ApiException, CoreV1Api

            got = await CoreV1Api(client).read_namespaced_service("db", "shop")
            assert got.spec.type == "ExternalName" and got.spec.external_name == "db.example.com"
            assert got.spec.cluster_ip is None and got.spec.selector is None
            with pytest.raises(ApiException) as err:
                await CoreV1Api(client).read_namespaced_service("nope", "shop")
            assert err.value.status == 404
        finally:
            await client.close()
