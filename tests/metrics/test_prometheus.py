"""Prometheus metrics: a known sequence of requests through real pods, scraped over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable

import helpers_metrics  # noqa: F401 - makes helpers_pods importable
import httpx
import pytest
from aiohttp import web
from helpers_pods import SERVICE_HOST, pod_slice, running_pods
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kube_balance import ConfigurationError, Endpoint, EndpointSet, LoadBalancer, Outcome, metrics
from kube_balance.discovery import KubernetesSource
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeApiServer, Fault, service

URL = f"http://{SERVICE_HOST}"


async def until(condition: Callable[[], bool]) -> None:
    """Poll a condition on loop turns; bounded by the caller's timeout."""
    while not condition():  # noqa: ASYNC110 - the condition lives in the balancer
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def metrics_server(registry: CollectorRegistry) -> AsyncIterator[int]:
    """``/metrics`` over real HTTP on 127.0.0.1, as prometheus-client exposes it (every
    prometheus-client version alike; 0.19's start_http_server does not say its port)."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def parse(text: str) -> dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]:
    """family name -> (type, {sorted (sample name + labels): value})."""
    out = {}
    for fam in text_string_to_metric_families(text):
        samples = {}
        for s in fam.samples:
            samples[(("__name__", s.name), *sorted(s.labels.items()))] = s.value
        out[fam.name] = (fam.type, samples)
    return out


def value(families: dict, family: str, sample: str | None = None, **labels: str) -> float:
    """One sample's value (``sample`` defaults to the family name)."""
    _, samples = families[family]
    return samples[(("__name__", sample or family), *sorted(labels.items()))]


async def test_scrape_over_http_matches_a_known_sequence(rng: random.Random) -> None:
    """Names, types, labels and values over HTTP after 6 ok, 2 x 503 and one 429 through 3 real pods."""
    registry = CollectorRegistry()
    async with asyncio.timeout(30), FakeApiServer() as api, running_pods(3) as pods:
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
        for i, pod in enumerate(pods):
            api.apply(pod_slice(f"web-{i}", pod.port))
        api.apply(pod_slice("web-t", 1, ready=False, serving=True, terminating=True))
        api.inject(Fault.gone_in_stream())  # the first watch is told 410: one relist, one re-watch
        client_api = await api.new_api_client()
        try:
            source = KubernetesSource("web.shop:http", api_client=client_api)
            transport = BalancedTransport("web.shop:http", source=source, algorithm="round_robin", rng=rng)
            reg = metrics.register(transport.balancer, registry=registry, per_endpoint=True)
            assert reg.name == "web.shop:http"
            async with httpx.AsyncClient(transport=transport) as client:
                await transport.balancer.wait_ready(10)
                await until(lambda: len(transport.balancer.eligible) == 3)
                stats = source.watch_stats
                assert stats is not None
                await until(lambda: stats.lists == 2 and stats.watches == 2)
                for path in ["/"] * 6 + ["/status/503"] * 2 + ["/busy/1"]:
                    await client.get(f"{URL}{path}")

                async with metrics_server(registry) as port, httpx.AsyncClient() as scraper:
                    resp = await scraper.get(f"http://127.0.0.1:{port}/metrics")
        finally:
            await client_api.close()

    assert resp.status_code == 200
    f = parse(resp.text)
    name = {"name": "web.shop:http"}
    # The seed's four.
    assert f["kube_balance_lb_requests_inflight"][0] == "gauge"
    assert value(f, "kube_balance_lb_requests_inflight", **name) == 0
    assert f["kube_balance_lb_endpoints"][0] == "gauge"
    assert value(f, "kube_balance_lb_endpoints", **name) == 3
    assert f["kube_balance_lb_requests"][0] == "counter"
    assert value(f, "kube_balance_lb_requests", "kube_balance_lb_requests_total", **name) == 9
    assert (
        value(f, "kube_balance_lb_requests_overflowed", "kube_balance_lb_requests_overflowed_total", **name)
        == 0
    )
    # Endpoints as discovered: 3 ready pods and one terminating-but-serving.
    assert value(f, "kube_balance_lb_endpoints_discovered", **name) == 4
    for condition, n in {"ready": 3, "serving": 4, "terminating": 1}.items():
        assert value(f, "kube_balance_lb_endpoints_condition", condition=condition, **name) == n
    # Outcomes: every label present, zeros included.
    outcomes = {o.label: 0 for o in Outcome} | {"ok": 6, "server_error": 2, "overloaded": 1}
    for label, n in outcomes.items():
        total = "kube_balance_lb_request_outcomes_total"
        assert value(f, "kube_balance_lb_request_outcomes", total, outcome=label, **name) == n
    assert value(f, "kube_balance_lb_retries", "kube_balance_lb_retries_total", **name) == 0
    # Per endpoint (opt-in): round robin put 3 on each pod.
    for pod in pods:
        labels = {"endpoint": pod.key, "pod": "", **name}
        total = "kube_balance_lb_endpoint_requests_total"
        assert value(f, "kube_balance_lb_endpoint_requests", total, **labels) == 3
        assert value(f, "kube_balance_lb_endpoint_requests_inflight", **labels) == 0
    # The duration histogram: 9 observations, cumulative buckets ending at +Inf.
    hist = "kube_balance_lb_request_duration_seconds"
    assert f[hist][0] == "histogram"
    assert value(f, hist, f"{hist}_count", **name) == 9
    assert value(f, hist, f"{hist}_bucket", le="+Inf", **name) == 9
    assert 0 < value(f, hist, f"{hist}_sum", **name) < 9 * 5
    # The watch: one relist and one re-watch after the 410, counted by kind.
    assert value(f, "kube_balance_discovery_relists", "kube_balance_discovery_relists_total", **name) == 1
    restarts = "kube_balance_discovery_watch_restarts_total"
    assert value(f, "kube_balance_discovery_watch_restarts", restarts, **name) == 1
    errors = "kube_balance_discovery_errors_total"
    assert value(f, "kube_balance_discovery_errors", errors, kind="expired", **name) == 1
    assert 0 <= value(f, "kube_balance_discovery_last_event_age_seconds", **name) < 30


