"""The aiohttp connector's own cost per request, in isolation: this tree against a git revision.

    python benchmarks/bench_aiohttp_own.py [--baseline REV] [--number 20000] [--repeat 5] [--quick]
                                           [--build pure|compiled|both]

End to end (``bench_aiohttp.py``) the connector's cost is a few percent of aiohttp's client CPU
and drowns in the load of a shared machine. Here one process times, in CPU time, ``number``
sequential GETs on one keep-alive connection to an in-process pod that answers a canned ``200 ok``
(the cheapest server: its cost is the same for every contender), best of ``repeat``, the
contenders alternating run by run in a rotating order, so a burst of load hits all of them alike:

- plain: ``aiohttp.TCPConnector`` to the pod's address (what aiohttp costs without us);
- baseline: ``BalancedConnector`` from ``REV`` (default ``HEAD``), a copy of the package extracted
  with ``git archive`` into a temporary directory and imported under another name;
- this tree: ``BalancedConnector`` as checked out;
- pick+lease+release: the dispatcher's share alone (this tree): the pick, the lease, a recorded
  200 and the release with its ``put()``, no aiohttp;
- floor: ``LoadBalancer.get()`` + ``put()`` alone (this tree), the part no connector can skip.

Printed: us per request for each, the connector's own cost (minus plain) and this tree / baseline.
Issue 9's target: own cost <= 5 us per request, on the release build: ``--build compiled`` runs
this tree from the mypyc-compiled wheel (``_compiled.py``; the baseline stays pure Python, so
"this tree / baseline" then mixes the builds), ``pure`` from the source, ``both`` (default) one
after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _compiled import run_compiled  # noqa: E402
from _harness import freeze_heap, machine, table  # noqa: E402

HOST = "web.shop.svc.cluster.local"


def baseline_package(rev: str, into: Path) -> str:
    """Extract ``src/kube_balance`` at ``rev`` into ``into`` as package ``kb_baseline``."""
    data = subprocess.run(
        ["git", "archive", rev, "src/kube_balance"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    (into / "src" / "kube_balance").rename(into / "kb_baseline")
    sys.path.insert(0, str(into))
    return "kb_baseline"


class _Pod(asyncio.Protocol):
    """A canned ``200 ok`` per request head: the cheapest server, the same for every contender."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


