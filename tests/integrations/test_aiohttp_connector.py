"""BalancedConnector against real aiohttp pods on 127.0.0.1: per-request spread, Host, TLS, put once."""

from __future__ import annotations

import asyncio
import gc
import inspect
import random
import ssl
from collections import Counter

import aiohttp
import httpx
import pytest
from helpers_pods import SERVICE_HOST, running_pods

from kube_balance import LoadBalancer, Outcome, RetryPolicy
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector, NoEndpointsAvailable, _with_message
from kube_balance.integrations.httpx import BalancedTransport

URL = f"http://{SERVICE_HOST}"


def inflight(connector: BalancedConnector) -> int:
    return sum(b.algorithm.total_inflight() for b in connector.balancers)  # type: ignore[attr-defined]


async def test_keep_alive_requests_are_balanced_per_request(rng: random.Random) -> None:
    """12 sequential keep-alive requests over 3 pods land 4/4/4 under round robin, on 3 connections."""
    async with running_pods(3) as pods:
        connector = BalancedConnector(
            "web.shop:http", source=StaticSource([p.key for p in pods]), algorithm="round_robin", rng=rng
        )
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            seen = Counter()
            for _ in range(12):
                async with session.get(f"{URL}/") as r:
                    seen[(await r.json())["pod"]] += 1
            opened = sum(len(v) for v in connector._conns.values())
        assert seen == {"pod-0": 4, "pod-1": 4, "pod-2": 4}
        assert opened == 3  # one kept-alive connection per pod, reused


