"""The ``kube-balance`` command (also ``python -m kube_balance``).

Subcommands:

- ``demo``: what ``make demo`` runs. For now the algorithm simulation below; the full demo on an
  embedded fake cluster with local pods replaces it when the operator tools land.
- ``simulate``: every algorithm on 10 simulated pods, one 10x slower; per-pod share, p50, p99.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from ..algorithms import available


def _run_simulation(args: argparse.Namespace) -> int:
    from ._simulate import main as simulate

    started = time.perf_counter()
    print(simulate(requests=args.requests, algorithms=args.algorithm or None))
    print(f"\n(simulated in {time.perf_counter() - started:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="kube-balance", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("demo", "run the demo (currently: the algorithm simulation)"),
        ("simulate", "simulate every algorithm on 10 pods, one 10x slower"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument(
            "--requests", type=int, default=20_000, help="requests per algorithm (default 20000)"
        )
        cmd.add_argument(
            "--algorithm", action="append", choices=available(), help="only this algorithm (repeatable)"
        )
        cmd.set_defaults(func=_run_simulation)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kube-balance`` command."""
    args = build_parser().parse_args(argv)
    if getattr(args, "requests", 1) < 1:
        print("kube-balance: --requests must be at least 1", file=sys.stderr)
        return 2
    return int(args.func(args))
