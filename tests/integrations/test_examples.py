"""The runnable examples and manifests under integrations/ stay true: run them against the fake apiserver."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def run_example(name: str) -> str:
    """Run integrations/NAME as a user would (``python integrations/NAME``); its stdout."""
    return subprocess.run(
        [sys.executable, str(ROOT / "integrations" / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def pod_counts(line: str) -> dict[str, int]:
    """``label   web-0:   4  web-1:   4`` -> {"web-0": 4, "web-1": 4}."""
    return {m[0]: int(m[1]) for m in re.findall(r"(web-\d+):\s+(\d+)", line)}


def test_aiohttp_example_balances_each_request_and_routes_around_a_refusing_pod() -> None:
    """integrations/aiohttp_example.py: 12 sequential requests land 4/4/4 (round robin over kept-alive
    connections); with a 4th pod refusing connections, all 300 requests succeed on the other three,
    retried there, and the refusing pod is ejected."""
    out = run_example("aiohttp_example.py")
    rows = {line[:34].strip(): line[34:].strip() for line in out.splitlines()}
    assert pod_counts(rows["12 requests, 3 pods"]) == {"web-0": 4, "web-1": 4, "web-2": 4}
    refusing = pod_counts(rows["web-3 refuses connections"])
    assert set(refusing) == {"web-0", "web-1", "web-2"} and sum(refusing.values()) == 300
    assert int(rows["retried on another pod"]) >= 1
    assert re.fullmatch(r"127\.0\.0\.1:\d+", rows["ejected"])  # web-3, the only closed port


def test_fastapi_example_keeps_each_user_on_one_pod() -> None:
    """integrations/fastapi_example.py: the FastAPI service forwards X-User as the affinity key, so
    ring_hash sends each of 6 users to one pod of web.shop (20 requests each), over several pods."""
    out = run_example("fastapi_example.py")
    users = dict(re.findall(r"^(\w+)\s+-> (.+)$", out, re.MULTILINE))
    assert set(users) == {"alice", "bob", "carol", "dave", "erin", "frank"}
    assert all(re.fullmatch(r"web-\d", pods) for pods in users.values()), users  # one pod each
    assert len(set(users.values())) >= 2


def test_proxy_sidecar_example_runs_the_manifests_command() -> None:
    """integrations/proxy_sidecar_example.py runs the sidecar's command from the manifest: 300 plain
    requests through it reach all 3 pods, /metrics counts them, and SIGTERM exits 0."""
    out = run_example("proxy_sidecar_example.py")
    (line,) = (x for x in out.splitlines() if x.startswith("300 requests through the sidecar"))
    counts = pod_counts(line)
    assert set(counts) == {"web-0", "web-1", "web-2"} and sum(counts.values()) == 300
    assert "kube_balance_lb_requests_total" in out
    assert out.splitlines()[-1] == "SIGTERM: the proxy exited 0"


MANIFESTS = ROOT / "integrations" / "kubernetes"


def manifest(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


def test_rbac_role_is_least_privilege() -> None:
    """The Role grants exactly: list and watch EndpointSlices; get the called Services (by name).
    No get on slices, no write verb, no Secrets, no wildcard; the binding is to the ServiceAccount."""
    docs = {doc["kind"]: doc for doc in manifest("rbac.yaml")}
    assert set(docs) == {"ServiceAccount", "Role", "RoleBinding"}
    assert docs["Role"]["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["services"], "resourceNames": ["web"], "verbs": ["get"]},
    ]
    binding = docs["RoleBinding"]
    account = docs["ServiceAccount"]["metadata"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": docs["Role"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    for doc in docs.values():
        assert doc["metadata"]["namespace"] == account["namespace"]


def library_environment() -> set[str]:
    """Every environment variable the library's own code reads (os.environ / environ.get / *_ENV)."""
    names: set[str] = set()
    for path in (ROOT / "src" / "kube_balance").rglob("*.py"):
        text = path.read_text()
        names.update(re.findall(r"(?:environ(?:\.get\(|\[)|getenv\()\s*\"([A-Z][A-Z0-9_]*)\"", text))
        names.update(re.findall(r"^[A-Z_]*_ENV\s*=\s*\"([A-Z][A-Z0-9_]*)\"", text, re.MULTILINE))
    return names


LIBRARY_CONTAINERS = {"client", "kube-balance"}
"""The containers of the example manifests that run kube-balance (the others are your application)."""


def test_manifests_set_only_variables_the_library_reads() -> None:
    """The library reads exactly these variables (a new one must be documented and, if a pod
    should set it, shown in a manifest); every variable a manifest sets on a container that runs
    kube-balance is one of them; the user docs name each."""
    read = library_environment()
    assert read == {"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBE_BALANCE_ZONE", "NODE_NAME", "POD_NAME"}
    seen = set()
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in manifest(path.name):
            if doc["kind"] != "Deployment":
                continue
            spec = doc["spec"]["template"]["spec"]
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                if container["name"] in LIBRARY_CONTAINERS:
                    names = {e["name"] for e in container.get("env", [])}
                    assert names <= read, (path.name, names - read)
                    seen |= names
    assert seen == {"KUBE_BALANCE_ZONE", "NODE_NAME"}
    docs = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    assert {name for name in read if name not in docs} == set()


def test_every_deployment_runs_as_the_service_account_rbac_yaml_binds() -> None:
    """Each example Deployment runs in rbac.yaml's namespace as the ServiceAccount its RoleBinding binds."""
    (account,) = (d for d in manifest("rbac.yaml") if d["kind"] == "ServiceAccount")
    for path in sorted(MANIFESTS.glob("deployment-*.yaml")):
        for doc in manifest(path.name):
            if doc["kind"] == "Deployment":
                assert doc["metadata"]["namespace"] == account["metadata"]["namespace"], path.name
                assert doc["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_proxy_sidecar_args_are_accepted_by_the_cli_parser() -> None:
    """The sidecar's command line parses with the real `kube-balance` parser, into the values the
    rest of the manifest relies on: the app's WEB_URL port, the metrics port and its probe."""
    from kube_balance.cli import build_parser

    (deployment,) = manifest("deployment-proxy-sidecar.yaml")
    spec = deployment["spec"]["template"]["spec"]
    (sidecar,) = spec["initContainers"]
    (app,) = spec["containers"]
    assert sidecar["command"] == ["kube-balance"]
    assert sidecar["restartPolicy"] == "Always"  # a native sidecar: up before the app, down after
    args = build_parser().parse_args(sidecar["args"])
    assert args.command == "proxy"
    assert str(args.service) == "web.shop:http"
    assert args.listen == ("127.0.0.1", 8081)
    assert {e["name"]: e["value"] for e in app["env"]} == {"WEB_URL": "http://127.0.0.1:8081"}
    (port,) = sidecar["ports"]
    assert args.metrics_listen == ("0.0.0.0", port["containerPort"])
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/metrics", "port": port["name"]}
    assert args.fallback == "service" and args.algorithm == "peak_ewma"
    assert args.grace < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_proxy_sidecar_args_typo_is_refused() -> None:
    """The parser check above can fail: a misspelt option in the same place is refused."""
    from kube_balance.cli import build_parser

    (deployment,) = manifest("deployment-proxy-sidecar.yaml")
    args = list(deployment["spec"]["template"]["spec"]["initContainers"][0]["args"])
    args[args.index("--listen")] = "--listn"
    with pytest.raises(SystemExit):
        build_parser().parse_args(args)
