"""PodFleet and L4Proxy: real pods in a child process, real sockets, every await bounded."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_balance import ConfigurationError, LoadBalancer
from kube_balance.discovery import KubernetesSource
from kube_balance.testing import FakeApiServer, L4Proxy, PodFleet
from kube_balance.testing._fleet import _check_flap, _check_latency

FAST = (0.001, 0.002)


async def get(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await asyncio.wait_for(client.get(url), 10)


async def test_each_pod_answers_with_its_name_and_counts_its_hits() -> None:
    """HTTP/1.1 pods answer any path with their name, the Host header and version; hits() counts them."""
    async with asyncio.timeout(60), PodFleet(3, latency=FAST, prefix="web") as fleet:
        assert [p.name for p in fleet.pods] == ["web-0", "web-1", "web-2"]
        assert len({p.port for p in fleet.pods}) == 3
        async with httpx.AsyncClient() as client:
            for pod in fleet.pods:
                for _ in range(pod.port % 3 + 1):
                    reply = (await get(client, f"http://{pod.key}/any/path")).json()
                    assert reply == {"pod": pod.name, "host": pod.key, "http_version": "1.1"}
        assert await fleet.hits() == {p.name: p.port % 3 + 1 for p in fleet.pods}
        await fleet.reset_hits()
        assert set((await fleet.hits()).values()) == {0}


async def test_configure_slows_fails_and_flaps_a_pod() -> None:
    """A slow factor multiplies the delay, a status is answered, a flap is slow in its on phase only."""
    async with asyncio.timeout(60), PodFleet(2, latency=(0.02, 0.02)) as fleet, httpx.AsyncClient() as client:
        url = f"http://{fleet.pod('pod-0').key}/"
        await fleet.configure("pod-0", slow_factor=10, status=503)
        started = time.monotonic()
        response = await get(client, url)
        assert response.status_code == 503 and response.json()["pod"] == "pod-0"
        assert time.monotonic() - started >= 0.2  # a lower bound: the pod slept 10 x 20 ms
        await fleet.configure("pod-0", slow_factor=1, status=200, flap=(25, 5.0, 10.0))
        started = time.monotonic()
        assert (await get(client, url)).status_code == 200
        assert time.monotonic() - started >= 0.5  # on phase: 25 x 20 ms
        await fleet.configure("pod-0", flap=None)
        assert (await get(client, f"http://{fleet.pod('pod-1').key}/")).status_code == 200


async def test_add_and_remove_pods_for_a_rolling_update() -> None:
    """add() starts a pod that answers; remove() stops one: its port refuses connections."""
    async with asyncio.timeout(60), PodFleet(2, latency=FAST) as fleet, httpx.AsyncClient() as client:
        old = fleet.pod("pod-0")
        new = await fleet.add("pod-0-v2")
        assert fleet.pods[-1] == new and (await get(client, f"http://{new.key}/")).json()["pod"] == "pod-0-v2"
        await fleet.remove("pod-0")
        assert [p.name for p in fleet.pods] == ["pod-1", "pod-0-v2"]
        async with httpx.AsyncClient() as fresh:
            with pytest.raises(httpx.ConnectError):
                await get(fresh, f"http://{old.key}/")
        assert set(await fleet.hits()) == {"pod-1", "pod-0-v2"}


async def test_errors_from_the_child_are_typed() -> None:
    """Unknown pods and duplicate names raise ConfigurationError naming the operation."""
    async with asyncio.timeout(60), PodFleet(1, latency=FAST) as fleet:
        with pytest.raises(ConfigurationError, match=r"configure.*no pod named 'nope'"):
            await fleet.configure("nope", status=503)
        with pytest.raises(ConfigurationError, match=r"add.*exists already"):
            await fleet.add("pod-0")
        with pytest.raises(KeyError):
            fleet.pod("nope")
    with pytest.raises(RuntimeError, match="not started"):
        await fleet.hits()


async def test_http2_through_the_l4_proxy_lands_on_one_pod() -> None:
    """h2c pods; through the fleet's L4 proxy one HTTP/2 connection carries every request to one pod."""
    async with (
        asyncio.timeout(60),
        PodFleet(4, http2=True, latency=FAST) as fleet,
        httpx.AsyncClient(http1=False, http2=True) as client,
    ):
        direct = await get(client, f"http://{fleet.pods[2].key}/")
        assert direct.http_version == "HTTP/2" and direct.json()["http_version"] == "2"
        port = await fleet.l4_proxy()
        replies = await asyncio.gather(*(get(client, f"http://127.0.0.1:{port}/") for _ in range(40)))
        assert {r.json()["pod"] for r in replies} == {"pod-0"}
        async with httpx.AsyncClient(http1=False, http2=True) as second:
            assert (await get(second, f"http://127.0.0.1:{port}/")).json()["pod"] == "pod-1"


