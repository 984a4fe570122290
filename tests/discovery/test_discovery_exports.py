"""The discovery package's public surface: sorted __all__, every name importable, sources fit the protocol."""

from __future__ import annotations

import kube_balance.discovery as discovery
import kube_balance.discovery.kubernetes as kubernetes
from kube_balance.discovery import DnsSource, EndpointSource, KubernetesSource, StaticSource


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and every listed name exists, in both discovery packages."""
    for module in (discovery, kubernetes):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert getattr(module, name) is not None, name


def test_every_source_is_an_endpoint_source() -> None:
    """Kubernetes, DNS and static sources all satisfy the EndpointSource protocol."""
    for source in (KubernetesSource("web.shop:http"), DnsSource("web", 80), StaticSource(["10.0.0.1:80"])):
        assert isinstance(source, EndpointSource)
    assert "web.shop:http" in repr(KubernetesSource("web.shop:http"))
