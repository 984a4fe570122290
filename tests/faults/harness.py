"""The fault matrix's shared harness: a fake cluster, real pods, a balanced client, a load, checks.

One :func:`cluster` is a :class:`~kube_balance.testing.FakeApiServer` holding one EndpointSlice per
pod, real aiohttp pods on 127.0.0.1, a :class:`~kube_balance.LoadBalancer` fed by a real
:class:`~kube_balance.discovery.KubernetesSource` (kubeconfig with a token file, so a rotated token
can be re-read), and an httpx ``BalancedTransport`` or an aiohttp ``BalancedConnector`` over it.
:meth:`Cluster.load` sends concurrent GETs and tallies every one of them; :meth:`Cluster.check`
asserts what every fault must keep true. ``benchmarks/fault_matrix.py`` runs the same scenarios.

Everything is bounded: each request has a client timeout, each wait an ``asyncio.timeout``, and
the source's backoff sleeps are capped at 50 ms (the delays it asks for are still recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
from helpers_pods import SERVICE_HOST, Pod

from kube_balance import (
    EndpointPolicy,
    KubeBalanceError,
    LoadBalancer,
    Outcome,
    ZoneAware,
)
from kube_balance.discovery import KubernetesSource
from kube_balance.integrations.aiohttp import BalancedConnector
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import (
    FakeApiServer,
    Fault,
    Permissions,
    endpoint_slice,
    service,
    slice_endpoint,
)

CLIENTS = ("httpx", "aiohttp")
SERVICE = "web.shop:http"
URL = f"http://{SERVICE_HOST}"
CLIENT_TIMEOUT = 2.0  # seconds per request: a hanging pod costs a request this much (the machine is shared)
BASE_DELAY = 0.002  # every pod's service time, so "10x slower" means something


class FaultPod(Pod):
    """A helpers_pods pod whose ``/`` can be slowed (``delay``) or made to hang (``hang``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.delay = BASE_DELAY
        self.hang = asyncio.Event()  # set: "/" never answers (until the pod is killed)
        self.zone: str | None = None

    async def _hello(self, request: web.Request) -> web.Response:
        if self.hang.is_set():
            self._seen(request)
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay)
        return await super()._hello(request)


def pod_slice(pod: Pod, *, zone: str | None = None, **conditions: bool) -> dict[str, Any]:
    """One EndpointSlice of web.shop (named after the pod) for one pod on 127.0.0.1."""
    return endpoint_slice(
        "web",
        "shop",
        name=pod.name,
        endpoints=[slice_endpoint("127.0.0.1", zone=zone, **conditions)],
        ports=[{"name": "http", "port": pod.port}],
    )


@dataclass
class Load:
    """What happened to every request of one load: nothing is dropped from the tally."""

    requests: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    pods: Counter[str] = field(default_factory=Counter)
    untyped: list[BaseException] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def __str__(self) -> str:
        return f"{self.requests} requests, {self.ok} ok, failures {dict(self.failures)}"


