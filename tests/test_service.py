"""ServiceRef.parse: every accepted form, round trips, and typed errors for anything else."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_balance import ConfigurationError, ServiceRef, _service


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web.shop:http", ServiceRef("web", "shop", "http")),
        ("web.shop:8080", ServiceRef("web", "shop", 8080)),
        ("web.shop.svc:http", ServiceRef("web", "shop", "http")),
        ("web.shop.svc.cluster.local:http", ServiceRef("web", "shop", "http")),
        ("web.shop.svc.corp.example:80", ServiceRef("web", "shop", 80, cluster_domain="corp.example")),
        ("http://web.shop:http", ServiceRef("web", "shop", "http", scheme="http")),
        ("HTTPS://web.shop:8443/", ServiceRef("web", "shop", 8443, scheme="https")),
        ("https://web.shop", ServiceRef("web", "shop", 443, scheme="https")),
        ("http://web.shop", ServiceRef("web", "shop", 80, scheme="http")),
        ("web-2.team-a:grpc-web", ServiceRef("web-2", "team-a", "grpc-web")),
        ("web.shop.svc.cluster.local.:http", ServiceRef("web", "shop", "http")),
        ("web.shop.svc.corp.example.:80", ServiceRef("web", "shop", 80, cluster_domain="corp.example")),
        ("web.shop.svc.local.:80", ServiceRef("web", "shop", 80, cluster_domain="local")),
        ("foo.ns", ServiceRef("foo", "ns", None)),
        ("bar.ns.svc", ServiceRef("bar", "ns", None)),
        ("bar.ns.svc.cluster.local", ServiceRef("bar", "ns", None)),
        ("bar.ns.svc.cluster.local.", ServiceRef("bar", "ns", None)),
        ("http://bar.ns.svc.cluster.local.", ServiceRef("bar", "ns", 80, scheme="http")),
    ],
)
def test_accepted_forms(text: str, expected: ServiceRef) -> None:
    """Each documented form parses to the expected reference."""
    assert ServiceRef.parse(text) == expected


def test_str_round_trips() -> None:
    """str() gives a form that parses back to an equal reference."""
    texts = ["web.shop:http", "https://web.shop.svc.corp.example:443", "http://a.b:1", "x.y.svc:65535"]
    for text in [*texts, "web.shop", "bar.ns.svc.corp.example.", "https://web.shop"]:
        ref = ServiceRef.parse(text)
        assert ServiceRef.parse(str(ref)) == ref


def test_host_names() -> None:
    """host is the cluster DNS name; hosts lists every name a request may use."""
    ref = ServiceRef.parse("web.shop:http")
    assert ref.host == "web.shop.svc.cluster.local"
    assert ServiceRef.parse("web.shop.svc.corp:1").host == "web.shop.svc.corp"
    assert str(ServiceRef.parse("web.shop")) == "web.shop"


def test_hosts_include_bare_name_only_from_the_services_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every form naming the Service matches, trailing dot too; bare `web` only from its namespace."""
    ns_file = tmp_path / "namespace"
    ns_file.write_text("shop\n")
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(ns_file))
    full = {"web.shop", "web.shop.svc", "web.shop.svc.cluster.local"}
    with_dots = full | {f"{h}." for h in full}
    assert ServiceRef.parse("web:http").hosts == with_dots | {"web", "web."}
    assert ServiceRef.parse("web.shop:http").hosts == with_dots | {"web", "web."}
    # From namespace "other", a bare "web" is web.other: not this Service.
    ns_file.write_text("other\n")
    assert ServiceRef.parse("web.shop:http").hosts == with_dots
    assert "web" in ServiceRef.parse("web:http").hosts  # web:http now means web.other


def test_namespace_from_argument_file_kubeconfig_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """name:port takes the namespace from the argument, the in-cluster file, the kubeconfig, else default."""
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    assert ServiceRef.parse("web:80").namespace == "default"
    assert ServiceRef.parse("web:80", default_namespace="given").namespace == "given"

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: from-kubeconfig}}]\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert ServiceRef.parse("web:80").namespace == "from-kubeconfig"

    ns_file = tmp_path / "namespace"
    ns_file.write_text("in-cluster\n")
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(ns_file))
    assert ServiceRef.parse("web:80").namespace == "in-cluster"