def static_lb(n: int, **kwargs: object) -> LoadBalancer:
    eps = [f"10.0.{i // 250}.{i % 250 + 1}:8080" for i in range(n)]
    return LoadBalancer("web.shop:http", source=StaticSource(eps), fallback="none", **kwargs)  # type: ignore[arg-type]


def test_nothing_registers_unless_asked_and_twice_is_an_error() -> None:
    """A new balancer exports nothing; the same balancer (or name) twice is a ConfigurationError."""
    registry = CollectorRegistry()
    lb, other = static_lb(2), static_lb(2)
    assert "kube_balance" not in registry_text(registry)
    first = metrics.register(lb, registry=registry)
    with pytest.raises(ConfigurationError, match="already registered"):
        metrics.register(lb, registry=registry, name="again")
    with pytest.raises(ConfigurationError, match="already used"):
        metrics.register(other, registry=registry)
    second = metrics.register(other, registry=registry, name="other")
    text = registry_text(registry)
    assert text.count("# TYPE kube_balance_lb_endpoints gauge") == 1  # one family, two balancers
    assert 'name="web.shop:http"' in text and 'name="other"' in text
    first.unregister()
    first.unregister()  # idempotent
    assert 'name="web.shop:http"' not in registry_text(registry)
    metrics.register(lb, registry=registry)  # allowed again after unregister()
    second.unregister()


