"""Run every benchmark script in this folder, one after the other (``make bench``).

    python benchmarks/run_all.py [--quick]

Each script prints its own tables (ratios against a baseline measured in the same run); copy the
figures into RESULTS.md with the machine and date they print. The scripts with plots
(``bench_tail_latency``, ``bench_http2_spread``, ``bench_throughput``; matplotlib, in the ``dev``
group) write their PNGs under ``results/`` (``*-quick.png`` for ``--quick``, not committed).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    extra = sys.argv[1:]
    failures = 0
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n==> {script.name} {' '.join(extra)}", flush=True)
        started = time.perf_counter()
        code = subprocess.run([sys.executable, str(script), *extra], check=False).returncode
        print(f"<== {script.name}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
        failures += code != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
