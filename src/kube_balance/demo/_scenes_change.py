"""Scenes 3, 4 and 5: a rolling update, a failing pod ejected, affinity with bounded loads."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

from ._cluster import NAMESPACE, WEB, Cluster, until
from ._scene import Context, SceneResult
from ._scenes import URL, httpx_send
from ._traffic import Tally

LOAD_FACTOR = 1.5  # Envoy's example hash_balance_factor (150); 1.25 spills keys on a busy client
CONCURRENCY = 16
DRAIN = 0.2  # seconds between an old pod leaving the balancer and its deletion (its requests finish)
SURGE = 3  # pods replaced at a time: a Deployment's default maxSurge (25%) of 10 pods, rounded up
KEYS = [f"user-{i}" for i in range(40)]  # each sent 6 times while a pod is hot: a majority means something


async def rolling_update(cluster: Cluster, ctx: Context) -> SceneResult:
    """Every pod replaced during traffic: new pod ready, old one terminating, drained, removed."""
    result = SceneResult("rolling", "3. A rolling update of every pod during traffic")
    fleet = cluster.web
    ctx.display.scene_started(
        result.key,
        result.title,
        "3 pods at a time (maxSurge 25%): new pods join ready, old ones turn terminating, drain, are deleted.",
    )
    old = [p.name for p in fleet.pods]
    new = [_next_name(name) for name in old]
    stop = asyncio.Event()
    async with cluster.httpx(WEB) as (client, balancer):

        def eligible() -> set[str]:
            return {e.key for e in balancer.eligible}

        async def update() -> None:
            batches = [list(range(i, min(i + SURGE, len(old)))) for i in range(0, len(old), SURGE)]
            for batch in batches:
                added = [(await fleet.add(new[i])).key for i in batch]
                for i in batch:
                    cluster.slice_conditions(fleet, new[i], ready=True)
                await until(lambda: eligible().issuperset(added))  # noqa: B023 - awaited here
                gone = {fleet.pod(old[i]).key for i in batch}
                for i in batch:
                    cluster.slice_conditions(fleet, old[i], ready=False, serving=True, terminating=True)
                await until(lambda: not eligible() & gone)  # noqa: B023
                await asyncio.sleep(DRAIN)  # what they were sent finishes (the pods' grace)
                for i in batch:
                    cluster.api.delete("EndpointSlice", NAMESPACE, old[i])
                    await fleet.remove(old[i])
            await asyncio.sleep(ctx.seconds(0.8))  # traffic on the new pods only
            stop.set()

        updating = asyncio.create_task(update())
        try:
            tally = await ctx.run("rolling update", httpx_send(client, URL), seconds=ctx.seconds(4.8), cap=60,
                                  concurrency=16, pods=[*old, *new], stop=stop)  # fmt: skip
        finally:
            await updating
    served = tally.pods()
    ctx.done(tally, [*old, *new], f"{tally.failed} failed of {tally.count}")
    result.phases = [tally]
    result.figures = {"failed": tally.failed, "requests": tally.count,
                      "new_pods_served": sum(1 for n in new if served[n])}  # fmt: skip
    result.checks = {
        "rolling update: 0 failed requests": tally.failed == 0 and tally.count > 0,
        "rolling update: every new pod served requests": all(served[n] for n in new),
    }
    result.headline = f"{len(old)} pods replaced, {tally.count} requests, {tally.failed} failed"
    return result


def _next_name(name: str) -> str:
    """web-3 -> web-v2-3, web-v2-3 -> web-v3-3: a new ReplicaSet's pod."""
    parts = name.split("-")
    if len(parts) >= 3 and parts[-2].startswith("v") and parts[-2][1:].isdigit():
        return "-".join([*parts[:-2], f"v{int(parts[-2][1:]) + 1}", parts[-1]])
    return "-".join([*parts[:-1], "v2", parts[-1]])


