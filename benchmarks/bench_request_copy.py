"""Microseconds to build the request sent to a pod: httpx internals vs the public API, same run.

    python benchmarks/bench_request_copy.py [--quick]

``BalancedTransport`` sends each attempt as a copy of the caller's request with the pod's IPv4
address and port in the URL. The public way, ``httpx.Request(..., url.copy_with(host, port))``,
re-parses and re-validates the whole URL; the fast way (``_fast_copy``) copies the request's
attributes and replaces two fields of the URL's parsed form. It is kept only while it is worth
it: this prints both (best of 5), their ratio, and, for scale, the client CPU of one whole plain
httpx request to an in-memory transport (``httpx.MockTransport``, no sockets) in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import timeit
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _harness import machine
from kube_balance.integrations.httpx import FAST_COPY, _fast_copy, _public_copy


def per_call_us(func: object, number: int) -> float:
    """Best of 5 runs of ``number`` calls, in microseconds per call."""
    return min(timeit.repeat(func, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


async def plain_request_us(number: int) -> float:
    """Client CPU per request of a plain httpx client to an in-memory transport."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"ok"))
    async with httpx.AsyncClient(transport=transport) as client:
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for _ in range(number):
                await client.get("http://web.shop.svc.cluster.local/items?page=2")
            best = min(best, time.process_time() - start)
    return best / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = parser.parse_args()
    number = 2_000 if args.quick else 20_000
    request = httpx.Request(
        "GET", "http://web.shop.svc.cluster.local/items?page=2", headers={"Accept": "*/*"}
    )
    extensions = dict(request.extensions)
    fast = per_call_us(lambda: _fast_copy(request, "10.0.3.7", 8080, extensions), number)
    public = per_call_us(lambda: _public_copy(request, "10.0.3.7", 8080, extensions), number)
    whole = asyncio.run(plain_request_us(number // 10))
    print(machine())
    print(f"httpx {httpx.__version__}; fast path in use: {FAST_COPY}")
    print("| request copy | us per request | share of a plain httpx request |")
    print("|---|---|---|")
    print(f"| fast (internals) | {fast:.1f} | {fast / whole:.1%} |")
    print(f"| public API | {public:.1f} | {public / whole:.1%} |")
    print(f"| plain httpx request (MockTransport), client CPU | {whole:.1f} | 100% |")
    print(f"public / fast: {public / fast:.1f}x; saving {public - fast:.1f} us per request")


if __name__ == "__main__":
    main()
