"""A reference without a port: each slice's only TCP port; several ports are listed, never guessed."""

from __future__ import annotations

import pytest

from kube_balance import ConfigurationError, DiscoveryError, Endpoint, ServiceRef
from kube_balance.discovery import merge_slices
from kube_balance.discovery.kubernetes._incremental import SliceMerger
from kube_balance.discovery.kubernetes._merge import parse_slice
from kube_balance.discovery.kubernetes._service_port import pick_service_port
from kube_balance.testing import endpoint_slice, service

ONE_PORT = [{"name": "http", "port": 8080, "protocol": "TCP"}]
TWO_PORTS = [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}]


def test_the_only_port_of_each_slice_is_used() -> None:
    """port=None takes each slice's single TCP port (a UDP port beside it does not count)."""
    slices = [
        endpoint_slice("web", "shop", name="a", endpoints=["10.0.0.1"], ports=ONE_PORT),
        endpoint_slice(
            "web",
            "shop",
            name="b",
            endpoints=["10.0.0.2"],
            ports=[*ONE_PORT, {"port": 53, "protocol": "UDP"}],
        ),
    ]
    assert set(merge_slices(slices, None, service="web").endpoints) == {
        Endpoint("10.0.0.1", 8080),
        Endpoint("10.0.0.2", 8080),
    }


def test_several_ports_give_no_endpoint_and_list_the_choices() -> None:
    """A slice with several TCP ports contributes nothing and records name=number of each."""
    obj = endpoint_slice("web", "shop", name="a", endpoints=["10.0.0.1"], ports=TWO_PORTS)
    assert parse_slice(obj, None, "web").choices == ("http=8080", "metrics=9090")
    assert parse_slice(obj, "http", "web").choices == ()  # a named port is not ambiguous
    merger = SliceMerger(None, service="web")
    merger.upsert(obj)
    assert merger.endpoints() == () and merger.port_choices() == ("http=8080", "metrics=9090")
    merger.remove("a")
    assert merger.port_choices() == ()


def test_the_fallback_port_of_a_reference_without_port() -> None:
    """The Service's only port; with several, an error that is both discovery and configuration."""
    ref = ServiceRef.parse("web.shop")
    assert pick_service_port(service("web", "shop", ports=[{"name": "http", "port": 80}]), None, ref) == 80
    two = service("web", "shop", ports=[{"name": "http", "port": 80}, {"name": "grpc", "port": 9000}])
    with pytest.raises(
        DiscoveryError, match=r"several ports \(http=80, grpc=9000\).*'web\.shop:http'"
    ) as info:
        pick_service_port(two, None, ref)
    assert isinstance(info.value, ConfigurationError)
