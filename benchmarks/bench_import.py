"""Import cost of the httpx integration, as a ratio to ``import httpx`` alone, in the same run.

Each import runs in a fresh interpreter (``python -X importtime -c "import ..."``), alternating the
two statements so machine noise hits both alike; the figure per statement is the median over the
runs of the cumulative microseconds ``-X importtime`` reports for the top-level module (interpreter
start-up excluded). Target: the integration imports in at most 1.3x the time of httpx alone, so
the Kubernetes client and aiohttp must not load before a balancer starts.

    python benchmarks/bench_import.py [--runs 21]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

MODULES = ("httpx", "kube_balance.integrations.httpx")
HEAVY = ("aiohttp", "kubernetes_asyncio")
TARGET = 1.3


def import_us(module: str) -> tuple[int, list[str]]:
    """Microseconds ``import module`` took (cumulative, as ``-X importtime`` reports it for the
    module's own top-level line), and which heavy modules it loaded."""
    code = f"import {module}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for line in proc.stderr.splitlines():
        match = re.fullmatch(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)", line)
        if match and match.group(2) == module:
            heavy = [m for m in proc.stdout.strip().split(",") if m]
            return int(match.group(1)), heavy
    raise RuntimeError(f"no import time line for {module}:\n{proc.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    samples: dict[str, list[int]] = {name: [] for name in MODULES}
    heavy: dict[str, list[str]] = {}
    for _ in range(args.runs):
        for name in MODULES:
            us, loaded = import_us(name)
            samples[name].append(us)
            heavy[name] = loaded
    base = statistics.median(samples["httpx"])
    print(f"{'statement':45} {'median ms':>10} {'ratio':>6}  heavy modules loaded")
    for name, values in samples.items():
        median = statistics.median(values)
        print(
            f"{'import ' + name:45} {median / 1000:10.1f} {median / base:6.2f}  {', '.join(heavy[name]) or '-'}"
        )
    ratio = statistics.median(samples["kube_balance.integrations.httpx"]) / base
    print(f"ratio {ratio:.2f} (target <= {TARGET}): {'met' if ratio <= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
