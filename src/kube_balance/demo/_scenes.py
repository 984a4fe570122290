"""Scenes 1, 2 and 6: why per-request balancing, a slow pod, the same through aiohttp."""

from __future__ import annotations

from typing import Any

from ._cluster import WEB, WEB_H2, Cluster
from ._scene import Context, SceneResult, ratio
from ._traffic import Send

URL = f"http://{WEB}.shop/"
H2_URL = f"http://{WEB_H2}.shop/"
SLOW_FACTOR = 10
H2_REQUESTS = 300  # per phase of the why scene, quick or not: enough for the spread to mean something
SLOW_CONCURRENCY = 6  # requests in flight: low enough that the pods' time, not the client's queue, dominates


def httpx_send(client: Any, url: str) -> Send:
    async def send(key: str | None) -> tuple[int, str]:
        headers = {"X-Affinity": key} if key is not None else None
        response = await client.get(url, headers=headers)
        return int(response.status_code), str(response.json()["pod"])

    return send


async def why(cluster: Cluster, ctx: Context) -> SceneResult:
    """HTTP/2 through an L4 Service vs BalancedTransport(http2=True)."""
    import httpx

    result = SceneResult("why", "1. Why: HTTP/2 through a ClusterIP vs balanced per request")
    ctx.display.scene_started(
        result.key,
        result.title,
        "A ClusterIP picks a pod per TCP connection; HTTP/2 sends every request on one connection.",
    )
    fleet, names = cluster.h2, [p.name for p in cluster.h2.pods]
    port = await fleet.l4_proxy()
    async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as plain:
        send = httpx_send(plain, f"http://127.0.0.1:{port}/")
        await send(None)  # the one connection, opened before the load (as a long-lived client has it)
        l4 = await ctx.run("L4 Service, HTTP/2", send, seconds=2.0, cap=30, requests=H2_REQUESTS, concurrency=32,
                           pods=names)  # fmt: skip
    shares = l4.shares(names)
    result.focus = max(shares, key=lambda pod: shares[pod])
    ctx.done(l4, names, f"{max(shares.values()):.0%} of requests on one pod")
    async with cluster.httpx(WEB_H2, http1=False, http2=True) as (client, _):
        send = httpx_send(client, H2_URL)
        ours = await ctx.run("BalancedTransport(http2=True)", send, seconds=2.0, cap=30, requests=H2_REQUESTS,
                             concurrency=32, pods=names)  # fmt: skip
    even = ours.shares(names)
    ctx.done(ours, names, f"max/min share {ratio(even):.2f}")
    result.phases = [l4, ours]
    result.figures = {"l4_max_share": max(shares.values()), "balanced_max_min": ratio(even),
                      "balanced_max_share": max(even.values())}  # fmt: skip
    result.checks = {
        "L4: one pod got every HTTP/2 request": max(shares.values()) == 1.0,
        "balanced: no pod above twice its even share": max(even.values()) <= 2 / len(names),
        "balanced: every pod served requests": min(even.values()) > 0,
    }
    result.headline = (
        f"L4: {max(shares.values()):.0%} on one pod; balanced: {min(even.values()):.1%}-"
        f"{max(even.values()):.1%} per pod (max/min {ratio(even):.2f})"
    )
    return result


async def slow_pod(cluster: Cluster, ctx: Context) -> SceneResult:
    """One pod 10x slower: round_robin vs least_request vs peak_ewma."""
    result = SceneResult("slow", f"2. A slow pod ({SLOW_FACTOR}x): round_robin vs least_request vs peak_ewma")
    slow = result.focus = cluster.web.pods[0].name
    ctx.display.scene_started(
        result.key, result.title, f"{slow} answers {SLOW_FACTOR}x slower than the others."
    )
    names = [p.name for p in cluster.web.pods]
    await cluster.web.configure(slow, slow_factor=SLOW_FACTOR)
    try:
        for algorithm in ("round_robin", "least_request", "peak_ewma"):
            async with cluster.httpx(WEB, algorithm=algorithm) as (client, _):
                tally = await ctx.run(algorithm, httpx_send(client, URL), seconds=ctx.seconds(2.0),
                                      concurrency=SLOW_CONCURRENCY,
                                      pods=names)  # fmt: skip
            share = tally.shares(names)[slow]
            ctx.done(tally, names, f"p50 {tally.quantile(0.5) * 1e3:.0f} ms, p99 {tally.quantile(0.99) * 1e3:.0f} ms, "
                                   f"slow pod {share:.1%}")  # fmt: skip
            result.phases.append(tally)
            result.figures[f"{algorithm}_p50"] = tally.quantile(0.5)
            result.figures[f"{algorithm}_p95"] = tally.quantile(0.95)
            result.figures[f"{algorithm}_p99"] = tally.quantile(0.99)
            result.figures[f"{algorithm}_slow_share"] = share
    finally:
        await cluster.web.configure(slow, slow_factor=1)
    f = result.figures
    result.checks = {
        "least_request: the slow pod gets under 3/4 of round_robin's share": f["least_request_slow_share"]
        < f["round_robin_slow_share"] * 0.75,
        "peak_ewma: the slow pod gets under half round_robin's share": f["peak_ewma_slow_share"]
        < f["round_robin_slow_share"] / 2,
        # p95: with a few hundred requests per algorithm a p99 is the 2nd-slowest request
        "peak_ewma: p95 below round_robin's": f["peak_ewma_p95"] < f["round_robin_p95"],
    }
    result.headline = (
        f"p99 {f['round_robin_p99'] * 1e3:.0f} / {f['least_request_p99'] * 1e3:.0f} / "
        f"{f['peak_ewma_p99'] * 1e3:.0f} ms; slow pod {f['round_robin_slow_share']:.1%} / "
        f"{f['least_request_slow_share']:.1%} / {f['peak_ewma_slow_share']:.1%}"
    )
    return result


async def aiohttp_scene(cluster: Cluster, ctx: Context) -> SceneResult:
    """The slow-pod traffic through aiohttp's BalancedConnector (least_request)."""
    result = SceneResult("aiohttp", "6. The same through aiohttp's BalancedConnector")
    slow = result.focus = cluster.web.pods[0].name
    ctx.display.scene_started(
        result.key, result.title, f"aiohttp.ClientSession, least_request; {slow} 10x slower."
    )
    names = [p.name for p in cluster.web.pods]
    await cluster.web.configure(slow, slow_factor=SLOW_FACTOR)
    try:
        async with cluster.aiohttp(WEB) as (session, _):

            async def send(key: str | None) -> tuple[int, str]:
                async with session.get(URL) as response:
                    return response.status, str((await response.json())["pod"])

            tally = await ctx.run(
                "BalancedConnector", send, seconds=ctx.seconds(2.0), concurrency=SLOW_CONCURRENCY, pods=names
            )
    finally:
        await cluster.web.configure(slow, slow_factor=1)
    share = tally.shares(names)[slow]
    ctx.done(tally, names, f"p99 {tally.quantile(0.99) * 1e3:.0f} ms, slow pod {share:.1%}")
    result.phases = [tally]
    result.figures = {"p50": tally.quantile(0.5), "p99": tally.quantile(0.99), "slow_share": share,
                      "failed": tally.failed, "requests": tally.count}  # fmt: skip
    result.checks = {
        "aiohttp: every request answered": tally.failed == 0 and tally.count > 0,
        "aiohttp: the slow pod gets under its even share": share < 1 / len(names),
    }
    result.headline = f"{tally.count} requests, {tally.failed} failed; p99 {tally.quantile(0.99) * 1e3:.0f} ms, slow pod {share:.1%}"
    return result
