"""The demo's PNG: each scene's per-pod shares over time, and latency CDFs (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._scene import SceneResult
from ._traffic import Tally

BUCKET = 0.25  # seconds per point of the share-over-time curves


def preload() -> None:
    """Import matplotlib (seconds on a busy machine): run in a thread while the cluster starts."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
    except ImportError:
        pass


def write_png(results: Sequence[SceneResult], path: Path) -> Path:
    """Draw every scene and write ``path``; ImportError (saying which extra) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("the demo's plot needs matplotlib: pip install 'kube-balance[demo]'") from exc
    panels = len(results) + 1
    columns = 2
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(14, 3.2 * rows + 0.4), squeeze=False)
    flat = list(axes.flat)
    for ax, result in zip(flat, results, strict=False):
        if result.matrix is not None:
            _grid(ax, result)
        else:
            _shares_over_time(ax, result)
    _cdfs(flat[len(results)], results)
    for ax in flat[panels:]:
        ax.set_visible(False)
    figure.suptitle("kube-balance demo: real requests to real pods on 127.0.0.1", fontsize=13)
    height = 3.2 * rows
    figure.subplots_adjust(
        left=0.05, right=0.9, bottom=0.6 / height, top=1 - 1.05 / height, hspace=0.6, wspace=0.3
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _shares_over_time(ax: Any, result: SceneResult) -> None:
    """Stacked per-pod shares of the answered requests, phase after phase, BUCKET s per point."""
    pods = sorted(
        {r.pod for t in result.phases for r in t.records if r.pod}, key=lambda p: (p != result.focus, p)
    )
    times: list[float] = []
    stacks: dict[str, list[float]] = {p: [] for p in pods}
    offset = 0.0
    for tally in result.phases:
        length = max((r.at for r in tally.records), default=0.0)
        for start in _frange(0.0, length, BUCKET):
            window = [r.pod for r in tally.records if start <= r.at < start + BUCKET and r.pod]
            if not window:
                continue
            times.append(offset + start)
            for pod in pods:
                stacks[pod].append(window.count(pod) / len(window))
        if tally is not result.phases[-1]:
            ax.axvline(offset + length, color="black", linewidth=0.8, linestyle="--")
        ax.text(offset + 0.02, 1.02, tally.label, fontsize=7, transform=ax.get_xaxis_transform())
        offset += length
    groups = _groups(pods) if len(pods) > MAX_LEGEND else None
    if times:
        if groups is None:
            # The scene's pod in red at the bottom, the others in muted shades above it.
            muted = [plt_colors(i) for i in range(len(pods))]
            colors = ["#d62728" if p == result.focus else muted[i] for i, p in enumerate(pods)]
        else:  # too many pods to name: one family of shades per group of pods (old and new, a Service)
            colors = [_shade(groups, p) for p in pods]
        ax.stackplot(times, *(stacks[p] for p in pods), labels=pods, colors=colors, step="post",
                     edgecolor="white", linewidth=0.3)  # fmt: skip
    ax.set_title(result.title, fontsize=9, loc="left", pad=14)
    ax.set_ylim(0, 1)
    ax.set_xlabel("seconds")
    ax.set_ylabel("share of requests")
    if groups is None:
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    elif times:
        from matplotlib.patches import Patch

        handles = [
            Patch(
                color=_FAMILIES[i % len(_FAMILIES)][1],
                label=name if members == [name] else f"{name}-* ({len(members)} pods)",
            )
            for i, (name, members) in enumerate(groups.items())
        ]
        ax.legend(handles=handles, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))


MAX_LEGEND = 12
"""Pods named one by one in a panel's legend; past it, one entry per group of pods."""

_FAMILIES = [
    ("#c6dbef", "#6baed6", "#2171b5"),  # blues
    ("#fdd0a2", "#fd8d3c", "#d94801"),  # oranges
    ("#c7e9c0", "#74c476", "#238b45"),  # greens
    ("#d9d9d9", "#969696", "#525252"),  # greys
]


def _groups(pods: Sequence[str]) -> dict[str, list[str]]:
    """Pods by name without their last ``-`` part (``web-v1-3`` -> ``web-v1``), in sorted order; a
    label that is more than a pod name (``web-v2-9 (direct)``) is a group of its own."""
    groups: dict[str, list[str]] = {}
    for pod in sorted(pods):
        groups.setdefault(pod if " " in pod else pod.rsplit("-", 1)[0], []).append(pod)
    return groups


def _shade(groups: dict[str, list[str]], pod: str) -> str:
    """The pod's colour: its group's family, one of three shades in turn."""
    for i, members in enumerate(groups.values()):
        if pod in members:
            family = _FAMILIES[i % len(_FAMILIES)]
            return family[members.index(pod) % len(family)]
    return "#bdbdbd"


def _grid(ax: Any, result: SceneResult) -> None:
    """Requests per client (rows) and pod (columns), the counts written in the cells."""
    assert result.matrix is not None
    rows, columns, counts = result.matrix
    top = max((v for row in counts for v in row), default=0)
    ax.imshow(
        counts, cmap="Blues", aspect="auto", vmin=0, vmax=max(1, top) * 2
    )  # light: the counts stay legible
    for i, row in enumerate(counts):
        for j, value in enumerate(row):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(columns)), [c.rsplit("-", 1)[-1] for c in columns], fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=6)
    ax.set_xlabel("pod")
    ax.set_title(f"{result.title}: requests per client and pod", fontsize=9, loc="left", pad=14)


def _cdfs(ax: Any, results: Sequence[SceneResult]) -> None:
    """Latency CDFs of every phase of the slow-pod, aiohttp and hedging scenes (the why scene's otherwise)."""
    chosen: list[Tally] = [t for r in results if r.key in ("slow", "aiohttp", "hedge") for t in r.phases]
    if not chosen:
        chosen = [t for r in results for t in r.phases]
    for tally in chosen:
        values = tally.latencies()
        if values:
            ax.plot(
                [v * 1e3 for v in values],
                [(i + 1) / len(values) for i in range(len(values))],
                label=tally.label,
            )
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(
        [t for t in (5, 10, 20, 50, 100, 200, 500, 1000, 2000) if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    )
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Latency CDFs", fontsize=9, loc="left")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def plt_colors(index: int) -> str:
    """Blues and greys for the pods that are not the scene's focus."""
    palette = ["#9ecae1", "#6baed6", "#c6dbef", "#bdbdbd", "#4292c6", "#d9d9d9", "#2171b5", "#969696",
               "#deebf7", "#737373"]  # fmt: skip
    return palette[index % len(palette)]


def _frange(start: float, stop: float, step: float) -> list[float]:
    return [start + i * step for i in range(int((stop - start) / step) + 1)]
