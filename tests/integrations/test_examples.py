"""The runnable examples and manifests under integrations/ stay true: run them against the fake apiserver."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kube_balance.discovery import KubernetesSource
from kube_balance.testing import (
    FakeApiServer,
    Permissions,
    RecordingSink,
    endpoint_slice,
    service,
    slice_endpoint,
)

ROOT = Path(__file__).resolve().parents[2]


def test_httpx_example_runs_and_follows_a_rollout() -> None:
    """integrations/httpx_example.py balances over 3 pods, then drops the terminating and deleted one."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "integrations" / "httpx_example.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = {line[:34].strip(): line[34:] for line in out.splitlines() if "web-0:" in line}
    assert set(rows) == {"3 ready pods", "web-2 terminating", "web-2 deleted"}
    assert "web-2:" in rows["3 ready pods"]
    assert "web-2:" not in rows["web-2 terminating"]
    assert "web-2:" not in rows["web-2 deleted"]


def role_permissions(path: Path, namespace: str) -> Permissions:
    """The fake apiserver's Permissions for the Role in a manifest file (a RoleBinding in one namespace)."""
    (role,) = (doc for doc in yaml.safe_load_all(path.read_text()) if doc["kind"] == "Role")
    pairs = [f"{res}:{verb}" for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]]
    return Permissions.allow(*pairs, namespaces={namespace})


async def test_rbac_manifest_grants_what_discovery_needs() -> None:
    """With only integrations/kubernetes/rbac.yaml's Role, the watch works and the named port resolves."""
    async with FakeApiServer() as api, asyncio.timeout(20):
        api.set_tokens(
            {"test-token": role_permissions(ROOT / "integrations" / "kubernetes" / "rbac.yaml", "shop")}
        )
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": 8080}]))
        api.apply(endpoint_slice("web", "shop", endpoints=[slice_endpoint("10.0.0.1")]))
        client = await api.new_api_client()
        try:
            source = KubernetesSource("web.shop:http", api_client=client)
            assert await source.service_port() == 80
            sink = RecordingSink()
            task = asyncio.create_task(source.run(sink))
            while not sink.snapshots:  # noqa: ASYNC110 - bounded by the timeout above
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.wait({task})
            assert [ep.key for ep in sink.snapshots[-1]] == ["10.0.0.1:8080"]
            assert not sink.errors
            assert {r.status for r in api.requests if r.verb in ("list", "watch", "get")} <= {200}
        finally:
            await client.close()


def test_zone_deployment_sets_the_variables_zone_aware_reads() -> None:
    """deployment-zones.yaml sets KUBE_BALANCE_ZONE and NODE_NAME from the Downward API, and its
    ClusterRole grants exactly the Node read the zone lookup needs."""
    from kube_balance._zones import NODE_ENV, ZONE_ENV
    from kube_balance.discovery.kubernetes._node import ZONE_LABEL

    docs = list(
        yaml.safe_load_all((ROOT / "integrations" / "kubernetes" / "deployment-zones.yaml").read_text())
    )
    (deployment,) = (d for d in docs if d["kind"] == "Deployment")
    env = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env == {ZONE_ENV: f"metadata.labels['{ZONE_LABEL}']", NODE_ENV: "spec.nodeName"}
    (role,) = (d for d in docs if d["kind"] == "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]


def cluster_role_permissions(namespaces: set[str] | None) -> Permissions:
    """The fake apiserver's Permissions for rbac-cluster.yaml's ClusterRole, bound cluster-wide
    (``None``, its ClusterRoleBinding) or by RoleBindings in ``namespaces``."""
    path = ROOT / "integrations" / "kubernetes" / "rbac-cluster.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    (role,) = (doc for doc in docs if doc["kind"] == "ClusterRole")
    (binding,) = (doc for doc in docs if doc["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    pairs = [f"{res}:{verb}" for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]]
    return Permissions.allow(*pairs, namespaces=namespaces)


async def test_rbac_cluster_manifest_grants_what_cluster_mode_needs() -> None:
    """With only rbac-cluster.yaml's ClusterRole, the cluster client balances Services in every
    namespace (ClusterRoleBinding), or in the namespaces it is bound in with namespaces=[...];
    a namespace it may not read is a 403 error naming the rule and the option."""
    import httpx
    from helpers_cluster import pod_slice
    from helpers_pods import running_pods

    from kube_balance import DiscoveryAuthError
    from kube_balance.integrations.httpx import BalancedTransport

    async with FakeApiServer() as api, running_pods(2) as pods, asyncio.timeout(30):
        for ns, pod in (("shop", pods[0]), ("other", pods[1])):
            api.apply(service("web", ns))
            api.apply(pod_slice("web", ns, pod))
        for namespaces in (None, {"shop"}):
            api.set_tokens({"test-token": cluster_role_permissions(namespaces)})
            client = await api.new_api_client()
            try:
                transport = BalancedTransport.cluster(api_client=client, namespace="shop")
                async with httpx.AsyncClient(transport=transport) as http:
                    assert (await http.get("http://web/")).json()["pod"] == "pod-0"
                    if namespaces is None:
                        assert (await http.get("http://web.other/")).json()["pod"] == "pod-1"
                        assert {r.status for r in api.requests} == {200}
                    else:
                        with pytest.raises(DiscoveryAuthError, match=r"services.*namespaces=\[\.\.\.\]"):
                            await http.get("http://web.other/")
                restricted = BalancedTransport.cluster(
                    api_client=client, namespace="shop", namespaces=["shop"]
                )
                async with httpx.AsyncClient(transport=restricted) as http:
                    assert (await http.get("http://web.shop/")).json()["pod"] == "pod-0"
            finally:
                await client.close()
            api.requests.clear()
