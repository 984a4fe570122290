"""Scenes 7, 8 and 9: one client for every Service, deterministic subsetting, hedged requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from ._cluster import NAMESPACE, ORDERS, ORDERS_PORT, WEB, Cluster, until
from ._scene import Context, SceneResult
from ._scenes import URL, httpx_send
from ._traffic import Send, Tally, drive

ORDERS_URL = f"http://{ORDERS}.{NAMESPACE}:{ORDERS_PORT}/"
MIX = ("web", "orders") * 4 + ("direct",)  # 1 request in 9 to a host that is not a Service
CLUSTER_CONCURRENCY = 16
CLUSTER_REQUESTS = 540  # 240 per Service: every pod gets some, whatever the machine's speed
SUBSET_CLIENTS, SUBSET_SIZE = 10, 3  # 10 x 3 windows over 10 pods: each pod in exactly 3 subsets
SUBSET_REQUESTS = 60  # per client (half with --quick), multiples of SUBSET_SIZE: each pod gets R / 3
SUBSET_CONCURRENCY = 1  # per client: one keep-alive connection per pod of its subset
SUBSET_BOUND = 1.1  # max/mean requests per pod: the subsets tile the pods, round robin splits evenly
FLAP = (10.0, 0.5, 1.5)  # 10x slower for 0.5 s of every 1.5 s, from WARMUP into each phase
WARMUP = 0.5  # seconds of healthy traffic first: the hedge budget saves up, the p95 is measured
HEDGE_CONCURRENCY = 4
HEDGE_BUDGET = 0.05  # HedgePolicy's default budget_percent
HEDGE_TAIL = 0.6  # hedging's p99 must be under this fraction of the unhedged p99


def _api_reads(cluster: Cluster, service: str) -> tuple[int, int]:
    """Requests the fake API server received for Service ``service``: reads of the Service
    object, and lists or watches of its EndpointSlices."""
    reads = slices = 0
    for r in cluster.api.requests:
        if r.verb == "get" and r.path.endswith(f"/namespaces/{NAMESPACE}/services/{service}"):
            reads += 1
        elif r.verb in ("list", "watch") and r.path.endswith("/endpointslices"):
            slices += r.query.get("labelSelector", "").endswith(f"service-name={service}")
    return reads, slices


async def cluster_client(cluster: Cluster, ctx: Context) -> SceneResult:
    """One BalancedTransport.cluster() for two Services called by name, and a host passed through."""
    import httpx

    from ..integrations.httpx import BalancedTransport

    assert cluster.orders is not None, "the cluster scene needs the orders pods"
    result = SceneResult("cluster", "7. One client for every Service: BalancedTransport.cluster()")
    web, orders = [p.name for p in cluster.web.pods], [p.name for p in cluster.orders.pods]
    direct = cluster.web.pods[-1]
    urls = {"web": URL, "orders": ORDERS_URL, "direct": f"http://localhost:{direct.port}/"}
    label = f"{direct.name} (direct)"
    ctx.display.scene_started(
        result.key,
        result.title,
        f"One httpx client names no Service: {URL} and {ORDERS_URL} are balanced per request "
        f"(Service port {ORDERS_PORT} -> the pods' port named http); {urls['direct']} passes through.",
    )
    transport = BalancedTransport.cluster(kubeconfig=cluster.kubeconfig)
    routes = transport.cluster_routes
    assert routes is not None
    watched_before = list(routes.watched)
    before = {s: _api_reads(cluster, s) for s in (WEB, ORDERS)}
    hosts: defaultdict[str, set[str]] = defaultdict(set)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:

        async def send(key: str | None) -> tuple[int, str]:
            assert key is not None
            response = await client.get(urls[key])
            body = response.json()
            hosts[key].add(str(body["host"]))
            return int(response.status_code), label if key == "direct" else str(body["pod"])

        pods = [*web, *orders, label]
        # A count, not a duration: the first requests wait for the Service reads and first lists.
        tally = await ctx.run("cluster client", send, seconds=ctx.seconds(2.0), cap=30,
                              requests=CLUSTER_REQUESTS // (2 if ctx.quick else 1),
                              concurrency=CLUSTER_CONCURRENCY, pods=pods, keys=MIX)  # fmt: skip
        watched = sorted(routes.watched)
    after = {s: _api_reads(cluster, s) for s in (WEB, ORDERS)}
    per = {k: Counter(r.pod for r in tally.records if r.key == k and r.status == 200) for k in urls}
    first = min((r.at for r in tally.records), default=0.0)
    spread = {k: _max_min([per[k][p] for p in names]) for k, names in (("web", web), ("orders", orders))}
    ctx.done(tally, pods, f"first answers after {first * 1e3:.0f} ms (Service read + first list); "
                          f"max/min per pod: web {spread['web']:.2f}, orders {spread['orders']:.2f}")  # fmt: skip
    ctx.display.print(
        f"  watched before the first request: {watched_before or 'none'}; after: {', '.join(watched)}"
    )
    reads = {s: (after[s][0] - before[s][0], after[s][1] - before[s][1]) for s in (WEB, ORDERS)}
    ctx.display.print(
        f"  API requests: {reads[ORDERS][0]} read of Service orders, {reads[ORDERS][1]} list/watch of its "
        f"slices; Host seen by the pods: {', '.join(sorted(hosts['web'] | hosts['orders']))}"
    )
    result.phases = [tally]
    result.figures = {"first_answer": first, "web_max_min": spread["web"], "orders_max_min": spread["orders"],
                      "orders_service_reads": reads[ORDERS][0], "direct": sum(per["direct"].values()),
                      "failed": tally.failed, "requests": tally.count}  # fmt: skip
    result.checks = {
        "cluster: every request answered": tally.failed == 0 and tally.count > 0,
        "cluster: both Services balanced, each pod served": all(per["web"][p] for p in web)
        and all(per["orders"][p] for p in orders)
        and set(per["web"]) == set(web)
        and set(per["orders"]) == set(orders),
        "cluster: watches started by the first request, one Service read each": not watched_before
        and before[ORDERS] == (0, 0)
        and watched == [f"{NAMESPACE}/{ORDERS}", f"{NAMESPACE}/{WEB}"]
        and reads[ORDERS][0] == 1
        and reads[WEB][0] == 1
        and reads[ORDERS][1] >= 1,
        "cluster: pods see the Service's name as Host": hosts["web"] == {f"{WEB}.{NAMESPACE}"}
        and hosts["orders"] == {f"{ORDERS}.{NAMESPACE}:{ORDERS_PORT}"},
        "cluster: localhost passed through to its own pod": set(per["direct"]) == {label},
    }
    result.headline = (
        f"web.shop and orders.shop:{ORDERS_PORT} balanced over {len(web)} + {len(orders)} pods "
        f"(max/min {spread['web']:.2f} / {spread['orders']:.2f}); {sum(per['direct'].values())} passed through"
    )
    return result


def _max_min(counts: Sequence[int]) -> float:
    return max(counts) / min(counts) if counts and min(counts) else float("inf")


async def subsetting(cluster: Cluster, ctx: Context) -> SceneResult:
    """10 clients, each balancing over its deterministic subset of 3 of the 10 HTTP/1.1 pods."""
    import httpx

    from .. import LoadBalancer, Subset, deterministic_subset
    from ..integrations.httpx import BalancedTransport

    n, size = SUBSET_CLIENTS, SUBSET_SIZE
    # HTTP/1.1: a request cancelled on an HTTP/2 connection (a timeout on a starved machine) can
    # trip httpcore's stream accounting ("semaphore released too many times", encode/httpcore#1022)
    fleet = cluster.web
    names = [p.name for p in fleet.pods]
    result = SceneResult(
        "subset", f"8. Deterministic subsetting: {n} clients, {size} of {len(names)} pods each"
    )
    ctx.display.scene_started(
        result.key,
        result.title,
        f"Each client: LoadBalancer(policy=Subset({size}, client_id=i, client_count={n}).policy()), "
        "round_robin, one request at a time (one keep-alive connection per pod).",
    )
    name_of = {p.key: p.name for p in fleet.pods}
    subsets = [{name_of[k] for k in deterministic_subset(name_of, size, i, n)} for i in range(n)]
    connections: list[set[tuple[Any, Any]]] = [set() for _ in range(n)]
    tally = Tally(f"{n} clients, subset {size}")
    per_client = SUBSET_REQUESTS // (2 if ctx.quick else 1)
    async with contextlib.AsyncExitStack() as stack:
        senders: list[Send] = []
        balancers: list[LoadBalancer] = []
        for i in range(n):
            policy = Subset(size, client_id=i, client_count=n).policy()
            balancer = LoadBalancer(f"{WEB}.{NAMESPACE}:http", source=cluster.source(WEB), policy=policy,
                                    algorithm="round_robin", fallback="none")  # fmt: skip
            balancers.append(await stack.enter_async_context(balancer))
            transport = BalancedTransport(balancer)
            client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, timeout=10))
            senders.append(_subset_send(client, connections[i]))
        await asyncio.gather(
            *(_ready(b, {fleet.pod(p).key for p in s}) for b, s in zip(balancers, subsets, strict=True))
        )
        ctx.display.phase_started(tally, 2.0, names)
        cap = 30.0
        await asyncio.gather(*(drive(send, tally, seconds=cap, concurrency=SUBSET_CONCURRENCY,
                                     requests=per_client, keys=[f"client-{i}"])
                               for i, send in enumerate(senders)))  # fmt: skip
    per_pod = tally.pods()
    counts = [per_pod[p] for p in names]
    mean = sum(counts) / len(counts)
    evenness = max(counts) / mean if mean else float("inf")
    used = [{r.pod for r in tally.records if r.key == f"client-{i}" and r.pod} for i in range(n)]
    conns = [len(c) for c in connections]
    ctx.done(tally, names, f"requests per pod {min(counts)}-{max(counts)} (max/mean {evenness:.2f}); "
                           f"connections per client {min(conns)}-{max(conns)}")  # fmt: skip
    for line in _subset_rows(names, used, conns):
        ctx.display.print(line)
    ctx.display.print(
        f"  {sum(conns)} connections in all; without subsetting up to {n} x {len(names)} = {n * len(names)}"
    )
    matrix = [
        [sum(1 for r in tally.records if r.key == f"client-{i}" and r.pod == p) for p in names]
        for i in range(n)
    ]
    result.phases = [tally]
    result.matrix = ([f"client {i}" for i in range(n)], names, matrix)
    result.figures = {"max_mean": evenness, "max_connections": max(conns), "connections": sum(conns),
                      "pods_used": sum(1 for c in counts if c), "failed": tally.failed}  # fmt: skip
    result.checks = {
        "subset: every request answered": tally.failed == 0 and tally.count == n * per_client,
        # at least one: a connection is seen on every answer (httpx's network_stream extension)
        f"subset: each client connects to at most {size} pods": 1 <= min(conns) <= max(conns) <= size
        and all(u <= s for u, s in zip(used, subsets, strict=True)),
        "subset: every pod used by some client": all(counts),
        f"subset: max/mean requests per pod <= {SUBSET_BOUND}": evenness <= SUBSET_BOUND,
    }
    result.headline = (
        f"{max(conns)} connections per client ({sum(conns)} in all, not {n * len(names)}); "
        f"per pod max/mean {evenness:.2f}"
    )
    return result


def _subset_send(client: Any, seen: set[tuple[Any, Any]]) -> Send:
    """Sends to Service web; records each response's TCP connection (its local address)."""

    async def send(key: str | None) -> tuple[int, str]:
        response = await client.get(URL)
        stream = response.extensions.get("network_stream")
        if stream is not None:
            seen.add((stream.get_extra_info("client_addr"), stream.get_extra_info("server_addr")))
        return int(response.status_code), str(response.json()["pod"])

    return send