async def test_host_header_and_url_stay_the_service(rng: random.Random) -> None:
    """Pods see Host: the Service name; response.url and redirects keep the Service URL; cookies too."""
    async with running_pods(2) as pods:
        connector = BalancedConnector("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            async with session.get(f"{URL}/redirect") as r:
                body = await r.json()
                assert str(r.url) == f"{URL}/"
                assert [str(h.url) for h in r.history] == [f"{URL}/redirect"]
            assert body["host"] == SERVICE_HOST
            assert body["cookie"] is not None and body["cookie"].startswith("from-pod-")
        assert inflight(connector) == 0


async def test_tls_verifies_the_service_name_while_connecting_by_ip(
    rng: random.Random, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext, ca: object
) -> None:
    """A certificate for the Service name only (no IP SAN) is accepted; another name is refused."""
    async with running_pods(2, server_ssl) as pods:
        connector = BalancedConnector(
            "https://web.shop:443", source=StaticSource([p.key for p in pods]), rng=rng, ssl=client_ssl
        )
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            pods_seen = set()
            for _ in range(6):
                async with session.get(f"https://{SERVICE_HOST}/") as r:
                    pods_seen.add((await r.json())["pod"])
            assert pods_seen == {"pod-0", "pod-1"}
        other = BalancedConnector(
            "https://cart.shop:443", source=StaticSource([p.key for p in pods]), rng=rng, ssl=client_ssl
        )
        async with aiohttp.ClientSession(connector=other) as session, asyncio.timeout(10):
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get("https://cart.shop.svc.cluster.local/")
        assert inflight(other) == 0


async def test_a_thousand_cancelled_requests_leave_no_inflight(rng: random.Random) -> None:
    """1,000 requests cancelled at random points leave every in-flight count at exactly 0."""
    async with running_pods(3) as pods:
        connector = BalancedConnector("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(30):

            async def one() -> None:
                async with session.get(f"{URL}/slow", params={"delay": "0.05"}) as r:
                    await r.read()

            for _ in range(10):
                tasks = [asyncio.create_task(one()) for _ in range(100)]
                await asyncio.sleep(rng.uniform(0, 0.03))
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            assert inflight(connector) == 0
            assert connector.balancers[0].status().unclosed_responses == 0


async def test_status_and_failure_reach_put(rng: random.Random) -> None:
    """A 5xx is put as failed with its time to headers; a 200 is put as a success."""
    async with running_pods(1) as pods:
        calls: list[tuple[float | None, bool]] = []
        lb = LoadBalancer("web.shop:http", source=StaticSource([pods[0].key]), rng=rng)
        algorithm_put = lb.algorithm.put

        def spy(endpoint, elapsed=None, failed=False):  # type: ignore[no-untyped-def]
            calls.append((elapsed, failed))
            algorithm_put(endpoint, elapsed, failed)

        lb.algorithm.put = spy  # type: ignore[method-assign]
        async with lb, aiohttp.ClientSession(connector=BalancedConnector(lb)) as session, asyncio.timeout(10):
            async with session.get(f"{URL}/status/503") as r:
                assert r.status == 503
            async with session.get(f"{URL}/") as r:
                await r.read()
        assert [failed for _, failed in calls] == [True, False]
        assert all(elapsed is not None and elapsed >= 0 for elapsed, _ in calls)


async def test_refused_connection_is_retried_on_another_pod(rng: random.Random) -> None:
    """A pod that refuses connections costs no failed request: the connector dials another pod."""
    async with running_pods(2) as pods:
        dead = pods[1].key
        await pods[1].kill()
        connector = BalancedConnector(
            "web.shop:http",
            source=StaticSource([pods[0].key, dead]),
            algorithm="round_robin",
            rng=rng,
        )
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            for _ in range(10):
                async with session.post(f"{URL}/echo", data=b"x" * 10) as r:
                    assert (await r.json())["pod"] == "pod-0"
        assert inflight(connector) == 0


async def test_pod_killed_during_load_fails_no_request(rng: random.Random) -> None:
    """Killing one of 3 pods in the middle of 600 requests fails none of them."""
    async with running_pods(3) as pods:
        connector = BalancedConnector(
            "web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng, force_close=False
        )
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(30):
            sem = asyncio.Semaphore(20)
            done = 0

            async def one() -> str:
                nonlocal done
                async with sem, session.get(f"{URL}/") as r:
                    done += 1
                    return str((await r.json())["pod"])

            tasks = [asyncio.create_task(one()) for _ in range(600)]
            for _ in range(2000):  # bounded: until a third of the requests are done
                if done >= 200:
                    break
                await asyncio.sleep(0.005)
            await pods[2].kill()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        assert inflight(connector) == 0


async def test_a_response_never_released_is_put_when_the_connector_closes(rng: random.Random) -> None:
    """A response dropped unreleased holds its pod until the connector closes, then is put and counted.

    (aiohttp keeps an unreleased response alive through its connection's protocol, so no garbage
    collection can release it earlier: the same holds without kube-balance.)
    """
    async with running_pods(1) as pods:
        connector = BalancedConnector("web.shop:http", source=StaticSource([pods[0].key]), rng=rng)
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            r = await session.get(f"{URL}/big")
            assert inflight(connector) == 1
            del r
            gc.collect()
            async with session.get(f"{URL}/") as ok:
                await ok.read()
            assert inflight(connector) == 1
        assert inflight(connector) == 0
        assert connector.balancers[0].status().unclosed_responses == 1


async def test_two_services_through_one_session(rng: random.Random) -> None:
    """Each Service's host is balanced over its own pods; other hosts pass through untouched."""
    async with running_pods(4) as pods:
        web, cart = pods[:2], pods[2:]
        connector = BalancedConnector(
            [
                LoadBalancer("web.shop:http", source=StaticSource([p.key for p in web]), rng=rng),
                LoadBalancer("cart.shop:http", source=StaticSource([p.key for p in cart]), rng=rng),
            ]
        )
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            seen: dict[str, set[str]] = {"web": set(), "cart": set()}
            for _ in range(20):
                for name in seen:
                    async with session.get(f"http://{name}.shop/") as r:
                        seen[name].add((await r.json())["pod"])
            async with session.get(f"http://127.0.0.1:{pods[3].port}/") as r:
                assert (await r.json())["host"] == f"127.0.0.1:{pods[3].port}"
        assert seen == {"web": {"pod-0", "pod-1"}, "cart": {"pod-2", "pod-3"}}
        for lb in connector.balancers:
            await lb.aclose()


async def test_one_balancer_shared_by_httpx_and_aiohttp(rng: random.Random) -> None:
    """A request held open through httpx raises the in-flight count the aiohttp side's pick sees."""
    async with running_pods(2) as pods:
        lb = LoadBalancer("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        async with (
            lb,
            httpx.AsyncClient(transport=BalancedTransport(lb)) as client,
            aiohttp.ClientSession(connector=BalancedConnector(lb)) as session,
            asyncio.timeout(10),
        ):
            async with client.stream("GET", f"{URL}/stream") as held:
                busy = next(p for p in pods if p.hits == 1)
                assert lb.algorithm.inflight(busy.key) == 1
                for _ in range(10):  # least_request with 2 pods: always the idle one
                    async with session.get(f"{URL}/") as r:
                        assert (await r.json())["pod"] != busy.name
                busy.gate.set()
                await held.aread()
            assert lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]


async def test_no_endpoints_is_an_aiohttp_connection_error(rng: random.Random) -> None:
    """fallback='none' with no endpoints raises NoEndpointsAvailable, an aiohttp.ClientConnectionError."""
    connector = BalancedConnector("web.shop:http", source=StaticSource([]), fallback="none", rng=rng)
    async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
        with pytest.raises(NoEndpointsAvailable, match=r"web\.shop") as info:
            await session.get(f"{URL}/")
    assert isinstance(info.value, aiohttp.ClientConnectionError)


async def test_fallback_dials_the_service_name(rng: random.Random) -> None:
    """With no endpoints, the request goes to the fallback host:port (here a local pod)."""
    async with running_pods(1) as pods:
        connector = BalancedConnector(
            "web.shop:http", source=StaticSource([]), fallback=f"127.0.0.1:{pods[0].port}", rng=rng
        )
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            asyncio.timeout(10),
            session.get(f"{URL}/") as r,
        ):
            body = await r.json()
        assert body == {"pod": "pod-0", "host": SERVICE_HOST, "cookie": None}