@dataclass
class Cluster:
    """A running scenario; see the module docstring."""

    kind: str
    api: FakeApiServer
    pods: list[FaultPod]
    balancer: LoadBalancer
    get: Callable[..., Any]
    token_file: Path
    attempts: Counter[str] = field(default_factory=Counter)  # attempts by endpoint key (observer)
    samples: list[frozenset[str]] = field(default_factory=list)  # eligible keys seen during loads
    backoff: list[float] = field(default_factory=list)  # delays the source asked to sleep

    def keys(self, pods: Iterable[Pod]) -> frozenset[str]:
        return frozenset(p.key for p in pods)

    @property
    def eligible(self) -> frozenset[str]:
        return frozenset(e.key for e in self.balancer.eligible)

    async def until(self, condition: Callable[[], bool], timeout: float = 15.0) -> float:
        """Poll ``condition`` every 5 ms for at most ``timeout`` s; returns the seconds it took."""
        start = time.monotonic()
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - the state lives in the balancer
                await asyncio.sleep(0.005)
        return time.monotonic() - start

    async def load(self, requests: int, concurrency: int = 20, path: str = "/") -> Load:
        """Send ``requests`` GETs from ``concurrency`` tasks; every one ends in the tally."""
        result, left = Load(), [requests]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                result.requests += 1
                try:
                    status, pod = await self.get(path)
                except KubeBalanceError as exc:  # typed: NoEndpointsAvailable and friends
                    result.failures[type(exc).__name__] += 1
                except (TimeoutError, httpx.HTTPError, aiohttp.ClientError) as exc:
                    result.failures[_timeout_or(exc)] += 1
                except Exception as exc:  # anything else is a lost request: an untyped error
                    result.failures["untyped"] += 1
                    result.untyped.append(exc)
                else:
                    if status == 200:
                        result.ok += 1
                        result.pods[pod] += 1
                    else:
                        result.failures[f"HTTP {status}"] += 1

        async def sampler() -> None:
            while True:
                self.samples.append(self.eligible)
                await asyncio.sleep(0.01)

        sampling = asyncio.create_task(sampler())
        try:
            async with asyncio.timeout(120):
                await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        return result

    def share(self, pods: Iterable[Pod]) -> float:
        """The share of all attempts (retries included) that went to ``pods``."""
        total = sum(self.attempts.values())
        return sum(self.attempts[p.key] for p in pods) / total if total else 0.0

    async def settle(self) -> None:
        """Wait (bounded) until nothing is in flight: leases are released on the next loop turns."""
        with contextlib.suppress(TimeoutError):
            await self.until(lambda: self.inflight() == 0, 5.0)

    async def drained(self, pod: Pod) -> None:
        """Wait until no request is in flight to ``pod`` (what a terminating pod's grace period gives)."""
        algorithm: Any = self.balancer.algorithm
        await self.until(lambda: algorithm.inflight(pod.key) == 0, 10)

    def pool_state(self) -> str:
        """httpx: every pod pool's httpcore requests and connections by state (a failure's
        message: a pool that lost its slots fails every later request with PoolTimeout)."""
        transport: Any = getattr(self.get, "transport", None)
        if transport is None:
            return "-"
        rows = []
        for key, pool in transport.dispatcher.pools.items():
            core = getattr(pool, "_pool", None)
            requests = list(getattr(core, "_requests", []))
            queued = sum(getattr(r, "connection", None) is None for r in requests)
            states = Counter(_connection_state(c) for c in getattr(core, "_connections", []))
            rows.append(f"{key}: {len(requests)} requests ({queued} queued), connections {dict(states)}")
        return "; ".join(rows) or "no pools"

    def inflight(self) -> int:
        algorithm: Any = self.balancer.algorithm
        return int(algorithm.total_inflight())

    async def check(
        self,
        load: Load,
        *,
        allowed: Iterable[str] = (),
        kept: Iterable[Pod] = (),
    ) -> None:
        """The invariants of every fault: no request lost, in flight back to 0, good set kept.

        ``allowed`` names the failures this fault may cause at the caller (typed ones only);
        ``kept`` are the pods whose endpoints must have stayed eligible throughout the load.
        """
        assert load.requests == load.ok + load.failed, load
        assert not load.untyped, load.untyped[:3]
        assert set(load.failures) <= set(allowed), f"{self.kind}: {load}; pools: {self.pool_state()}"
        await self.settle()
        assert self.inflight() == 0, self.balancer.algorithm
        algorithm: Any = self.balancer.algorithm
        for endpoint in self.balancer.snapshot:
            assert algorithm.inflight(endpoint) == 0, endpoint
        assert self.balancer.status().inflight == 0
        good = self.keys(kept)
        lost = [s for s in self.samples if not good <= s]
        assert not lost, f"the good set {sorted(good)} was not kept: {lost[:1]}"


def _connection_state(connection: Any) -> str:
    """One httpcore pooled connection's state, for :meth:`Cluster.pool_state`."""
    if getattr(connection, "_connection", True) is None:
        return "failed" if getattr(connection, "_connect_failed", False) else "unopened"
    for state in ("is_closed", "has_expired", "is_idle", "is_available"):
        if getattr(connection, state, lambda: False)():
            return state[3:] if state.startswith("is_") else state
    return "busy"


def _timeout_or(exc: BaseException) -> str:
    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return "timeout"
    return type(exc).__name__


async def _fast_sleep(delays: list[float], seconds: float) -> None:
    delays.append(seconds)
    await asyncio.sleep(min(seconds, 0.05))


