"""Endpoint and EndpointSet: validation, keys, conditions."""

from __future__ import annotations

import dataclasses

import pytest

from kube_balance import ConfigurationError, Endpoint, EndpointSet


def test_key_ipv4_and_ipv6() -> None:
    """Keys are address:port, with IPv6 in brackets and normalised."""
    assert Endpoint("10.0.0.1", 8080).key == "10.0.0.1:8080"
    ep = Endpoint("FD00:0::1", 8080)
    assert ep.address == "fd00::1"
    assert ep.key == "[fd00::1]:8080"
    assert ep.host == "[fd00::1]"
    assert ep.family == 6


def test_defaults_follow_kubernetes_nil_rules() -> None:
    """ready and serving default to true, terminating to false, weight to 1."""
    ep = Endpoint("10.0.0.1", 80)
    assert (ep.ready, ep.serving, ep.terminating, ep.weight) == (True, True, False, 1)


def test_frozen_and_slotted() -> None:
    """Endpoints are immutable and carry no __dict__."""
    ep = Endpoint("10.0.0.1", 80)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ep.port = 81  # type: ignore[misc]
    assert not hasattr(ep, "__dict__")


@pytest.mark.parametrize(
    ("address", "port", "weight", "fragment"),
    [
        ("not-an-ip", 80, 1, "not an IPv4 or IPv6"),
        ("10.0.0.1", 0, 1, "not in 1..65535"),
        ("10.0.0.1", 65536, 1, "not in 1..65535"),
        ("10.0.0.1", True, 1, "not in 1..65535"),
        ("10.0.0.1", 80, -1, "weight"),
    ],
)
def test_invalid_endpoint_raises_configuration_error(
    address: str, port: int, weight: int, fragment: str
) -> None:
    """Bad addresses, ports and weights raise ConfigurationError naming the value."""
    with pytest.raises(ConfigurationError, match=fragment):
        Endpoint(address, port, weight=weight)


def test_parse_round_trips_key() -> None:
    """Endpoint.parse accepts what .key produces, for both families."""
    for text in ["10.1.2.3:80", "[fd00::1]:8443"]:
        assert Endpoint.parse(text).key == text


@pytest.mark.parametrize("text", ["10.0.0.1", "fd00::1:80", ":80", "10.0.0.1:http", "[fd00::1]"])
def test_parse_rejects_malformed(text: str) -> None:
    """Malformed host:port strings raise ConfigurationError naming the input."""
    with pytest.raises(ConfigurationError, match="endpoint"):
        Endpoint.parse(text)


def test_endpoint_set_dedupes_by_key_and_counts_conditions() -> None:
    """A set keeps the first endpoint of each key and counts endpoints by condition."""
    eps = EndpointSet.of(
        [
            Endpoint("10.0.0.1", 80),
            Endpoint("10.0.0.1", 80, ready=False),
            Endpoint("10.0.0.2", 80, ready=False, serving=True, terminating=True),
            Endpoint("10.0.0.3", 80, ready=False, serving=False),
        ],
        resource_version="42",
    )
    assert len(eps) == 3
    assert eps.resource_version == "42"
    assert [e.key for e in eps.ready()] == ["10.0.0.1:80"]
    assert [e.key for e in eps.serving_terminating()] == ["10.0.0.2:80"]
    assert eps.counts() == {"total": 3, "ready": 1, "serving_terminating": 1, "not_ready": 1}
    assert "10.0.0.3:80" in eps
    assert Endpoint("10.0.0.9", 80) not in eps