async def test_l4_proxy_picks_a_target_per_connection() -> None:
    """Each new TCP connection goes to the next target; keep-alive requests stay on theirs."""
    async with asyncio.timeout(60), PodFleet(3, latency=FAST) as fleet:
        proxy = L4Proxy([("127.0.0.1", p.port) for p in fleet.pods])
        async with proxy:
            url = f"http://127.0.0.1:{proxy.port}/"
            seen: Counter[str] = Counter()
            for _ in range(6):  # a new client: a new connection, then 3 requests on it
                async with httpx.AsyncClient() as client:
                    pods = {(await get(client, url)).json()["pod"] for _ in range(3)}
                assert len(pods) == 1
                seen.update(pods)
            assert seen == {"pod-0": 2, "pod-1": 2, "pod-2": 2}
            assert sorted(proxy.connections.values()) == [2, 2, 2]


async def test_publish_gives_the_pods_to_a_balancer(tmp_path: Path) -> None:
    """publish(): a real KubernetesSource sees every pod; a terminating slice takes one out."""
    async with asyncio.timeout(60), FakeApiServer() as api, PodFleet(3, latency=FAST) as fleet:
        fleet.publish(api, "web", "shop")
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", namespace="shop")
        source = KubernetesSource("web.shop:http", kubeconfig=kubeconfig)
        async with LoadBalancer("web.shop:http", source=source, fallback="none") as balancer:
            await balancer.wait_ready(10)
            assert {e.key for e in balancer.eligible} == {p.key for p in fleet.pods}
            api.apply(fleet.endpoint_slice("pod-1", "web", "shop", ready=False, terminating=True))
            while len(balancer.eligible) != 2:  # noqa: ASYNC110 - the balancer's state
                await asyncio.sleep(0.01)
            assert fleet.pod("pod-1").key not in {e.key for e in balancer.eligible}


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"count": 0}, "count"),
        ({"count": True}, "count"),
        ({"count": 2, "latency": (0.2, 0.1)}, "latency"),
        ({"count": 2, "latency": (-1, 0.1)}, "latency"),
        ({"count": 2, "latency": 0.1}, "latency"),
        ({"count": 2, "http2": "yes"}, "http2"),
        ({"count": 2, "prefix": "Web_1"}, "prefix"),
        ({"count": 2, "seed": 1.5}, "seed"),
    ],
)
def test_bad_options_are_refused_at_construction(kwargs: dict[str, object], option: str) -> None:
    """Each bad option raises ConfigurationError naming it, before any process starts."""
    with pytest.raises(ConfigurationError, match=f"PodFleet {option}="):
        PodFleet(**kwargs)  # type: ignore[arg-type]


async def test_bad_configure_values_are_refused() -> None:
    """configure() checks its values before sending them; no process needed."""
    fleet = PodFleet(1)
    for kwargs, option in (({"status": 99}, "status"), ({"slow_factor": -1}, "slow_factor"),
                           ({"flap": (5, 2, 1)}, "flap")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=f"PodFleet {option}="):
            await fleet.configure("pod-0", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="PodFleet pod name="):
        await fleet.add("Not A Name")


def test_l4_proxy_refuses_bad_targets() -> None:
    """No targets, or a target that is not (host, port), is refused."""
    for targets in ([], [("127.0.0.1", 0)], [("127.0.0.1", "80")], "127.0.0.1:80"):
        with pytest.raises(ConfigurationError, match="L4Proxy targets="):
            L4Proxy(targets)  # type: ignore[arg-type]


@given(st.one_of(st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)), st.none(), st.integers()))
def test_latency_check_accepts_exactly_the_documented_ranges(value: object) -> None:
    """Fuzzed latency: accepted iff a (low, high) pair of finite numbers with 0 <= low <= high <= 60."""
    ok = (
        isinstance(value, tuple)
        and all(isinstance(v, float) and 0 <= v <= 60 for v in value)
        and value[0] <= value[1]
    )
    if ok:
        assert _check_latency(value) == value
    else:
        with pytest.raises(ConfigurationError):
            _check_latency(value)


@given(st.tuples(st.floats(-1, 4000), st.floats(-1, 4000), st.floats(-1, 4000)))
def test_flap_check_accepts_exactly_the_documented_ranges(value: tuple[float, float, float]) -> None:
    """Fuzzed flap: factor and durations finite, 0 <= factor, 0 < on <= period <= 3600."""
    factor, on, period = value
    if 0 <= factor <= 3600 and 0 < on <= period <= 3600:
        assert _check_flap(value) == value
    else:
        with pytest.raises(ConfigurationError):
            _check_flap(value)