@contextlib.asynccontextmanager
async def cluster(
    kind: str,
    pods: int = 4,
    *,
    serve: int | None = None,
    zones: Iterable[str | None] = (),
    zone: str | None = None,
    spill_at: float = 8.0,
    fallback: str = "none",
    page_size: int = 500,
    startup_timeout: float = 5.0,
    ready: bool = True,
    api_down: bool = False,
    seed: int = 20261206,
) -> AsyncIterator[Cluster]:
    """A running scenario with ``pods`` pods, of which the first ``serve`` (default all) are in
    the Service's slices, with the pods' ``zones`` and a client in ``zone`` (a ZoneAware policy).

    ``fallback`` is ``"none"`` or ``"pod"`` (the first pod's ``host:port`` standing for the
    Service DNS name). ``ready``: wait until every served pod is eligible.
    """
    serve = pods if serve is None else serve
    zone_list = list(zones) or [None] * pods
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(asyncio.timeout(150))
        api = await stack.enter_async_context(FakeApiServer(seed=seed))
        started = [FaultPod(f"pod-{i}") for i in range(pods)]
        for pod, z in zip(started, zone_list, strict=True):
            pod.zone = z
            await pod.start()
            stack.push_async_callback(pod.kill)
        api.apply(service("web", "shop", ports=[{"name": "http", "port": 80, "targetPort": "http"}]))
        for pod in started[:serve]:
            api.apply(pod_slice(pod, zone=pod.zone))
        tmp = Path(tempfile.mkdtemp(prefix="kube-balance-faults-"))
        token_file = tmp / "token"
        token_file.write_text(api.token)
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig", token_file=str(token_file), namespace="shop")
        if api_down:
            await api.stop()  # its port refuses connections until ``api.start()``
        rng = random.Random(seed)
        delays: list[float] = []
        source = KubernetesSource(
            SERVICE,
            kubeconfig=kubeconfig,
            rng=random.Random(seed + 1),
            sleep=lambda s: _fast_sleep(delays, s),
            watch_timeout=(1, 1),  # a fresh watch every second: faults meet one soon
            request_timeout=3.0,  # a stalled watch or list is noticed in 3 s
            page_size=page_size,
        )
        policy = (
            ZoneAware(zone, environ={}, spill_at=spill_at, hold=0.0).policy()
            if zone is not None
            else EndpointPolicy()
        )
        target = f"127.0.0.1:{started[0].port}" if fallback == "pod" else fallback
        balancer = LoadBalancer(
            SERVICE, source=source, policy=policy, fallback=target, rng=rng, startup_timeout=startup_timeout
        )
        stack.push_async_callback(balancer.aclose)
        get = await _client(stack, kind, balancer, rng)
        c = Cluster(kind, api, started, balancer, get, token_file, backoff=delays)

        def observe(endpoint: Any, elapsed: Any, outcome: Outcome, status: Any, retry_after: Any) -> None:
            c.attempts[endpoint.key] += 1

        balancer.add_observer(observe)
        if ready:
            await balancer.wait_ready(10)
            await c.until(lambda: c.balancer.snapshot.keys == c.keys(started[:serve]) and bool(c.eligible))
        yield c