async def test_closing_the_session_stops_the_watcher(rng: random.Random) -> None:
    """Closing the session closes the connector and its own balancer: no task is left behind."""
    async with running_pods(1) as pods:
        connector = BalancedConnector("web.shop:http", source=StaticSource([pods[0].key]), rng=rng)
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            async with session.get(f"{URL}/") as r:
                await r.read()
            assert connector.balancers[0].running
        assert not connector.balancers[0].running
        assert [t for t in asyncio.all_tasks() if "kube-balance" in t.get_name()] == []


async def test_connector_owner_false_shares_one_connector(rng: random.Random) -> None:
    """Two sessions share one connector (connector_owner=False); closing one leaves it working."""
    async with running_pods(2) as pods:
        connector = BalancedConnector("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        try:
            async with asyncio.timeout(10):
                for _ in range(2):
                    async with (
                        aiohttp.ClientSession(connector=connector, connector_owner=False) as s,
                        s.get(f"{URL}/") as r,
                    ):
                        assert r.status == 200
                assert not connector.closed
        finally:
            await connector.close()


def test_bad_services_are_refused() -> None:
    """An empty list, a non-reference and one source for two Services are configuration errors."""
    from kube_balance import ConfigurationError

    with pytest.raises(ConfigurationError, match="empty"):
        BalancedConnector([])
    with pytest.raises(ConfigurationError, match="must be a Service reference"):
        BalancedConnector(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="source= applies to one Service"):
        BalancedConnector(["web.shop:http", "cart.shop:http"], source=StaticSource([]))
    with pytest.raises(
        ConfigurationError, match="BalancedConnector retry=3 is invalid: expected a RetryPolicy"
    ):
        BalancedConnector("web.shop:http", retry=3)  # type: ignore[arg-type]  # was an AttributeError


async def test_retry_policy_is_honoured() -> None:
    """The RetryPolicy given reaches each Service's dispatcher."""
    policy = RetryPolicy(max_attempts=1)
    connector = BalancedConnector(["web.shop:http", "cart.shop:http"], retry=policy)
    assert {id(r.dispatcher.retry) for r in connector._routes.routes} == {id(policy)}
    await connector.close()


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_an_ipv6_pod_is_reached_with_the_service_host(rng: random.Random) -> None:
    """A pod on [::1] is dialled by address while Host stays the Service name."""
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"host": request.host})

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "::1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        connector = BalancedConnector("web.shop:http", source=StaticSource([f"[::1]:{port}"]), rng=rng)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            asyncio.timeout(10),
            session.get("http://web.shop/") as r,
        ):
            assert await r.json() == {"host": "web.shop"}
    finally:
        await runner.cleanup()