def test_namespace_from_the_current_context_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Of several kubeconfig contexts, the current one's namespace counts, not the first listed."""
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(tmp_path / "missing"))
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: second\n"
        "contexts: [{name: first, context: {cluster: k, user: u, namespace: first-ns}},"
        " {name: second, context: {cluster: k, user: u, namespace: second-ns}}]\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert ServiceRef.parse("web:80").namespace == "second-ns"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the name is missing"),
        (":80", "the name is missing"),
        ("10.0.0.1:8080", "10.0.0.1 is an IP address, not a Service"),
        ("10.0.0.1", "IP address, not a Service"),
        ("[fd00::1]", "fd00::1 is an IP address, not a Service"),
        ("[fd00::1]:8080", "IP address, not a Service"),
        ("fd00::1", "IP address, not a Service"),
        ("web..shop:http", "empty label"),
        ("web.shop.:http", "trailing dot"),
        ("web.:http", "trailing dot"),
        ("web.:http", "absolute DNS name"),
        ("web.shop.svc.:http", "absolute DNS name"),
        ("web.shop:http:x", "a second ':' after the port 'http'"),
        ("web.shop:", "neither a number nor a port name"),
        ("ftp://web.shop:21", "scheme 'ftp'"),
        ("web.shop:0", "not in 1..65535"),
        ("web.shop:70000", "not in 1..65535"),
        ("web.shop:HTTP", "port name"),
        ("web.shop:a--b", "port name"),
        ("web.shop:this-name-is-too-long", "port name"),
        ("web.shop:123-", "port name"),
        ("Web.shop:80", "DNS-1035"),
        ("1web.shop:80", "DNS-1035"),
        ("web.Shop:80", "DNS-1123"),
        ("web.shop.pod:80", "expected 'svc'"),
        ("web.shop.svc.bad_domain:80", "cluster domain"),
        ("web.shop:80/path", "path"),
        ("user@web.shop:80", "user part"),
        (".shop:80", "empty label"),
    ],
)
def test_rejected_with_named_problem(text: str, fragment: str) -> None:
    """Invalid references raise ConfigurationError naming the input and what is wrong."""
    with pytest.raises(ConfigurationError, match=fragment) as info:
        ServiceRef.parse(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_string_rejected() -> None:
    """A non-str input is a ConfigurationError, not an AttributeError."""
    with pytest.raises(ConfigurationError, match="must be a str"):
        ServiceRef.parse(8080)  # type: ignore[arg-type]


_alphabet = st.sampled_from([*list("abcz09-.:/_@?#[]AZ "), "://", "svc", "http", "https", ".svc.", "é", "٣"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(_alphabet, max_size=24).map("".join))
def test_fuzz_only_configuration_error_escapes(text: str) -> None:
    """Any string either parses to a reference that round-trips, or raises ConfigurationError."""
    try:
        ref = ServiceRef.parse(text, default_namespace="fuzz")
    except ConfigurationError:
        return
    assert ServiceRef.parse(str(ref), default_namespace="fuzz") == ref


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40))
def test_fuzz_arbitrary_text(text: str) -> None:
    """Arbitrary unicode never raises anything but ConfigurationError."""
    with contextlib.suppress(ConfigurationError):
        ServiceRef.parse(text, default_namespace="fuzz")


TWO_CONTEXTS = (
    "apiVersion: v1\nkind: Config\ncurrent-context: main\n"
    "contexts: [{name: main, context: {cluster: k, user: u, namespace: shop}},"
    " {name: other, context: {cluster: k, user: u, namespace: billing}}, {name: bare, context: {cluster: k, user: u}}]\n"
    "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {}}]\n"
)


def test_a_client_given_a_kubeconfig_takes_its_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kubeconfig=`` / ``context=`` given to a source or a cluster client decide a bare name's
    namespace (they were ignored: $KUBECONFIG's, or "default", was used), and the in-cluster file
    does not override a configuration the client was pointed at."""
    from kube_balance import LoadBalancer
    from kube_balance.discovery import KubernetesSource
    from kube_balance.integrations.httpx import BalancedTransport

    ns_file = tmp_path / "namespace"
    ns_file.write_text("in-cluster\n")
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(ns_file))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    path = tmp_path / "kubeconfig"
    path.write_text(TWO_CONTEXTS)
    kc = str(path)
    assert _service.client_namespace() == "in-cluster"
    assert _service.client_namespace(kc) == "shop"
    assert _service.client_namespace(kc, "other") == "billing"
    assert _service.client_namespace(kc, "bare") == "default"  # a context without a namespace
    assert _service.client_namespace(kc, "nope") == "default"
    assert _service.client_namespace(f"{kc}{os.pathsep}{tmp_path / 'second'}") == "shop"  # the first file
    assert _service.client_namespace(str(tmp_path / "missing")) == "default"
    monkeypatch.setenv("KUBECONFIG", kc)
    assert _service.client_namespace(context="other") == "billing"  # $KUBECONFIG's file, that context

    source = KubernetesSource("web:http", kubeconfig=kc)
    assert source.service.namespace == "shop"
    assert KubernetesSource("web:http", kubeconfig=kc, context="other").service.namespace == "billing"
    assert KubernetesSource("web.ops:http", kubeconfig=kc).service.namespace == "ops"  # as written
    assert KubernetesSource("web:http").service.namespace == "in-cluster"  # no configuration given
    assert LoadBalancer("web:http", source=source).service.namespace == "shop"  # its source's
    assert LoadBalancer("web.ops:http", source=source).service.namespace == "ops"
    assert BalancedTransport("web:http", source=source).balancers[0].service.namespace == "shop"
    assert LoadBalancer("web:http").service.namespace == "in-cluster"


async def test_a_cluster_client_given_a_kubeconfig_takes_its_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``BalancedTransport.cluster(kubeconfig=...)`` resolves bare names in that file's context's
    namespace (it sent ``http://cart/`` past the table, as a host that is not a Service)."""
    from kube_balance.integrations.httpx import BalancedTransport

    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    path = tmp_path / "kubeconfig"
    path.write_text(TWO_CONTEXTS)
    transport = BalancedTransport.cluster(kubeconfig=str(path))
    other = BalancedTransport.cluster(kubeconfig=str(path), context="other")
    try:
        assert transport.cluster_routes is not None and transport.cluster_routes.namespace == "shop"
        assert other.cluster_routes is not None and other.cluster_routes.namespace == "billing"
    finally:
        await asyncio.wait_for(transport.aclose(), 5)
        await asyncio.wait_for(other.aclose(), 5)
