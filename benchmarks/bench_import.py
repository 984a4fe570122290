"""Import cost of the httpx integration, as a ratio to ``import httpx`` alone, in the same run.

Each import runs in a fresh interpreter (bytecode caches written by a warm-up run), the two
modules alternating so machine noise hits both alike; a figure is the median over the runs of the
CPU time the ``import`` statement took (interpreter start-up excluded). ``python -X importtime -c
"import kube_balance.integrations.httpx"`` shows where the time goes. Measured twice: cold (nothing imported first), and
in an asyncio program (``import asyncio`` first: the only way to use an async transport, and what
kube-balance itself needs). Target: the integration imports in at most 1.3x the time of httpx
alone; the Kubernetes client and aiohttp must not load before a balancer starts.

    python benchmarks/bench_import.py [--runs 21] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

MODULES = ("httpx", "kube_balance.integrations.httpx")
SETTINGS = {"cold": "", "asyncio first": "import asyncio\n"}
HEAVY = ("aiohttp", "kubernetes_asyncio")
TARGET = 1.3
# Bytecode caches on, as in any installed package: with PYTHONDONTWRITEBYTECODE set, an editable
# install recompiles every module of ours on each import while httpx loads its cached .pyc files.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def import_us(module: str, before: str) -> tuple[int, list[str]]:
    """CPU microseconds ``import module`` took in a fresh interpreter after ``before`` ran, and
    which heavy modules it loaded. CPU time of the process, not wall time: on a busy machine the
    wall time of one import swings several-fold with the load, its CPU time barely moves."""
    code = (
        f"{before}import time\nt = time.process_time()\nimport {module}\nt = time.process_time() - t\n"
        f"import sys\nprint(round(t * 1e6), ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60, env=ENV
    )
    us, _, heavy = proc.stdout.strip().partition(" ")
    return int(us), [m for m in heavy.split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--quick", action="store_true", help="7 runs (as make bench --quick)")
    args = parser.parse_args()
    if args.quick:
        args.runs = 7
    for module in MODULES:  # warm-up: write the bytecode caches
        import_us(module, "")
    print(f"python {sys.version.split()[0]}, {args.runs} runs each, medians")
    print(f"{'setting':14} {'statement':40} {'CPU ms':>7} {'ratio':>6}  heavy modules loaded")
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