async def test_limit_per_host_applies_per_pod(rng: random.Random) -> None:
    """limit_per_host=1 allows one connection per pod: two held streams use both pods, a third
    request waits for a free one (aiohttp's own limit, per pod through the connection key)."""
    async with running_pods(2) as pods:
        connector = BalancedConnector(
            "web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng, limit_per_host=1
        )
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            first = await session.get(f"{URL}/stream")
            second = await session.get(f"{URL}/stream")
            assert {p.hits for p in pods} == {1}  # least_request: one stream on each pod
            third = asyncio.create_task(session.get(f"{URL}/"))
            await asyncio.sleep(0.1)
            assert not third.done()  # both pods' single connections are busy
            for pod in pods:
                pod.gate.set()
            for r in (first, second):
                await r.read()
                r.release()
            async with await third as r:
                assert r.status == 200
        assert inflight(connector) == 0


async def test_every_attempt_failing_names_the_service_and_the_pods_tried(rng: random.Random) -> None:
    """Two dead pods: the error is still an aiohttp.ClientConnectorError, naming the Service, both
    pods and the attempt count, raised from the last attempt's error."""
    async with running_pods(2) as pods:
        for pod in pods:
            await pod.kill()
        connector = BalancedConnector("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng)
        async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(10):
            with pytest.raises(aiohttp.ClientConnectorError) as info:
                await session.get(f"{URL}/")
        message = str(info.value)
        assert "web.shop:http" in message and "2 attempts failed" in message
        assert all(p.key in message for p in pods)
        assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)
        assert inflight(connector) == 0


async def test_options_beside_a_load_balancer_are_refused(rng: random.Random) -> None:
    """BalancedConnector(lb, rng=...) would ignore the option: it is refused, naming where it belongs."""
    lb = LoadBalancer("web.shop:http", source=StaticSource([]), rng=rng)
    from kube_balance import ConfigurationError

    with pytest.raises(ConfigurationError, match="LoadBalancer and algorithm, rng: these belong"):
        BalancedConnector(lb, rng=rng, algorithm="random")


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (aiohttp.ClientTimeout(total=0.3), asyncio.TimeoutError),  # aiohttp's bare TimeoutError()
        (aiohttp.ClientTimeout(sock_read=0.3), aiohttp.ServerTimeoutError),
    ],
    ids=["total", "sock_read"],
)
async def test_a_hanging_pod_times_out_with_an_error_naming_it(
    rng: random.Random, timeout: aiohttp.ClientTimeout, error: type[BaseException]
) -> None:
    """A pod that never answers: aiohttp's timeout error, of the same class (``except`` clauses
    still catch it), now naming the Service and the pod, raised from aiohttp's own; the pick is
    put back as a timeout."""
    async with running_pods(1) as (pod,):
        pod.delay = 30
        connector = BalancedConnector("web.shop:http", source=StaticSource([pod.key]), rng=rng)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            with pytest.raises(error) as info:
                await asyncio.wait_for(session.get(f"{URL}/"), 10)
        assert str(info.value).startswith(
            f"service web.shop:http: 1 attempt failed, on {pod.key}; last error: "
        )
        assert type(info.value.__cause__).__name__ == type(info.value).__name__
        assert not str(info.value.__cause__).startswith("service")
        (balancer,) = connector.balancers
        assert balancer.counters.outcomes[Outcome.TIMEOUT] == 1 and inflight(connector) == 0


async def test_a_pod_dropping_the_connection_is_named(rng: random.Random) -> None:
    """A pod that closes the connection instead of answering: aiohttp's ServerDisconnectedError,
    naming the Service and the pod; each attempt (aiohttp may send a GET twice) put back as a reset."""
    async with running_pods(1) as (pod,):
        pod.status = 0
        connector = BalancedConnector("web.shop:http", source=StaticSource([pod.key]), rng=rng)
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(aiohttp.ServerDisconnectedError, match=f"web.shop:http.*on {pod.key}"):
                await asyncio.wait_for(session.get(f"{URL}/"), 10)
        (balancer,) = connector.balancers
        assert balancer.counters.outcomes[Outcome.RESET] == pod.arrived >= 1 and inflight(connector) == 0


