"""``kube-balance demo`` (what ``make demo`` runs): the library on an embedded cluster, in under a minute.

A fake Kubernetes API server (:class:`~kube_balance.testing.FakeApiServer`) and real pods on
127.0.0.1 (:class:`~kube_balance.testing.PodFleet`, in a child process) stand in for a cluster;
the clients are the library's own (``BalancedTransport``, ``BalancedConnector``) discovering the
pods with the real ``kubernetes_asyncio`` client through a kubeconfig. No cluster, no network.

Scenes (``--scenes``, in this order): ``why`` (HTTP/2 through an L4 Service vs balanced per
request), ``slow`` (a slow pod: round_robin, least_request, peak_ewma), ``rolling`` (a rolling
update of every pod under traffic), ``failing`` (a pod answering 503, ejected), ``affinity``
(ring_hash with bounded loads while a pod is hot), ``aiohttp`` (the same through aiohttp),
``cluster`` (one ``BalancedTransport.cluster()`` for two Services called by name), ``subset``
(deterministic subsetting: 10 clients, 3 pods each), ``hedge`` (a flapping pod, without and with
``HedgePolicy()``). Modules: ``_cluster`` (the embedded cluster), ``_traffic`` (load and tally),
``_scene*`` (the scenes), ``_display`` (terminal), ``_plot`` (the PNG).

Needs ``pip install 'kube-balance[demo]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

from ._cluster import Cluster, running
from ._display import PlainDisplay, display
from ._plot import preload
from ._scene import Context, SceneResult
from ._scenes import aiohttp_scene, slow_pod, why
from ._scenes_beyond import cluster_client, hedging, subsetting
from ._scenes_change import affinity, failing_pod, rolling_update

__all__ = ["SCENES", "main", "run_scenes"]

Scene = Callable[[Cluster, Context], Awaitable[SceneResult]]

SCENES: dict[str, Scene] = {
    "why": why,
    "slow": slow_pod,
    "rolling": rolling_update,
    "failing": failing_pod,
    "affinity": affinity,
    "aiohttp": aiohttp_scene,
    "cluster": cluster_client,
    "subset": subsetting,
    "hedge": hedging,
}
PODS = 10
ORDERS_PODS = 4  # the cluster scene's second Service
DEFAULT_OUT = "kube-balance-demo.png"


async def run_scenes(
    names: Sequence[str], out: PlainDisplay, *, quick: bool, pods: int = PODS
) -> list[SceneResult]:
    """Start the embedded cluster and run the scenes ``names`` in order; returns their results."""
    with _library_log(out):
        return await _run(names, out, Context(out, quick=quick), pods)


async def _run(names: Sequence[str], out: PlainDisplay, ctx: Context, pods: int) -> list[SceneResult]:
    results: list[SceneResult] = []
    started = time.monotonic()
    # matplotlib imports while the parent waits for the pods' process and the API server.
    preloading = asyncio.create_task(asyncio.to_thread(preload))
    orders = ORDERS_PODS if "cluster" in names else 0
    async with running(pods, orders=orders) as cluster:
        out.print(f"({time.monotonic() - started:.1f} s to start)")
        more = f" and {orders} HTTP/1.1 pods of Service orders" if orders else ""
        out.print(
            f"Cluster: fake API server at {cluster.api.url}; {pods} HTTP/1.1 pods, {pods} h2c pods{more}"
        )
        out.print("on 127.0.0.1 in child processes; clients discover them through EndpointSlices.")
        for name in names:
            result = await SCENES[name](cluster, ctx)
            result.seconds = time.monotonic() - result.started
            out.scene_done(result)
            results.append(result)
    await preloading
    return results


def main(args: argparse.Namespace) -> int:
    """``kube-balance demo``: 0 when every scene's checks hold, 1 otherwise, 2 for a missing extra."""
    missing = _missing_modules()
    if missing:
        print(
            f"kube-balance demo needs {', '.join(missing)}: pip install 'kube-balance[demo]'", file=sys.stderr
        )
        return 2
    names = _scene_names(args.scenes)
    try:
        plot = plot_path(args.out)
    except ValueError as exc:  # before the scenes run, not after a minute of them
        print(f"kube-balance demo: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    out = display(live=sys.stdout.isatty() and not args.plain)
    try:
        results = asyncio.run(run_scenes(names, out, quick=args.quick))
    finally:
        out.close()
    out.summary(results)
    out.print(_plot(results, plot))
    out.print(
        f"Done in {time.monotonic() - started:.1f} s. "
        "The algorithms on a simulated clock, without pods: kube-balance simulate"
    )
    return 0 if all(r.passed for r in results) else 1


@contextlib.contextmanager
def _library_log(out: PlainDisplay) -> Iterator[None]:
    """The library's log lines (an ejection, say) go to the display while the demo runs."""
    handler = _DisplayHandler(out)
    logger = logging.getLogger("kube_balance")
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


class _DisplayHandler(logging.Handler):
    def __init__(self, out: PlainDisplay) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.print(f"  log: {record.getMessage()}")


def _scene_names(spec: str | None) -> list[str]:
    if not spec:
        return list(SCENES)
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    return [name for name in SCENES if name in wanted]


def check_scenes(spec: str) -> str:
    """argparse type of ``--scenes``: comma-separated scene names."""
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SCENES]
    if not wanted or unknown:
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected scene names separated by commas, from {', '.join(SCENES)}"
        )
    return spec


PLOT_FORMATS = (".png", ".svg", ".pdf")


def plot_path(text: str) -> Path:
    """Where ``--out`` writes the plot: ``text``, a directory's ``kube-balance-demo.png``, or
    ``text`` + ``.png`` without a suffix; checked writable now. ``ValueError`` saying why not."""
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / DEFAULT_OUT
    elif not path.suffix:
        path = path.with_name(path.name + ".png")
    if path.suffix.lower() not in PLOT_FORMATS:
        raise ValueError(
            f"--out {text}: the plot is written as {', '.join(PLOT_FORMATS)}; give a file name "
            "ending in one of them"
        )
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab"):
            pass
    except OSError as exc:
        raise ValueError(f"--out {text}: cannot write the plot there ({exc.strerror or exc})") from exc
    if not existed:
        path.unlink()
    return path


def _plot(results: Sequence[SceneResult], path: Path) -> str:
    from ._plot import write_png

    try:
        written = write_png(results, path)
    except ImportError as exc:
        return f"No plot: {exc}"
    except OSError as exc:  # the file became unwritable while the scenes ran
        return f"No plot: cannot write {path} ({exc.strerror or exc})"
    return f"Plot: {written}"


def _missing_modules() -> list[str]:
    import importlib.util

    return [m for m in ("aiohttp", "httpx", "h2", "hypercorn") if importlib.util.find_spec(m) is None]