def registry_text(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def test_bad_options_name_the_option() -> None:
    """A bad prefix, name, endpoint_limit or bucket list is a ConfigurationError naming it."""
    lb = static_lb(1)
    for kwargs, word in [
        ({"prefix": "1bad"}, "prefix"),
        ({"name": ""}, "name"),
        ({"endpoint_limit": 0}, "endpoint_limit"),
        ({"buckets": [1.0, 0.5]}, "buckets"),
        ({"buckets": []}, "buckets"),
    ]:
        with pytest.raises(ConfigurationError, match=word):
            metrics.register(lb, registry=CollectorRegistry(), **kwargs)  # type: ignore[arg-type]


def test_prefix_and_histogram_buckets() -> None:
    """Durations land in the right 'le' bucket (a bound counts in its bucket); the prefix applies."""
    registry = CollectorRegistry()
    lb = static_lb(1)
    metrics.register(lb, registry=registry, prefix="app", buckets=[0.1, 1.0])
    ep = Endpoint.parse("10.0.0.1:8080")
    for elapsed in (0.05, 0.1, 0.5, 2.0):
        lb.put(ep, elapsed, outcome=Outcome.OK)
    lb.put(ep, None, outcome=Outcome.CONNECT_FAILED)  # no duration: counted, not timed
    f = parse(registry_text(registry))
    h, name = "app_lb_request_duration_seconds", {"name": "web.shop:http"}
    assert [value(f, h, f"{h}_bucket", le=le, **name) for le in ("0.1", "1.0", "+Inf")] == [2, 3, 4]
    assert value(f, h, f"{h}_sum", **name) == pytest.approx(2.65)
    assert value(f, "app_lb_requests", "app_lb_requests_total", **name) == 5


def test_per_endpoint_series_are_capped() -> None:
    """With per_endpoint=True and endpoint_limit=10, 1,000 endpoints give 10 per-endpoint series."""
    lb = static_lb(1000)
    lb.on_endpoints(EndpointSet.of(f"10.1.{i // 250}.{i % 250 + 1}:80" for i in range(1000)))
    registry = CollectorRegistry()
    metrics.register(lb, registry=registry, per_endpoint=True, endpoint_limit=10)
    f = parse(registry_text(registry))
    assert len(f["kube_balance_lb_endpoint_requests_inflight"][1]) == 10
    assert value(f, "kube_balance_lb_endpoints_discovered", name="web.shop:http") == 1000
    plain = CollectorRegistry()
    metrics.register(lb, registry=plain)
    assert "kube_balance_lb_endpoint_requests" not in registry_text(plain)  # off by default


def test_health_series_follow_ejection_penalty_and_zone_spill() -> None:
    """Five consecutive failures eject an endpoint (lb_endpoints_ejected 1, lb_ejections_total 1),
    a 429 with Retry-After penalises another, and a zone filter's series appear only with one."""
    lb = static_lb(1)
    lb.on_endpoints(EndpointSet.of([f"10.0.0.{i}:8080" for i in range(1, 11)]))
    registry = CollectorRegistry()
    metrics.register(lb, registry=registry)
    name = {"name": "web.shop:http"}
    before = parse(registry_text(registry))
    assert value(before, "kube_balance_lb_endpoints_ejected", **name) == 0
    assert value(before, "kube_balance_lb_ejections", "kube_balance_lb_ejections_total", **name) == 0
    bad, busy = Endpoint.parse("10.0.0.1:8080"), Endpoint.parse("10.0.0.2:8080")
    for _ in range(5):
        lb.put(bad, 0.001, outcome=Outcome.CONNECT_FAILED)
    lb.put(busy, 0.001, outcome=Outcome.OVERLOADED, status=429, retry_after=7.0)
    after = parse(registry_text(registry))
    assert value(after, "kube_balance_lb_endpoints_ejected", **name) == 1
    assert value(after, "kube_balance_lb_ejections", "kube_balance_lb_ejections_total", **name) == 1
    assert value(after, "kube_balance_lb_endpoints_penalized", **name) == 1
    assert value(after, "kube_balance_lb_panic", **name) == 0
    assert "kube_balance_lb_zone_spilling" not in registry_text(registry)  # no zone filter

    from kube_balance import ZoneAware

    zoned = LoadBalancer(
        "cart.shop:http", source=StaticSource([]), policy=ZoneAware(zone="a").policy(), fallback="none"
    )
    zoned_registry = CollectorRegistry()
    metrics.register(zoned, registry=zoned_registry)
    z = parse(registry_text(zoned_registry))
    assert value(z, "kube_balance_lb_zone_spilling", name="cart.shop:http") == 0
    assert (
        value(z, "kube_balance_lb_zone_spills", "kube_balance_lb_zone_spills_total", name="cart.shop:http")
        == 0
    )