async def failing_pod(cluster: Cluster, ctx: Context) -> SceneResult:
    """A pod answering 503: the default outlier detection ejects it after 5 failures in a row."""
    result = SceneResult("failing", "4. A failing pod (503) ejected by outlier detection")
    fleet, names = cluster.web, [p.name for p in cluster.web.pods]
    bad = fleet.pods[len(names) // 2]
    result.focus = bad.name
    ctx.display.scene_started(
        result.key,
        result.title,
        f"{bad.name} starts answering 503; the default policy ejects it (5 in a row).",
    )
    async with cluster.httpx(WEB) as (client, balancer):
        send = httpx_send(client, URL)
        before = await ctx.run("healthy", send, seconds=ctx.seconds(1.2), concurrency=16, pods=names)
        ctx.done(before, names, f"{bad.name}: {_share(before, bad.name):.1%} of requests")
        await fleet.configure(bad.name, status=503)
        try:
            stop = asyncio.Event()

            async def watch() -> None:  # the phase lasts until the ejection (or 15 s)
                while bad.key not in balancer.status().ejected:  # noqa: ASYNC110 - its state
                    await asyncio.sleep(0.02)
                stop.set()

            watching = asyncio.create_task(watch())
            try:
                failing = await ctx.run(f"{bad.name} answers 503", send, seconds=1.0, cap=15, concurrency=16,
                                        pods=names, stop=stop)  # fmt: skip
            finally:
                watching.cancel()
            ejected = bad.key in balancer.status().ejected
            ctx.done(failing, names, f"{failing.failed} 503s reached the client; ejected: {ejected}")
            after = await ctx.run(
                "after the ejection", send, seconds=ctx.seconds(1.2), concurrency=16, pods=names
            )
            ctx.done(after, names, f"{bad.name}: {_share(after, bad.name):.1%} of requests")
        finally:
            await fleet.configure(bad.name, status=200)
    result.phases = [before, failing, after]
    result.figures = {"share_before": _share(before, bad.name), "share_after": _share(after, bad.name),
                      "client_503s": failing.failed + after.failed, "ejected": float(ejected)}  # fmt: skip
    result.checks = {
        "failing pod: ejected": ejected,
        "failing pod: its share drops to 0 once ejected": _share(after, bad.name) == 0.0
        and after.failed == 0,
        "failing pod: it served requests before": _share(before, bad.name) > 0,
    }
    result.headline = (
        f"{bad.name}: {_share(before, bad.name):.1%} before, {_share(after, bad.name):.1%} after ejection; "
        f"{failing.failed} 503s reached the client"
    )
    return result


def _share(tally: Tally, pod: str) -> float:
    """``pod``'s share of every request of ``tally`` (its 503s included)."""
    return sum(1 for r in tally.records if r.pod == pod) / (tally.count or 1)


async def affinity(cluster: Cluster, ctx: Context) -> SceneResult:
    """ring_hash with bounded loads: keys stay on their pods while one pod is hot."""
    result = SceneResult("affinity", f"5. Affinity: ring_hash, bounded loads (load factor {LOAD_FACTOR})")
    fleet, names = cluster.web, [p.name for p in cluster.web.pods]
    options = {"load_factor": LOAD_FACTOR}
    ctx.display.scene_started(
        result.key,
        result.title,
        f"{len(KEYS)} users (X-Affinity header) hash to pods; then the pod holding the most keys turns 10x slow.",
    )
    async with cluster.httpx(WEB, algorithm="ring_hash", algorithm_options=options) as (client, balancer):
        send = httpx_send(client, URL)
        calm = await ctx.run(
            "every pod normal", send, seconds=ctx.seconds(1.5), cap=30, requests=len(KEYS), concurrency=1,
            pods=names, keys=KEYS,
        )  # fmt: skip
        home = _homes(calm)
        hot = result.focus = Counter(home.values()).most_common(1)[0][0]  # the pod with the most keys
        ctx.done(calm, names, f"{len(home)} keys; {hot} holds {sum(1 for p in home.values() if p == hot)}")
        await fleet.configure(hot, slow_factor=10)
        try:
            hot_phase = await ctx.run(f"{hot} hot (10x slow)", send, seconds=2.0, cap=30, requests=6 * len(KEYS),
                                      concurrency=CONCURRENCY, pods=names, keys=KEYS)  # fmt: skip
        finally:
            await fleet.configure(hot, slow_factor=1)
        overflowed = balancer.status().overflowed
    now = _homes(hot_phase)
    others = [k for k, p in home.items() if p != hot]
    stayed = sum(1 for k in others if now.get(k) == home[k]) / (len(others) or 1)
    hot_keys = [k for k, p in home.items() if p == hot]
    moved = sum(1 for r in hot_phase.records if r.key in hot_keys and r.pod != hot)
    hot_requests = sum(1 for r in hot_phase.records if r.key in hot_keys)
    ctx.done(
        hot_phase, names, f"keys on their pod: {stayed:.0%}; {hot}'s requests moved: {moved}/{hot_requests}"
    )
    result.phases = [calm, hot_phase]
    result.figures = {"stayed": stayed, "hot_moved": moved / (hot_requests or 1), "overflowed": overflowed,
                      "failed": calm.failed + hot_phase.failed}  # fmt: skip
    result.checks = {
        "affinity: other pods' keys stay put (>= 80%)": stayed >= 0.8,
        "affinity: the hot pod sheds requests to the next pods": moved > 0,
    }
    result.headline = (
        f"{stayed:.0%} of keys stayed on their pod; {moved / (hot_requests or 1):.0%} of the hot pod's moved"
    )
    return result


def _homes(tally: Tally) -> dict[str, str]:
    """Each key's most frequent pod."""
    seen: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for record in tally.records:
        if record.key is not None and record.pod:
            seen[record.key][record.pod] += 1
    return {key: pods.most_common(1)[0][0] for key, pods in seen.items()}