async def _ready(balancer: Any, keys: set[str]) -> None:
    await balancer.wait_ready(15)
    await until(lambda: {e.key for e in balancer.eligible} == keys)


def _subset_rows(names: Sequence[str], used: Sequence[set[str]], conns: Sequence[int]) -> list[str]:
    """One line per client: '#' for each pod it sent to, its TCP connections."""
    header = "    client  pods " + " ".join(p.rsplit("-", 1)[-1] for p in names) + "  connections"
    rows = [
        f"    {i:>6}       " + " ".join("#" if p in u else "." for p in names) + f"  {c:>3}"
        for i, (u, c) in enumerate(zip(used, conns, strict=True))
    ]
    return [header, *rows]


async def hedging(cluster: Cluster, ctx: Context) -> SceneResult:
    """A flapping pod: the same traffic without hedging, then with HedgePolicy()."""
    from .. import HedgePolicy

    fleet, names = cluster.web, [p.name for p in cluster.web.pods]
    flapping = fleet.pods[len(names) // 3].name
    factor, on, period = FLAP
    result = SceneResult("hedge", "9. Hedged requests: a flapping pod, without and with HedgePolicy()")
    result.focus = flapping
    ctx.display.scene_started(
        result.key,
        result.title,
        f"{flapping} turns {factor:.0f}x slower for {on} s of every {period} s; least_request, "
        "without hedging, then HedgePolicy() (a second pod after the p95, at most 5% extra).",
    )
    figures: dict[str, float] = {}
    for key, label, policy in (
        ("plain", "flapping, no hedging", None),
        ("hedged", "flapping, HedgePolicy()", HedgePolicy()),
    ):
        async with cluster.httpx(WEB, hedge=policy) as (client, balancer):
            phase = asyncio.create_task(ctx.run(label, httpx_send(client, URL), seconds=ctx.seconds(3.5),
                                                concurrency=HEDGE_CONCURRENCY, pods=names))  # fmt: skip
            try:
                await asyncio.sleep(WARMUP)
                await fleet.configure(flapping, flap=FLAP)
                tally = await phase
            finally:
                if not phase.done():
                    phase.cancel()
                    await asyncio.wait({phase})
                await fleet.configure(flapping, flap=None)
            status = balancer.status()
        extra = status.hedges / (tally.count or 1)
        figures |= {f"{key}_p50": tally.quantile(0.5), f"{key}_p99": tally.quantile(0.99),
                    f"{key}_p999": tally.quantile(0.999), f"{key}_extra": extra,
                    f"{key}_hedges": status.hedges, f"{key}_refused": status.hedge_budget_exhausted,
                    f"{key}_failed": tally.failed}  # fmt: skip
        ctx.done(tally, names, f"p50 {_ms(tally.quantile(0.5))}, p99 {_ms(tally.quantile(0.99))}, "
                               f"p99.9 {_ms(tally.quantile(0.999))}; extra requests {extra:.1%} "
                               f"({status.hedges} hedges, {status.hedge_budget_exhausted} refused)")  # fmt: skip
        result.phases.append(tally)
    f = result.figures = figures
    within_budget = 0 < f["hedged_extra"] <= HEDGE_BUDGET  # and some hedges were sent
    result.checks = {
        "hedging: every request answered": f["plain_failed"] == 0 and f["hedged_failed"] == 0,
        f"hedging: p99 under {HEDGE_TAIL:.0%} of no hedging's": f["hedged_p99"] < HEDGE_TAIL * f["plain_p99"],
        f"hedging: extra requests within the {HEDGE_BUDGET:.0%} budget": within_budget,
    }
    result.headline = (
        f"p99 {_ms(f['plain_p99'])} -> {_ms(f['hedged_p99'])}, p99.9 {_ms(f['plain_p999'])} -> "
        f"{_ms(f['hedged_p999'])}; {f['hedged_extra']:.1%} extra requests"
    )
    return result


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"
