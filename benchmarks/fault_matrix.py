"""The fault matrix as a table: every fault of ``tests/faults/`` under load, through both clients.

    python benchmarks/fault_matrix.py [--quick] [--only SUBSTRING] [--client httpx|aiohttp]

Runs the scenarios of ``tests/faults/harness.py`` (the same code the test suite runs: a fake
apiserver, real pods on 127.0.0.1, a real watch, ``BalancedTransport`` / ``BalancedConnector``)
and prints one row per fault and client:

- requests: requests sent by the callers (the cancelled ones included);
- failures: requests that failed at the caller (an error or a non-200 answer);
- bad share: the share of all attempts, retries included, that went to the bad pod (the target
  of outlier ejection, issue 10 item 1, is <= 1%);
- recovery: seconds from the fault until discovery caught up (API faults: until a pod added
  during the fault is eligible; pod and zone faults: until the removed endpoints left the set);
- in flight after: requests still counted in flight once the load is over (must be 0).

A row whose invariants did not hold (a lost request, a leaked in-flight count, the good endpoint
set dropped while the API was down) is marked FAIL with the assertion. ``--quick`` runs the
rolling update with 2,000 requests instead of 10,000 and skips nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))
import harness

Scenario = Callable[[str], Awaitable[harness.Row]]


def scenarios(quick: bool) -> list[tuple[str, Scenario]]:
    """Every row of the matrix, in the order of the issue."""
    rows: list[tuple[str, Scenario]] = []
    for name in harness.API_FAULTS:
        rows.append((name, lambda kind, n=name: harness.run_api_fault(kind, n)))
    rows.append(("apiserver down at start", harness.api_down_at_start))
    rows.append(("pod killed mid-load", harness.pod_killed_mid_load))
    for name in harness.POD_FAULTS:
        rows.append((name, lambda kind, n=name: harness.run_pod_fault(kind, n)))
    requests = 2_000 if quick else 10_000
    rows.append(
        (
            f"rolling update of 10 pods during {requests} requests",
            lambda kind: harness.rolling_update(kind, requests=requests),
        )
    )
    rows.append(("zone loses all its endpoints", harness.zone_loss))
    rows.append(("1000 cancelled requests", harness.cancelled_requests))
    return rows


def fmt(row: harness.Row, status: str) -> str:
    share = "-" if row.bad_share is None else f"{100 * row.bad_share:.1f}%"
    recovery = "-" if row.recovery is None else f"{row.recovery:.2f} s"
    return (
        f"| {row.fault} | {row.client} | {row.requests} | {row.failures} | {share} | {recovery} "
        f"| {row.inflight_after} | {status}{'; ' + row.detail if row.detail and status == 'ok' else ''} |"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="run the faults whose name contains this")
    parser.add_argument("--client", choices=harness.CLIENTS, action="append")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the faults make discovery log a lot; the table says it
    clients = args.client or list(harness.CLIENTS)
    print(
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; shared, noisy machine\n"
    )
    print(
        "| fault | client | requests | failures at the caller | share to the bad pod | recovery | in flight after | |"
    )
    print("|---|---|---|---|---|---|---|---|")
    failed = 0
    started = time.perf_counter()
    for name, run in scenarios(args.quick):
        if args.only not in name:
            continue
        for kind in clients:
            try:
                row = await run(kind)
                status = "ok"
            except AssertionError as exc:
                failed += 1
                row, status = harness.Row(name, kind, 0, -1), f"FAIL: {str(exc)[:120]}"
            print(fmt(row, status), flush=True)
    print(f"\n{failed} failed; {time.perf_counter() - started:.0f} s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
