"""Import cost of the httpx integration, as a ratio to ``import httpx`` alone, in the same run.

Each import runs in a fresh interpreter (``python -X importtime``), the two modules alternating so
machine noise hits both alike; a figure is the median over the runs of the cumulative microseconds
``-X importtime`` reports for the module's own top-level line (interpreter start-up excluded).
Measured twice: cold (nothing imported first), and in an asyncio program (``import asyncio``
first: the only way to use an async transport, and what kube-balance itself needs).
Target: the integration imports in at most 1.3x the time of httpx alone; the Kubernetes client
and aiohttp must not load before a balancer starts.

    python benchmarks/bench_import.py [--runs 21]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

MODULES = ("httpx", "kube_balance.integrations.httpx")
SETTINGS = {"cold": "", "asyncio first": "import asyncio\n"}
HEAVY = ("aiohttp", "kubernetes_asyncio")
TARGET = 1.3


def import_us(module: str, before: str) -> tuple[int, list[str]]:
    """Microseconds ``import module`` took after ``before`` ran, and which heavy modules it loaded."""
    code = f"{before}import {module}\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
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
            return int(match.group(1)), [m for m in proc.stdout.strip().split(",") if m]
    raise RuntimeError(f"no import time line for {module}:\n{proc.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {args.runs} runs each, medians")
    print(f"{'setting':14} {'statement':40} {'ms':>7} {'ratio':>6}  heavy modules loaded")
    for setting, before in SETTINGS.items():
        samples: dict[str, list[int]] = {m: [] for m in MODULES}
        heavy: dict[str, list[str]] = {}
        for _ in range(args.runs):
            for module in MODULES:
                us, heavy[module] = import_us(module, before)
                samples[module].append(us)
        base = statistics.median(samples["httpx"])
        for module, values in samples.items():
            median = statistics.median(values)
            print(
                f"{setting:14} {'import ' + module:40} {median / 1000:7.1f} {median / base:6.2f}  "
                f"{', '.join(heavy[module]) or '-'}"
            )
        ratio = statistics.median(samples[MODULES[1]]) / base
        print(
            f"{setting:14} ratio {ratio:.2f} (target <= {TARGET}): {'met' if ratio <= TARGET else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
