"""The ``kube-balance`` command (also ``python -m kube_balance``).

Subcommands:

- ``demo``: what ``make demo`` runs: the library on an embedded cluster (a fake API server, real
  pods on 127.0.0.1, real traffic), nine scenes, a summary table and a PNG (``kube_balance.demo``).
- ``simulate``: every algorithm on 10 simulated pods, one 10x slower; per-pod share, p50, p99.
- ``proxy``: an HTTP reverse proxy in front of one Service, balanced per request (``_proxy.py``).
- ``watch``: the Service's endpoints as the library sees them, live (``_watch.py``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import _common
from ._common import add_proxy_arguments, add_watch_arguments

PROXY_DESCRIPTION = """\
An HTTP reverse proxy in front of one Kubernetes Service, balancing every request across its pods
(the aiohttp BalancedConnector; endpoints from the Service's EndpointSlices). Request and response
bodies stream both ways; hop-by-hop headers are removed, X-Forwarded-For/-Proto/-Host added, and
Host is the Service's name. Errors before a response: 400 (an affinity algorithm without a key),
503 (no endpoint and no fallback), 502 (no pod reachable after retries), 504 (no response in
--timeout). SIGTERM: stop accepting, finish in-flight requests for up to --grace seconds, exit 0.
SIGUSR1: print requests per affinity key and endpoint, and the balancer status."""

WATCH_DESCRIPTION = """\
Show a Service's endpoints as kube-balance sees them, live: address, pod, node, zone, conditions
(ready, serving, terminating), whether each gets traffic and why not, its EndpointSlice and the
slice's resourceVersion, and when its row last changed. On a terminal the table is redrawn on
every watch event; otherwise one line (plain) or JSON object (jsonl) per endpoint added, changed
or removed, an "empty" one saying why when there is none, and an "error" one for each discovery
error (a 403, an unreachable API server: the watch retries). Ctrl-C exits 0."""


def _run_proxy(args: argparse.Namespace) -> int:
    from ._proxy import run

    return run(args)


def _run_watch(args: argparse.Namespace) -> int:
    from ._watch import run

    return run(args)


DEMO_DESCRIPTION = """\
The library on an embedded cluster, in under a minute: a fake Kubernetes API server and 24 real
pods on 127.0.0.1 (10 HTTP/1.1, 10 h2c, 4 of a second Service, in child processes), discovered
through EndpointSlices by the real Kubernetes client, and real traffic through BalancedTransport
and BalancedConnector. Scenes: why (HTTP/2 through an L4 Service vs balanced per request), slow (a
10x slower pod: round_robin, least_request, peak_ewma), rolling (a rolling update of every pod: 0
failed requests), failing (a pod answering 503, ejected), affinity (ring_hash with bounded loads
while a pod is hot), aiohttp (the same through aiohttp), cluster (one BalancedTransport.cluster()
client for two Services called by name), subset (10 clients, each over a deterministic subset of 3
pods), hedge (a flapping pod, without and with HedgePolicy()). Live on a terminal, plain lines
otherwise; ends with a summary table and a PNG (shares over time, latency CDFs). Exit 0 when every
scene's checks hold, 1 if one does not, 2 without the demo extra (pip install 'kube-balance[demo]')."""


def _run_demo(args: argparse.Namespace) -> int:
    from ..demo import main as demo

    return demo(args)


def _run_simulation(args: argparse.Namespace) -> int:
    from ._simulate import main as simulate

    started = time.perf_counter()
    print(simulate(requests=args.requests, algorithms=args.algorithm or None))
    print(f"\n(simulated in {time.perf_counter() - started:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(  # the docstring's first line, without its reST markup
        prog="kube-balance", description=__doc__.splitlines()[0].replace("``", "")
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_demo_parser(sub)
    cmd = sub.add_parser(
        "simulate",
        help="simulate every algorithm on 10 pods, one 10x slower (a simulated clock)",
        description="Every algorithm on 10 simulated pods, one 10x slower, on a simulated clock: "
        "per-pod share, p50 and p99 latency, in a second. `kube-balance demo` runs the real thing.",
    )
    cmd.add_argument(
        "--requests",
        type=_request_count,
        default=20_000,
        help=f"requests per algorithm, 1 to {MAX_SIMULATED:,} (default 20,000: about a second in all)",
    )
    cmd.add_argument(
        "--algorithm", action="append", choices=_common.available(), help="only this algorithm (repeatable)"
    )
    cmd.set_defaults(func=_run_simulation)
    proxy = sub.add_parser(
        "proxy",
        help="HTTP reverse proxy balancing one Service per request",
        description=PROXY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_proxy_arguments(proxy)
    proxy.set_defaults(func=_run_proxy)
    watch = sub.add_parser(
        "watch",
        help="live view of a Service's endpoints as kube-balance sees them",
        description=WATCH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_watch_arguments(watch)
    watch.set_defaults(func=_run_watch)
    return parser


def add_demo_parser(sub: Any) -> None:
    from ..demo import DEFAULT_OUT, SCENES, check_scenes

    demo = sub.add_parser(
        "demo",
        help="the library on an embedded cluster: real pods, real traffic, nine scenes (make demo)",
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--quick", action="store_true", help="shorter scenes (about half; for tests)")
    demo.add_argument(
        "--scenes",
        type=check_scenes,
        metavar="NAMES",
        help=f"only these scenes, comma-separated, run in the usual order ({', '.join(SCENES)})",
    )
    demo.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="FILE",
        help=f"where to write the plot: .png, .svg or .pdf, or a directory (default: ./{DEFAULT_OUT})",
    )
    demo.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    demo.set_defaults(func=_run_demo)


MAX_SIMULATED = 1_000_000
"""Requests per algorithm ``simulate`` takes at most: about 30 s for them all on one core."""


def _request_count(text: str) -> int:
    try:
        count = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= MAX_SIMULATED:
        raise argparse.ArgumentTypeError(
            f"{text} is out of range: from 1 to {MAX_SIMULATED:,} requests per algorithm "
            "(the shares and latencies settle within the default 20,000)"
        )
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kube-balance`` command."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the subcommand's usage, not the top level's (argparse's own parse_args)
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, as the shell's own tools
        # do. Python would report the same error again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
