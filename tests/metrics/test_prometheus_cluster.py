"""Prometheus metrics of a cluster client: its balancers come and go, and so do their series
(prometheus-client's real registry and text format, the fake apiserver, real pods, a fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import weakref
from collections.abc import AsyncIterator
from typing import Any

import helpers_metrics  # noqa: F401 - makes helpers_pods and helpers_cluster importable
import httpx
import pytest
from helpers_cluster import api_client, pod_slice
from helpers_pods import running_pods
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kube_balance import ConfigurationError, LoadBalancer, metrics
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeApiServer, FakeClock, service


def names_exported(
    registry: CollectorRegistry, series: str = "kube_balance_lb_endpoints"
) -> dict[str, float]:
    """``name`` label -> value of one series, as scraped."""
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            if s.name == series:
                out[s.labels["name"]] = s.value
    return out


def requests_counted(registry: CollectorRegistry) -> dict[str, float]:
    return names_exported(registry, "kube_balance_lb_request_duration_seconds_count")


@contextlib.asynccontextmanager
async def cluster(
    **options: Any,
) -> AsyncIterator[tuple[FakeApiServer, BalancedTransport, httpx.AsyncClient]]:
    """Services a, b and web in shop, one pod each, and a cluster client on them."""
    async with FakeApiServer() as api, running_pods(3) as pods:
        for name, pod in zip(("a", "b", "web"), pods, strict=True):
            api.apply(service(name, "shop"))
            api.apply(pod_slice(name, "shop", pod))
        async with api_client(api) as client:
            transport = BalancedTransport.cluster(
                api_client=client, namespace="shop", rng=random.Random(3), **options
            )
            async with httpx.AsyncClient(transport=transport) as http:
                yield api, transport, http


async def test_balancers_appear_when_they_start_and_go_when_idle() -> None:
    """One register() call: no series before a Service is used; each Service's series appear with
    its watch (durations counted from its first request) and go when the idle sweep stops it;
    nothing of the stopped balancer is kept (its observers are detached, it is collected)."""
    clock = FakeClock()
    registry = CollectorRegistry()
    async with asyncio.timeout(30), cluster(clock=clock, idle_timeout=60) as (_, transport, http):
        registration = metrics.register(transport, registry=registry)
        assert names_exported(registry) == {} and registration.names == []
        await http.get("http://a/")
        await http.get("http://b.shop/")
        await http.get("http://b.shop/")
        assert names_exported(registry) == {"a.shop:http": 1, "b.shop:http": 1}
        assert requests_counted(registry) == {"a.shop:http": 1, "b.shop:http": 2}
        (a,) = (b for b in transport.balancers if b.service.name == "a")
        assert [type(o).__name__ for o in a._observers].count("DurationRecorder") == 1
        clock.advance(30)
        await http.get("http://b/")
        clock.advance(30)
        table = transport.cluster_routes
        assert table is not None
        assert await table.sweep() == ["shop/a"]
        assert names_exported(registry) == {"b.shop:http": 1}
        assert registration.names == ["b.shop:http"]
        assert "DurationRecorder" not in [type(o).__name__ for o in a._observers]
        gone = weakref.ref(a)
        del a
        gc.collect()
        assert gone() is None  # neither the registration nor the collector holds it
        await http.get("http://a/")  # started again: exported again, counting from zero
        assert requests_counted(registry) == {"a.shop:http": 1, "b.shop:http": 3}


async def test_an_evicted_balancer_leaves_and_close_removes_all() -> None:
    """max_services=2: the least recently used Service evicted for a third takes its series
    along; closing the client removes the rest; unregister() drops the collector."""
    clock = FakeClock()
    registry = CollectorRegistry()
    async with asyncio.timeout(30), cluster(clock=clock, max_services=2) as (_, transport, http):
        await http.get("http://a/")  # registered after a balancer started: it is picked up
        registration = metrics.register(transport, registry=registry, name="gw")
        assert names_exported(registry) == {"gw/a.shop:http": 1}
        clock.advance(1)
        await http.get("http://b/")
        clock.advance(1)
        await http.get("http://web/")
        assert names_exported(registry) == {"gw/b.shop:http": 1, "gw/web.shop:http": 1}
    assert names_exported(registry) == {}  # the client closed: every balancer stopped
    collectors = metrics._collectors  # the registration holds its collector until unregister()
    assert list(collectors[registry]) == ["kube_balance"]
    registration.unregister()
    registration.unregister()  # idempotent
    assert registry not in collectors or not collectors[registry]
    assert generate_latest(registry) == b""


async def test_a_name_already_used_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A cluster balancer whose label a named balancer already has in the registry is not
    exported (a warning says to pass name=); the request is not affected."""
    registry = CollectorRegistry()
    named = LoadBalancer("a.shop:http", source=StaticSource(["127.0.0.1:1"]))
    metrics.register(named, registry=registry)
    async with asyncio.timeout(30), cluster() as (_, transport, http):
        registration = metrics.register(transport, registry=registry)
        with caplog.at_level(logging.WARNING, logger="kube_balance"):
            assert (await http.get("http://a/")).status_code == 200
        assert "name 'a.shop:http' is already used" in caplog.text
        assert registration.names == []
        await http.get("http://b/")
        assert registration.names == ["b.shop:http"]


async def test_register_refuses_a_client_of_named_services() -> None:
    """register() takes a LoadBalancer or a cluster client; a transport for named Services is
    refused with what to register instead."""
    transport = BalancedTransport("web.shop:http", source=StaticSource(["127.0.0.1:1"]))
    with pytest.raises(ConfigurationError, match=r"register each of its \.balancers"):
        metrics.register(transport, registry=CollectorRegistry())
    with pytest.raises(ConfigurationError, match="expected a LoadBalancer, or a cluster client"):
        metrics.register(object(), registry=CollectorRegistry())
    await transport.aclose()