@pytest.mark.parametrize("middleware", [False, True])
async def test_closing_a_session_with_requests_in_flight_blames_no_pod(middleware: bool) -> None:
    """Closing the session (and its connector) while 8 requests wait for two healthy pods: each
    request fails with aiohttp's "Connector is closed", each pick is put back once as CANCELLED
    (our own close, not the pods'), no retry picks a pod of the closed connector, nothing counts
    as an unclosed response, and the shared balancer ejects no pod (was: 8 RESET + 8 ERROR
    outcomes, and a healthy pod ejected for "5 consecutive failures")."""
    from kube_balance.integrations.aiohttp import BalancedMiddleware

    if middleware and "middlewares" not in inspect.signature(aiohttp.ClientSession.__init__).parameters:
        pytest.skip("client middlewares need aiohttp >= 3.12")
    async with asyncio.timeout(30), running_pods(2) as pods:
        for pod in pods:
            pod.delay = 60.0  # never answers while the test runs (the pod's shutdown cuts it)
        source = StaticSource([pod.key for pod in pods])
        async with LoadBalancer("web.shop:http", source=source, rng=random.Random(1)) as lb:
            await lb.wait_ready(5)
            connector = BalancedConnector(lb, retry=RetryPolicy(retry_statuses=True))
            extra = {"middlewares": (BalancedMiddleware(connector),)} if middleware else {}
            session = aiohttp.ClientSession(connector=connector, **extra)

            async def get() -> None:
                async with session.get(f"http://{SERVICE_HOST}/") as r:
                    await r.read()

            requests = [asyncio.create_task(get()) for _ in range(8)]
            while sum(pod.arrived for pod in pods) < 8:  # noqa: ASYNC110 - counted by the pods
                await asyncio.sleep(0.01)
            await session.close()
            results = await asyncio.gather(*requests, return_exceptions=True)
            # aiohttp's own error: "Connector is closed" (an AssertionError from its internals on
            # aiohttp 3.10, the lowest supported); what matters here is what the balancer saw.
            assert all(isinstance(r, (aiohttp.ClientConnectionError, AssertionError)) for r in results), (
                results
            )
            status = lb.status()
            assert status.outcomes == {"cancelled": 8}
            assert status.unclosed_responses == 0
            assert status.ejected == {}
            assert len(lb.eligible) == 2
            assert lb.algorithm.total_inflight() == 0


def test_a_named_built_in_error_keeps_its_arguments_and_attributes() -> None:
    """A built-in exception (aiohttp's bare TimeoutError) cannot change class: the named error is
    a new one of a subclass, with the original's arguments and attributes (its notes here) and
    the message naming the pod."""
    exc = TimeoutError("took too long")
    exc.add_note("read by the caller")
    named = _with_message(exc, "service web.shop:http: 1 attempt failed, on 10.0.0.1:80")
    assert isinstance(named, TimeoutError) and type(named) is not TimeoutError
    assert str(named) == "service web.shop:http: 1 attempt failed, on 10.0.0.1:80"
    assert named.args == ("took too long",) and named.__notes__ == ["read by the caller"]


def test_a_named_error_shows_its_message_in_its_repr() -> None:
    """``repr()`` (logs with ``%r``, f-strings with ``!r``, pytest) of a named bare TimeoutError()
    said only ``TimeoutError()``: it shows the message naming the Service and pod, under the
    class's own name, as does an aiohttp error renamed after its attempts."""
    message = "service web.shop:http: 1 attempt failed, on 10.0.0.1:80; last error: TimeoutError"
    assert repr(_with_message(TimeoutError(), message)) == f"TimeoutError({message!r})"
    reset = _with_message(aiohttp.ServerDisconnectedError(), message)
    assert repr(reset) == f"ServerDisconnectedError({message!r})" and str(reset) == message
