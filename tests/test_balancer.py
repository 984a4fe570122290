"""LoadBalancer: lifecycle, policy application, status, wait_ready and the fallback target."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable

import pytest

from kube_balance import ConfigurationError, DiscoveryError, Endpoint, NoEndpointsAvailable, create
from kube_balance._balancer import FallbackTarget, LoadBalancer
from kube_balance.discovery.static import StaticSource
from kube_balance.testing import FakeClock


class CountingRoundRobin:
    """A real round robin that counts update() calls."""

    name = "round_robin"
    requires_key = False

    def __init__(self, rng: random.Random) -> None:
        self.inner = create("round_robin", rng=rng)
        self.updates: list[tuple[str, ...]] = []

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        return self.inner.get(key)

    def put(self, endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        self.inner.put(endpoint, elapsed, failed)

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        eps = tuple(endpoints)
        self.updates.append(tuple(e.key for e in eps))
        self.inner.update(eps)

    def inflight(self, endpoint: Endpoint | str) -> int:
        return self.inner.inflight(endpoint)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.inner.endpoints


class PortSource(StaticSource):
    """A static source that can also resolve the Service port, like KubernetesSource."""

    def __init__(self, port: int | Exception) -> None:
        super().__init__([])
        self.port = port
        self.calls = 0

    async def service_port(self) -> int:
        self.calls += 1
        if isinstance(self.port, Exception):
            raise self.port
        return self.port


async def test_context_manager_starts_and_stops_the_watcher(rng: random.Random) -> None:
    """Inside ``async with`` the watcher runs and endpoints arrive; after it, it has stopped."""
    lb = LoadBalancer("web.shop:http", source=StaticSource(["10.0.0.1:80"]), rng=rng)
    assert not lb.running
    async with lb:
        assert lb.running
        await lb.wait_ready(1)
        assert lb.get() == Endpoint("10.0.0.1", 80)
    assert not lb.running


async def test_first_get_in_a_running_loop_starts_lazily(rng: random.Random) -> None:
    """get() starts the watcher; the snapshot arrives on the next loop turn."""
    lb = LoadBalancer("web.shop:http", source=StaticSource(["10.0.0.1:80"]), rng=rng)
    assert lb.get() is None
    assert lb.running
    await asyncio.wait_for(lb.ensure_started(), 1)
    assert lb.get() == Endpoint("10.0.0.1", 80)
    await lb.aclose()


def test_get_outside_a_loop_does_not_start(rng: random.Random) -> None:
    """Without a running loop get() just asks the algorithm (nothing to start yet)."""
    lb = LoadBalancer("web.shop:http", source=StaticSource(["10.0.0.1:80"]), rng=rng)
    assert lb.get() is None and not lb.running


def test_get_outside_a_loop_never_tries_to_start(rng: random.Random) -> None:
    """Outside a running loop get() does not call start() at all (no error raised and swallowed
    per call); the first get() inside a loop still starts the watcher."""
    lb = LoadBalancer("web.shop:http", source=StaticSource(["10.0.0.1:80"]), rng=rng)
    starts: list[bool] = []
    start = lb.start

    def counting_start() -> None:
        starts.append(True)
        start()

    lb.start = counting_start  # type: ignore[method-assign]
    for _ in range(3):
        assert lb.get() is None
    assert starts == [] and not lb.running

    async def in_a_loop() -> None:
        assert lb.get() is None  # the first snapshot arrives on the next loop turn
        assert starts == [True] and lb.running
        await asyncio.wait_for(lb.ensure_started(), 1)
        assert lb.get() == Endpoint("10.0.0.1", 80)
        assert starts == [True]  # started once
        await lb.aclose()

    asyncio.run(asyncio.wait_for(in_a_loop(), 5))


async def test_algorithm_update_only_when_the_eligible_set_changes(rng: random.Random) -> None:
    """A snapshot that changes only non-eligible endpoints does not touch the algorithm."""
    algo = CountingRoundRobin(rng)
    source = StaticSource(["10.0.0.1:80"])
    async with LoadBalancer("web.shop:http", source=source, algorithm=algo) as lb:
        await lb.wait_ready(1)
        source.set(["10.0.0.1:80", Endpoint("10.0.0.2", 80, ready=False, serving=False)])
        source.set(["10.0.0.1:80"])
        source.set(["10.0.0.1:80", "10.0.0.3:80"])
        source.set([Endpoint("10.0.0.1", 80, ready=False, serving=True, terminating=True)])
    assert algo.updates == [("10.0.0.1:80",), ("10.0.0.1:80", "10.0.0.3:80"), ("10.0.0.1:80",)]


async def test_status_and_repr_show_counts_version_and_error(rng: random.Random) -> None:
    """status() and repr() show endpoints by condition, resourceVersion and the last error."""
    lb = LoadBalancer("web.shop:http", source=StaticSource([]), algorithm="round_robin", rng=rng)
    from kube_balance import EndpointSet

    lb.on_endpoints(
        EndpointSet(
            (Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80, ready=False, terminating=True)),
            resource_version="4711",
        )
    )
    lb.on_error(DiscoveryError("403 forbidden: endpointslices"))
    status = lb.status()
    assert status.counts == {"total": 2, "ready": 1, "serving_terminating": 1, "not_ready": 0}
    assert (status.eligible, status.resource_version, status.fallback) == (1, "4711", "service")
    assert str(status.last_error) == "403 forbidden: endpointslices"
    assert repr(lb) == (
        "<LoadBalancer web.shop:http algorithm=round_robin stopped total=2 ready=1 serving_terminating=1 "
        "not_ready=0 eligible=1 rv=4711 last_error=403 forbidden: endpointslices>"
    )
    assert lb.get() == Endpoint("10.0.0.1", 80)  # the last good snapshot keeps serving


async def test_wait_ready_returns_when_an_endpoint_appears(rng: random.Random) -> None:
    """wait_ready() blocks while nothing is eligible and returns once something is."""
    source = StaticSource([Endpoint("10.0.0.1", 80, ready=False, serving=False)])
    async with LoadBalancer("web.shop:http", source=source, rng=rng) as lb:
        waiter = asyncio.create_task(lb.wait_ready(2))
        await asyncio.sleep(0)
        assert not waiter.done()
        source.set(["10.0.0.1:80"])
        await asyncio.wait_for(waiter, 2)


async def test_wait_ready_timeout_names_service_and_error(rng: random.Random) -> None:
    """On timeout wait_ready() raises NoEndpointsAvailable with the Service and the last error."""
    async with LoadBalancer("web.shop:http", source=StaticSource([]), rng=rng) as lb:
        lb.on_error(DiscoveryError("connection refused"))
        with pytest.raises(
            NoEndpointsAvailable, match=r"web\.shop:http.*last discovery error: connection refused"
        ):
            await lb.wait_ready(0.01)


async def test_rng_and_clock_reach_an_algorithm_created_by_name() -> None:
    """Two balancers with the same seed pick the same sequence (rng reaches the algorithm)."""
    picks = []
    for _ in range(2):
        lb = LoadBalancer(
            "web.shop:http",
            source=StaticSource([]),
            algorithm="random",
            rng=random.Random(7),
            clock=FakeClock(),
        )
        lb.on_endpoints(StaticSource([f"10.0.0.{i}:80" for i in range(1, 9)]).snapshot)
        picks.append([lb.get() for _ in range(20)])
    assert picks[0] == picks[1] and len(set(picks[0])) > 1


async def test_fallback_none_raises_with_service_and_error() -> None:
    """fallback='none' gives NoEndpointsAvailable naming the Service and the discovery error."""
    lb = LoadBalancer("web.shop:http", source=StaticSource([]), fallback="none")
    lb.on_error(DiscoveryError("api unreachable"))
    with pytest.raises(NoEndpointsAvailable, match=r"web\.shop:http.*api unreachable"):
        await lb.fallback_target()


async def test_fallback_explicit_target() -> None:
    """fallback='host:port' is used as is."""
    lb = LoadBalancer("web.shop:http", source=StaticSource([]), fallback="10.96.0.10:8080")
    assert await lb.fallback_target() == FallbackTarget("10.96.0.10", 8080)
    assert lb.status().fallback == "10.96.0.10:8080"


async def test_fallback_resolves_a_named_port_once_from_the_source() -> None:
    """A named port is resolved by source.service_port() once, then cached."""
    source = PortSource(8443)
    lb = LoadBalancer("web.shop.svc.corp.example:https", source=source)
    targets = await asyncio.gather(*(lb.fallback_target() for _ in range(5)))
    assert set(targets) == {FallbackTarget("web.shop.svc.corp.example", 8443)}
    assert source.calls == 1


async def test_fallback_port_error_explains_the_rbac_needed() -> None:
    """When reading the Service fails, the error names the missing RBAC permission."""
    lb = LoadBalancer("web.shop:http", source=PortSource(PermissionError("403 Forbidden")))
    with pytest.raises(
        NoEndpointsAvailable, match=r"403 Forbidden.*RBAC 'get' on services in namespace 'shop'"
    ):
        await lb.fallback_target()


@pytest.mark.parametrize(
    "kwargs",
    [{"algorithm": "nope"}, {"algorithm": 42}, {"fallback": "nowhere"}, {"startup_timeout": -1}],
)
def test_bad_options_raise_configuration_error(kwargs: dict[str, object]) -> None:
    """Unknown algorithms, bad fallbacks and negative timeouts are configuration errors."""
    with pytest.raises(ConfigurationError):
        LoadBalancer("web.shop:http", source=StaticSource([]), **kwargs)  # type: ignore[arg-type]


async def test_a_source_that_raises_is_reported_not_fatal(rng: random.Random) -> None:
    """A source breaking its contract (raising) becomes the last discovery error."""

    class Broken:
        async def run(self, sink: object) -> None:
            raise RuntimeError("boom")

    lb = LoadBalancer("web.shop:http", source=Broken(), rng=rng)
    await asyncio.wait_for(lb.ensure_started(), 1)
    assert "boom" in str(lb.last_error)
    await lb.aclose()


def test_balancer_core_imports_no_client_library() -> None:
    """The balancer and dispatch core load neither the Kubernetes client nor any HTTP client."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import kube_balance._balancer, kube_balance._dispatch, kube_balance._policy, kube_balance._retry\n"
        "heavy = {'httpx', 'aiohttp', 'kubernetes_asyncio'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
