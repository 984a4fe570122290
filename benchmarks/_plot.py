"""Plots for the benchmarks: matplotlib (the ``dev`` dependency group), drawn off-screen to small PNGs.

Each script saves its figure under ``benchmarks/results/`` (committed, linked from RESULTS.md); a
``--quick`` run saves ``<name>-quick.png`` instead (ignored by git), so a smoke run never replaces
the figures of a full one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MAX_BYTES = 150_000  # keep the committed PNGs small


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the off-screen Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("the plots need matplotlib: pip install --group dev (or matplotlib>=3.8)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def save(fig: Any, name: str, quick: bool) -> Path:
    """Write ``fig`` to ``results/<name>.png`` (``<name>-quick.png`` for a quick run); returns the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if quick else ''}.png"
    # No "Software" entry: the PNG does not change with the matplotlib version alone.
    fig.savefig(path, dpi=90, bbox_inches="tight", metadata={"Software": None})
    pyplot().close(fig)
    size = path.stat().st_size
    note = "" if size <= MAX_BYTES else f" (over {MAX_BYTES // 1000} KB: shrink the figure)"
    print(f"plot: {path.relative_to(RESULTS.parent.parent)} ({size / 1000:.0f} KB){note}")
    return path
