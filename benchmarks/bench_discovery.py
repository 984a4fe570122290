"""Kubernetes discovery: propagation latency, initial sync, and the cost of one slice update.

    python benchmarks/bench_discovery.py [--quick]

Targets (issue 4), all on loopback against the fake apiserver with the real kubernetes_asyncio client:
- API change -> new set visible to an algorithm's get(): p99 <= 100 ms over 200 changes;
- initial sync of a Service with 5,000 endpoints in 50 slices: <= 1 s;
- applying one 100-endpoint slice update: <= 5 ms, about the same at 500 and 5,000 endpoints.
Baselines measured in the same run: a bare GET /version round trip (propagation), the raw list
request + json.loads (sync), and a full re-merge of every slice (update).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine, table
from kube_balance import DiscoveryError, EndpointSet, create
from kube_balance.discovery import KubernetesSource, merge_slices
from kube_balance.discovery.kubernetes._incremental import SliceMerger
from kube_balance.discovery.kubernetes._source import _Subscription
from kube_balance.testing import FakeApiServer, endpoint_slice, slice_endpoint


def addr(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def slices_for(total: int, per_slice: int = 100, svc: str = "web", ns: str = "shop") -> list[dict[str, Any]]:
    out = []
    for s in range(max(1, total // per_slice)):
        eps = [
            slice_endpoint(addr(s * per_slice + i), zone="z1", node_name=f"n{i % 7}", pod_name=f"p{s}-{i}")
            for i in range(per_slice)
        ]
        out.append(endpoint_slice(svc, ns, name=f"{svc}-{s:04d}", endpoints=eps))
    return out


class Waiter:
    """A sink that feeds an algorithm and resolves a future when get() returns the expected key."""

    def __init__(self) -> None:
        self.algorithm = create("round_robin", rng=random.Random(1))
        self.expect: str | None = None
        self.future: asyncio.Future[float] | None = None
        self.count = self.size = 0
        self.pushed = asyncio.Event()

    def on_endpoints(self, snapshot: EndpointSet) -> None:
        self.count, self.size = self.count + 1, len(snapshot)
        self.pushed.set()
        self.algorithm.update(snapshot.endpoints)
        ep = self.algorithm.get()
        if ep is not None:
            self.algorithm.put(ep)
        if ep is not None and ep.key == self.expect and self.future and not self.future.done():
            self.future.set_result(time.perf_counter())

    def on_error(self, error: DiscoveryError) -> None:
        print("discovery error:", error, file=sys.stderr)


async def roundtrip_ms(client: Any, n: int) -> float:
    """Median of ``n`` GET /version round trips through the same client (the transport floor)."""
    session = client.rest_client.pool_manager
    url = client.configuration.host + "/version"
    headers = {"Authorization": client.configuration.api_key["BearerToken"]}
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(url, headers=headers) as resp:
            await resp.read()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def propagation(changes: int) -> list[list[object]]:
    async with FakeApiServer(bookmark_interval=3600.0) as api:
        api.apply(endpoint_slice("web", "shop", name="web-a", endpoints=[addr(0)]))
        client = await api.new_api_client()
        waiter = Waiter()
        task = asyncio.create_task(KubernetesSource("web.shop:http", api_client=client).run(waiter))
        try:
            await asyncio.wait_for(waiter.pushed.wait(), 10)
            await asyncio.sleep(0.05)  # let the watch start
            lat = []
            for i in range(1, changes + 1):
                loop = asyncio.get_running_loop()
                waiter.future, waiter.expect = loop.create_future(), f"{addr(i)}:8080"
                t0 = time.perf_counter()
                api.apply(endpoint_slice("web", "shop", name="web-a", endpoints=[addr(i)]))
                lat.append((await asyncio.wait_for(waiter.future, 5) - t0) * 1000)
            base = await roundtrip_ms(client, changes)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return [
        ["API change -> get() p50", f"{p50:.2f} ms", f"{p50 / base:.1f}x", "-"],
        ["API change -> get() p99", f"{p99:.2f} ms", f"{p99 / base:.1f}x", "<= 100 ms"],
        ["baseline: GET /version round trip", f"{base:.2f} ms", "1.0x", "-"],
    ]


async def initial_sync(total: int, repeats: int) -> list[list[object]]:
    async with FakeApiServer(bookmark_interval=3600.0) as api:
        for s in slices_for(total):
            api.apply(s)
        client = await api.new_api_client()
        sync, raw, model = [], [], []
        try:
            from kubernetes_asyncio.client import DiscoveryV1Api

            dapi = DiscoveryV1Api(client)
            for _ in range(repeats):
                t0 = time.perf_counter()
                resp = await dapi.list_namespaced_endpoint_slice(
                    "shop", label_selector="kubernetes.io/service-name=web", _preload_content=False
                )
                json.loads(await resp.read())
                raw.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await dapi.list_namespaced_endpoint_slice(
                    "shop", label_selector="kubernetes.io/service-name=web"
                )
                model.append(time.perf_counter() - t0)
                waiter = Waiter()
                t0 = time.perf_counter()
                task = asyncio.create_task(KubernetesSource("web.shop:http", api_client=client).run(waiter))
                await asyncio.wait_for(waiter.pushed.wait(), 10)
                sync.append(time.perf_counter() - t0)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                assert waiter.size == total, waiter.size
        finally:
            await client.close()
    s, r, m = min(sync) * 1000, min(raw) * 1000, min(model) * 1000
    return [
        [
            f"initial sync, {total} endpoints / {total // 100} slices",
            f"{s:.1f} ms",
            f"{s / r:.1f}x",
            "<= 1000 ms",
        ],
        ["baseline: raw list + json.loads", f"{r:.1f} ms", "1.0x", "-"],
        ["(kubernetes_asyncio model list, not used)", f"{m:.1f} ms", f"{m / r:.1f}x", "-"],
    ]


class _Watch:
    def __init__(self, slices: list[dict[str, Any]]) -> None:
        self.slices = {s["metadata"]["name"]: s for s in slices}
        self.resource_version = "1"


class _NullSink:
    def on_endpoints(self, snapshot: EndpointSet) -> None:
        pass

    def on_error(self, error: DiscoveryError) -> None:
        pass


def update_cost(total: int, number: int, every: bool) -> list[object]:
    """ms to apply one 100-endpoint slice update through the production path, vs a full re-merge.

    ``every``: all 100 entries change (new pods); else one entry's condition flips (the common case).
    """
    slices = slices_for(total)
    for i, s in enumerate(slices):
        s["metadata"]["resourceVersion"] = str(i)
    watch = _Watch(slices)
    sub = _Subscription(SliceMerger("http", service="web"), _NullSink())
    sub.on_change(watch, None)  # type: ignore[arg-type]
    target = slices[len(slices) // 2]
    name = target["metadata"]["name"]
    versions = []
    for v in range(2):  # two contents that alternate, each a new resourceVersion
        variant = json.loads(json.dumps(target))
        variant["endpoints"][0]["conditions"]["ready"] = bool(v)
        if every:
            for i, entry in enumerate(variant["endpoints"]):
                entry["addresses"] = [addr(10**6 + v * 1000 + i)]
        versions.append(variant)
    best = float("inf")
    rv = 10**6
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(number):
            obj = versions[i & 1]
            rv += 1
            obj["metadata"]["resourceVersion"] = str(rv)
            watch.slices[name] = obj
            sub.on_change(watch, {name})  # type: ignore[arg-type]
        best = min(best, (time.perf_counter() - t0) / number)
    full = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        merge_slices(list(watch.slices.values()), "http", service="web")
        full = min(full, time.perf_counter() - t0)
    return [
        f"update a 100-endpoint slice ({'all entries new' if every else '1 entry changed'}), {total} total",
        f"{best * 1000:.3f} ms",
        f"{best / full:.3f}x",
        "<= 5 ms",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer changes and repeats")
    args = parser.parse_args()
    changes, repeats, number = (20, 1, 20) if args.quick else (200, 5, 200)
    rows = asyncio.run(propagation(changes))
    rows += asyncio.run(initial_sync(5000, repeats))
    rows += [update_cost(n, number, every) for every in (True, False) for n in (100, 500, 5000, 20000)]
    rows.append(["baseline for updates: full re-merge of every slice", "-", "1.0x", "-"])
    print(machine())
    print(table(["measure", "value", "ratio to baseline", "target"], rows))


if __name__ == "__main__":
    main()