async def _client(
    stack: contextlib.AsyncExitStack, kind: str, balancer: LoadBalancer, rng: random.Random
) -> Callable[..., Any]:
    """``get(path, timeout=1.0) -> (status, pod name or None)`` through the chosen integration."""
    if kind == "httpx":
        transport = BalancedTransport(balancer)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, timeout=CLIENT_TIMEOUT)
        )

        async def get_httpx(path: str, timeout: float = CLIENT_TIMEOUT) -> tuple[int, str | None]:
            r = await client.get(f"{URL}{path}", timeout=timeout)
            return r.status_code, _pod_of(r.content)

        get_httpx.transport = transport  # type: ignore[attr-defined]  # Cluster.pool_state()
        return get_httpx
    if kind == "aiohttp":
        connector = BalancedConnector(balancer)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT))
        )

        async def get_aiohttp(path: str, timeout: float = CLIENT_TIMEOUT) -> tuple[int, str | None]:
            async with session.get(f"{URL}{path}", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                return r.status, _pod_of(await r.read())

        return get_aiohttp
    raise ValueError(f"unknown client {kind!r}")


def _pod_of(body: bytes) -> str | None:
    import json

    try:
        value = json.loads(body).get("pod")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# -- the scenarios: each runs one fault under load, checks the invariants, returns a table row --
@dataclass
class Row:
    """One line of the fault-matrix table."""

    fault: str
    client: str
    requests: int
    failures: int
    bad_share: float | None = None
    recovery: float | None = None
    inflight_after: int = 0
    detail: str = ""


async def api_fault(
    kind: str,
    name: str,
    faults: Iterable[Any],
    *,
    requests: int = 200,
    before: Callable[[Cluster], Any] | None = None,
    during: Callable[[Cluster], Any] | None = None,
    page_size: int = 500,
    min_backoff: float = 0.0,
) -> Row:
    """The API misbehaves (``faults`` queued, the live watch dropped) while 4 pods take a load
    and a 5th pod is added: the 4 stay eligible throughout, every request succeeds, and the 5th
    is seen once the API answers again (the recovery time)."""
    async with cluster(kind, pods=5, serve=4, page_size=page_size) as c:
        good, spare = c.pods[:4], c.pods[4]
        for fault in faults:
            c.api.inject(fault)
        if before is not None:
            before(c)
        start = time.monotonic()
        c.api.store.drop_all()  # the live watch breaks: the next requests meet the faults
        c.api.apply(pod_slice(spare))  # a change made while the API is unavailable
        running = asyncio.create_task(c.load(requests))
        if during is not None:
            await during(c)
        await c.until(lambda: spare.key in c.eligible, 30)
        recovery = time.monotonic() - start
        load = await running
        await c.check(load, kept=good)
        await c.until(lambda: not c.api.pending_faults, 10)  # every scripted fault was met
        assert max(c.backoff, default=0.0) >= min_backoff, c.backoff  # e.g. Retry-After honoured
        return Row(name, kind, load.requests, load.failed, None, recovery, c.inflight())


async def api_down_at_start(kind: str, requests: int = 200) -> Row:
    """No API at start: requests go to the fallback (a pod's host:port standing for the Service
    DNS name); once the API is up the endpoints take over. No request fails."""
    async with cluster(kind, pods=4, fallback="pod", ready=False, api_down=True, startup_timeout=1.0) as c:
        first = await c.load(requests // 2)
        assert c.balancer.counters.fallback_requests >= requests // 2, c.balancer.status()
        await c.api.start()  # same port, same objects
        recovery = await c.until(lambda: c.eligible == c.keys(c.pods), 30)
        second = await c.load(requests // 2)
        assert len(second.pods) == 4, second.pods  # the endpoints serve now, not only the fallback
        for load in (first, second):
            await c.check(load)
        total = first.requests + second.requests
        return Row(
            "apiserver down at start", kind, total, first.failed + second.failed, None, recovery, c.inflight()
        )


async def pod_fault(
    kind: str,
    name: str,
    setup: Callable[[Cluster, FaultPod], Any],
    *,
    requests: int = 300,
    allowed: Iterable[str] = (),
) -> Row:
    """One of 4 pods misbehaves (``setup``) during the load; the others stay eligible. Failures
    at the caller may only be of the ``allowed`` kinds; the bad pod's share is recorded."""
    async with cluster(kind, pods=4) as c:
        bad = c.pods[1]
        await setup(c, bad)
        load = await c.load(requests)
        await c.check(load, allowed=allowed, kept=[p for p in c.pods if p is not bad])
        return Row(
            name,
            kind,
            load.requests,
            load.failed,
            c.share([bad]),
            None,
            c.inflight(),
            str(dict(load.failures)),
        )


LOST_CONNECTION = (
    "RemoteProtocolError",
    "ReadError",
    "ServerDisconnectedError",
    "ClientOSError",
    "ClientPayloadError",
)
"""What a caller sees when the pod dies after its request was sent (httpx / aiohttp names)."""


async def pod_killed_mid_load(kind: str, requests: int = 400) -> Row:
    """A pod dies while requests are in flight to it; its slice goes a little later. Requests not
    yet sent, and (httpx) idempotent ones that got no answer, are retried elsewhere. The only
    requests allowed to fail are those already on the dying pod (a response cut mid-way cannot be
    replayed; aiohttp's connector cannot retry a sent request at all), with a connection error."""
    async with cluster(kind, pods=4) as c:
        bad = c.pods[1]
        algorithm: Any = c.balancer.algorithm
        running = asyncio.create_task(c.load(requests))
        await c.until(lambda: c.attempts[bad.key] >= 20)
        start = time.monotonic()
        on_it = algorithm.inflight(bad.key)
        await bad.kill()
        await asyncio.sleep(0.1)  # discovery lags: the dead pod stays listed for a while
        c.api.delete("EndpointSlice", "shop", bad.name)
        await c.until(lambda: bad.key not in c.eligible)
        recovery = time.monotonic() - start
        load = await running
        await c.check(load, allowed=LOST_CONNECTION, kept=[p for p in c.pods if p is not bad])
        assert load.failed <= on_it, f"{load.failed} failed, {on_it} were in flight to the dead pod"
        detail = f"{on_it} in flight to it when killed; failures {dict(load.failures)}"
        return Row(
            "pod killed mid-load",
            kind,
            load.requests,
            load.failed,
            c.share([bad]),
            recovery,
            c.inflight(),
            detail,
        )


async def rolling_update(kind: str, pods: int = 10, requests: int = 10_000, concurrency: int = 50) -> Row:
    """Every one of ``pods`` pods replaced, one by one (new ready, old terminating, old slice gone,
    old pod killed), during ``requests`` requests: 0 fail, the new pods serve at the end."""
    async with cluster(kind, pods=2 * pods, serve=pods) as c:
        old, new = c.pods[:pods], c.pods[pods:]
        running = asyncio.create_task(c.load(requests, concurrency))
        start = time.monotonic()
        for old_pod, new_pod in zip(old, new, strict=True):
            c.api.apply(pod_slice(new_pod, ready=False))
            await asyncio.sleep(0.02)
            c.api.apply(pod_slice(new_pod))
            c.api.apply(pod_slice(old_pod, ready=False, serving=True, terminating=True))
            await asyncio.sleep(0.02)
            c.api.delete("EndpointSlice", "shop", old_pod.name)
            await c.until(lambda p=old_pod: p.key not in c.eligible)  # type: ignore[misc]
            await c.drained(old_pod)
            await old_pod.kill()
        recovery = time.monotonic() - start
        load = await running
        await c.check(load)
        assert c.eligible == c.keys(new)
        assert not running.cancelled() and load.requests == requests
        return Row(
            f"rolling update of {pods} pods", kind, load.requests, load.failed, None, recovery, c.inflight()
        )


async def zone_loss(kind: str, requests: int = 300) -> Row:
    """A client in zone a: traffic stays in a; then zone a loses every endpoint mid-load and
    traffic falls back to zone b. No request fails."""
    # spill_at high: this is about losing a zone, not spilling under load (tests/test_zones.py)
    async with cluster(kind, pods=4, zones=["a", "a", "b", "b"], zone="a", spill_at=1000) as c:
        zone_a, zone_b = c.pods[:2], c.pods[2:]
        await c.until(lambda: c.eligible == c.keys(zone_a))
        before = await c.load(100)
        assert set(before.pods) == {p.name for p in zone_a}, before.pods
        running = asyncio.create_task(c.load(requests))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        for pod in zone_a:
            c.api.delete("EndpointSlice", "shop", pod.name)
        await c.until(lambda: c.eligible == c.keys(zone_b))
        recovery = time.monotonic() - start
        for pod in zone_a:
            await c.drained(pod)
            await pod.kill()
        load = await running
        await c.check(load)
        status = c.balancer.status().zone
        assert status is not None and status.mode == "all-zones", status
        total = before.requests + load.requests
        return Row(
            "zone loses all its endpoints",
            kind,
            total,
            before.failed + load.failed,
            None,
            recovery,
            c.inflight(),
        )


async def cancelled_requests(kind: str, count: int = 1000) -> Row:
    """``count`` requests to a slow path, all cancelled by their callers mid-flight: every lease
    comes back (in flight 0), they count as cancelled, and the next requests are served."""
    async with cluster(kind, pods=4) as c:
        tasks = [asyncio.create_task(c.get("/slow?delay=30", 60.0)) for _ in range(count)]
        # Cancel while they are at every stage: queued for a connection, connecting, awaiting the answer.
        await c.until(lambda: c.inflight() >= count // 10, 30)
        await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        assert cancelled == count, Counter(type(r).__name__ for r in results)
        await c.settle()
        assert c.inflight() == 0, c.balancer.algorithm
        after = await c.load(200)
        await c.check(after)
        outcomes = c.balancer.status().outcomes
        return Row(
            f"{count} cancelled requests",
            kind,
            count + after.requests,
            after.failed,
            None,
            None,
            c.inflight(),
            str(dict(outcomes)),
        )


# -- the matrix: every API fault as (faults to queue, hooks), and every row the report prints ----
def _rotate_token(c: Cluster) -> None:
    c.token_file.write_text("rotated-token")  # what the kubelet does when it refreshes the token
    c.api.set_tokens({"rotated-token": None})


def _forbid(c: Cluster) -> None:
    c.api.set_tokens({c.api.token: Permissions.allow("services:get")})


async def _restore_after_403(c: Cluster) -> None:
    await c.until(lambda: any(r.status == 403 for r in c.api.requests), 10)
    await asyncio.sleep(0.3)
    c.api.set_tokens({c.api.token: None})


GARBAGE_SLICES: list[dict[str, Any]] = [
    {**endpoint_slice("web", "shop", name="junk-1"), "endpoints": "not a list", "ports": 7},
    endpoint_slice("web", "shop", name="junk-2", endpoints=["999.1.1.1", "not-an-ip"]),
    {**endpoint_slice("web", "shop", name="junk-3"), "addressType": "FQDN"},
    {**endpoint_slice("web", "shop", name="junk-4"), "endpoints": [{"addresses": []}, {"conditions": 5}]},
]


def _apply_garbage(c: Cluster) -> None:
    for obj in GARBAGE_SLICES:
        c.api.apply(obj)


API_FAULTS: dict[str, dict[str, Any]] = {
    "watch dropped mid-stream": {"faults": [Fault.drop_mid_stream(after_events=0)]},
    "watch dropped mid-line": {"faults": [Fault.drop_mid_line(after_events=0)]},
    # aiohttp retries an idempotent GET once after a drop before headers: two make it fail
    "watch dropped before headers": {"faults": [Fault.drop_before_headers(on="watch", count=2)]},
    "watch stalled": {"faults": [Fault.stall(None, on="watch")]},
    "410 in stream": {"faults": [Fault.gone_in_stream(after_events=0)]},
    "410 as HTTP": {"faults": [Fault.gone(on="watch")]},
    "expired continue token": {
        "faults": [
            Fault.gone_in_stream(after_events=0),  # relist, 2 slices a page ...
            Fault.stall(0.05, on="list"),  # ... page one answers late ...
            Fault.gone(on="list"),  # ... and page two's continue token has expired
        ],
        "page_size": 2,
    },
    "500 from the apiserver": {"faults": [Fault.http_error(500, count=3)]},
    "503 from the apiserver": {"faults": [Fault.http_error(503, count=3)]},
    "504 from the apiserver": {"faults": [Fault.http_error(504, count=3)]},
    "429 with Retry-After": {"faults": [Fault.too_many_requests(retry_after=2, count=2)], "min_backoff": 2.0},
    "apiserver hangs": {"faults": [Fault.stall(None, on="api", count=2)]},
    "401 with a rotated token": {"faults": [], "before": _rotate_token},
    "403": {"faults": [], "before": _forbid, "during": _restore_after_403},
    "malformed events": {
        "faults": [
            Fault.malformed_line("this is not json", after_events=0),
            Fault.malformed_line('{"object": {}}', after_events=0),
        ]
    },
    "garbage slices": {"faults": [], "before": _apply_garbage},
}


async def run_api_fault(kind: str, name: str, requests: int = 150) -> Row:
    """One row of :data:`API_FAULTS`."""
    spec = API_FAULTS[name]
    return await api_fault(
        kind,
        name,
        spec["faults"],
        requests=requests,
        before=spec.get("before"),
        during=spec.get("during"),
        page_size=spec.get("page_size", 500),
        min_backoff=spec.get("min_backoff", 0.0),
    )


async def _refuse(c: Cluster, pod: FaultPod) -> None:
    await pod.kill()  # still listed in its slice, but its port is closed


async def _answer_503(c: Cluster, pod: FaultPod) -> None:
    pod.status = 503


async def _hang(c: Cluster, pod: FaultPod) -> None:
    pod.hang.set()


async def _ten_times_slower(c: Cluster, pod: FaultPod) -> None:
    pod.delay *= 10


POD_FAULTS: dict[str, tuple[Callable[[Cluster, FaultPod], Any], tuple[str, ...]]] = {
    "pod refusing": (_refuse, ()),
    "pod answering 503": (_answer_503, ("HTTP 503",)),  # no status retry by default: the caller sees it
    "pod hanging": (_hang, ("timeout",)),  # the caller's 2 s timeout ends those requests
    "pod 10x slower": (_ten_times_slower, ()),
}


async def run_pod_fault(kind: str, name: str, requests: int = 250) -> Row:
    """One row of :data:`POD_FAULTS`."""
    setup, allowed = POD_FAULTS[name]
    return await pod_fault(kind, name, setup, requests=requests, allowed=allowed)