async def pod() -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.get_running_loop().create_server(_Pod, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def answered(conn: Any, ok: Any) -> None:
    """What the connector's response hook records for a ``200``, for either revision's connector
    (a lease since the outcome holder was merged into it, an ``_Outcome`` holding one before)."""
    lease = getattr(conn, "_kube_balance_lease", None)
    if lease is not None:
        lease.elapsed, lease.status, lease.answer = 0.001, 200, ok
        return
    outcome = getattr(conn, "_kube_balance_outcome", None)
    if outcome is not None:
        outcome.lease.headers_received(200)
        outcome.outcome = ok


async def connect_release(session: aiohttp.ClientSession, url: str, number: int, ok: Any) -> float:
    """CPU seconds for ``number`` connect() + a recorded 200 + release() on a pooled connection."""
    connector = session.connector
    assert connector is not None
    req = ClientRequest("GET", URL(url), loop=asyncio.get_running_loop())
    connect, timeout = connector.connect, aiohttp.ClientTimeout()
    start = time.process_time()
    for _ in range(number):
        conn = await connect(req, [], timeout)
        answered(conn, ok)
        conn.release()
    return time.process_time() - start


async def requests(session: aiohttp.ClientSession, url: str, number: int, ok: Any = None) -> float:
    """CPU seconds (client and pod alike) for ``number`` sequential GETs, body read (``async with``)."""
    get = session.get
    start = time.process_time()
    for _ in range(number):
        async with get(url) as response:
            await response.read()
    return time.process_time() - start


def lease_cycle(dispatcher: Any, open_: set[Any], ok: Any, number: int) -> float:
    """CPU seconds for ``number`` picks + leases + recorded 200s + releases through the
    dispatcher, as the connector does them, without aiohttp (this tree's internals)."""
    pick = dispatcher._pick_now
    start = time.process_time()
    for _ in range(number):
        lease = pick(None)
        lease.hold(open_)
        lease.elapsed, lease.status, lease.answer = 0.001, 200, ok
        lease.give_back()
    return time.process_time() - start


def get_put(balancer: Any, number: int) -> float:
    """CPU seconds for ``number`` LoadBalancer.get() + put() pairs (the floor)."""
    get, put = balancer.get, balancer.put
    start = time.process_time()
    for _ in range(number):
        put(get(None), 0.001)
    return time.process_time() - start


class _ServiceName(AbstractResolver):
    """The Service name resolved to the pod (as cluster DNS would, for one pod), no lookup."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


async def main(args: argparse.Namespace) -> None:
    server, port = await pod()
    if args.mode == "requests":
        # Like for like: plain aiohttp calling the Service by its name (what an application
        # does without kube-balance), so host-name work (cookie filtering, ...) is on both sides.
        plain = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=_ServiceName()))
        plain_url = f"http://{HOST}:{port}/"
    else:
        plain, plain_url = aiohttp.ClientSession(), f"http://127.0.0.1:{port}/"
    sessions: dict[str, tuple[aiohttp.ClientSession, str, Any]] = {"plain": (plain, plain_url, None)}
    with tempfile.TemporaryDirectory() as tmp:
        modules = {
            f"baseline ({args.baseline})": baseline_package(args.baseline, Path(tmp)),
            "this tree": "kube_balance",
        }
        for name, package in modules.items():
            aio = importlib.import_module(f"{package}.integrations.aiohttp")
            static = importlib.import_module(f"{package}.discovery.static")
            source = static.StaticSource([f"127.0.0.1:{port}"])
            connector = aio.BalancedConnector("web.shop:80", source=source)
            ok = importlib.import_module(f"{package}._outcome").Outcome.OK
            sessions[name] = (aiohttp.ClientSession(connector=connector), f"http://{HOST}/", ok)
        try:
            for session, url, _ in sessions.values():  # open the pooled connection, start balancers
                await requests(session, url, 100)
            if args.mode == "requests":
                freeze_heap()  # the setup's objects out of the collector's way
                per_round = await rounds_of_requests(sessions, args)
                return report_requests(per_round, args)
            connector: Any = sessions["this tree"][0].connector
            balancer, route = connector.balancers[0], connector._routes.routes[0]
            best: dict[str, float] = {}
            names = list(sessions)
            for i in range(args.repeat):
                for name in names[i % 3 :] + names[: i % 3]:  # a rotating order
                    session, url, ok = sessions[name]
                    cpu = await connect_release(session, url, args.number, ok)
                    best[name] = min(best.get(name, cpu), cpu)
                cpu = lease_cycle(route.dispatcher, route.open, sessions["this tree"][2], args.number)
                best["pick+lease+release"] = min(best.get("pick+lease+release", cpu), cpu)
                cpu = get_put(balancer, args.number)
                best["floor: get+put"] = min(best.get("floor: get+put", cpu), cpu)
        finally:
            for session, _, _ in sessions.values():
                await session.close()
            server.close()
    us = {name: cpu / args.number * 1e6 for name, cpu in best.items()}
    what = f"{args.number} x connect() + a recorded 200 + release() on a pooled connection"
    build = "compiled (release wheel)" if _compiled_here() else "pure Python"
    print(
        f"aiohttp connector's own cost in isolation, this tree {build}: {what}, best of {args.repeat}, "
        f"CPU time; {machine()}\n"
    )
    base, new = list(modules)
    for name, value in us.items():
        own = f"  own cost {value - us['plain']:+.2f} us" if name in modules else ""
        print(f"{name:<24} {value:7.2f} us/request{own}")
    own_new, own_base = us[new] - us["plain"], us[base] - us["plain"]
    print(
        f"\nown cost: {own_new:+.2f} us (baseline {own_base:+.2f} us); this tree / baseline: "
        f"{own_new / own_base:.2f}x; target <= 5 us"
    )


async def rounds_of_requests(
    sessions: dict[str, tuple[aiohttp.ClientSession, str, Any]], args: argparse.Namespace
) -> dict[str, list[float]]:
    """us of CPU per request, per client, per round: ``rounds`` rounds of ``number`` sequential
    GETs each, the clients in a rotating order (a burst of load hits one round of each)."""
    names = list(sessions)
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(args.rounds):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            session, url, _ = sessions[name]
            out[name].append(await requests(session, url, args.number) / args.number * 1e6)
    return out


def report_requests(per_round: dict[str, list[float]], args: argparse.Namespace) -> None:
    """Median us per request, and the connector's own cost: the median over rounds of its
    difference with plain in the same round (the interquartile range shown)."""
    build = "compiled (release wheel)" if _compiled_here() else "pure Python"
    print(
        f"aiohttp connector's own cost in whole requests, this tree {build}: {args.rounds} rounds x "
        f"{args.number} sequential GETs (async with, body read) on a keep-alive connection to an "
        f"in-process canned pod, client and pod CPU time; plain = aiohttp to the Service name; "
        f"{machine()}\n"
    )
    plain = per_round["plain"]
    rows = []
    for name, values in per_round.items():
        diffs = [v - p for v, p in zip(values, plain, strict=True)]
        q1, _, q3 = statistics.quantiles(diffs, n=4) if name != "plain" else (0.0, 0.0, 0.0)
        share = statistics.median(diffs) / statistics.median(plain)
        rows.append(
            [
                name,
                f"{statistics.median(values):.1f}",
                "-" if name == "plain" else f"{statistics.median(diffs):+.1f} ({q1:+.1f} .. {q3:+.1f})",
                "-" if name == "plain" else f"{share:+.1%}",
            ]
        )
    print(table(["client", "us/request", "own cost us (IQR)", "own cost / plain"], rows))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with (default HEAD)")
    parser.add_argument("--mode", choices=["connect", "requests"], default="connect")
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=80, help="--mode requests: rounds (default 80)")
    parser.add_argument("--quick", action="store_true", help="1,000 times, best of 3 (a smoke run)")
    parser.add_argument("--build", choices=["pure", "compiled", "both"], default="both")
    args = parser.parse_args()
    argv = [f"--{k}={v}" for k, v in vars(args).items() if k not in ("build", "quick")]
    argv += ["--quick"] if args.quick else []
    if args.build == "both":  # the pure run here, then the release build in a child process
        _run(args)
        sys.exit(run_compiled(Path(__file__), *argv, "--build", "compiled"))
    if args.build == "compiled" and not _compiled_here():
        sys.exit(run_compiled(Path(__file__), *argv, "--build", "compiled"))
    _run(args)


def _compiled_here() -> bool:
    import kube_balance.algorithms._base as probe

    return probe.__file__ is not None and probe.__file__.endswith((".so", ".pyd"))


def _run(args: argparse.Namespace) -> None:
    if args.quick:
        args.number, args.repeat, args.rounds = 1_000, 3, 6
    elif args.mode == "requests" and args.number == 20_000:
        args.number = 250
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
