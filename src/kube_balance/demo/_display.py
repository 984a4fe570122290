"""How the demo shows itself: plain lines (any stdout), or a live view on a terminal (``rich``)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ._scene import SceneResult
from ._traffic import Tally


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.0f} ms"


def phase_line(tally: Tally, note: str) -> str:
    return f"  {tally.label:<32} {tally.count:>6} requests {tally.failed:>4} failed   {note}"


def shares_line(tally: Tally, pods: Sequence[str]) -> str:
    shares = tally.shares(pods)
    return "    " + "  ".join(f"{name} {shares[name]:.0%}" for name in pods if name in shares)


def summary_rows(results: Sequence[SceneResult]) -> list[tuple[str, str, str, str, str]]:
    """Per scene: title, requests, failed, outcome, verdict."""
    return [
        (r.title, str(r.requests), str(r.failed), r.headline, "ok" if r.passed else "CHECK FAILED")
        for r in results
    ]


def summary_text(results: Sequence[SceneResult]) -> str:
    """The summary table as plain text."""
    rows = [("scene", "requests", "failed", "outcome", "checks"), *summary_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["Summary"]
    for row in rows:
        lines.append(
            "  "
            + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[4]
        )
    failed = [f"  check failed: {name}" for r in results for name, ok in r.checks.items() if not ok]
    return "\n".join(lines + failed)


class PlainDisplay:
    """One line per phase and per scene: for logs, pipes and CI."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def scene_started(self, key: str, title: str, story: str) -> None:
        self.print()
        self.print(title)
        self.print(f"  {story}")

    def phase_started(self, tally: Tally, seconds: float, pods: Sequence[str]) -> None:
        pass

    def phase_done(self, tally: Tally, pods: Sequence[str], note: str = "") -> None:
        self.print(phase_line(tally, note))
        self.print(shares_line(tally, pods))

    def scene_done(self, result: SceneResult) -> None:
        self.print(f"  ({result.seconds:.1f} s)")
        for name, ok in result.checks.items():
            self.print(f"  [{'x' if ok else ' '}] {name}")

    def summary(self, results: Sequence[SceneResult]) -> None:
        self.print()
        self.print(summary_text(results))

    def close(self) -> None:
        pass


class LiveDisplay(PlainDisplay):
    """On a terminal: the running phase as a live per-pod table with a progress bar (``rich``)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__()
        self.console = Console()
        self._tally: Tally | None = None
        self._pods: Sequence[str] = ()
        self._seconds = 1.0
        self._live = Live(
            get_renderable=self._render, console=self.console, refresh_per_second=8, transient=True
        )
        self._live.start()

    def print(self, text: str = "") -> None:
        self.console.print(text, highlight=False, markup=False)

    def phase_started(self, tally: Tally, seconds: float, pods: Sequence[str]) -> None:
        self._tally, self._pods, self._seconds = tally, pods, seconds

    def phase_done(self, tally: Tally, pods: Sequence[str], note: str = "") -> None:
        self._tally = None
        super().phase_done(tally, pods, note)

    def summary(self, results: Sequence[SceneResult]) -> None:
        from rich.table import Table

        table = Table(title="Summary", title_justify="left")
        for column in ("scene", "requests", "failed", "outcome", "checks"):
            table.add_column(column, justify="right" if column in ("requests", "failed") else "left")
        for row in summary_rows(results):
            table.add_row(*row[:4], f"[green]{row[4]}[/]" if row[4] == "ok" else f"[red]{row[4]}[/]")
        self.console.print()
        self.console.print(table)
        for r in results:
            for name, ok in r.checks.items():
                if not ok:
                    self.print(f"  check failed: {name}")

    def close(self) -> None:
        self._live.stop()

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        tally = self._tally
        if tally is None:
            return ""
        elapsed = time.monotonic() - tally.started
        table = Table(title=f"{tally.label}: {tally.count} requests, {tally.failed} failed", title_justify="left",
                      box=None, padding=(0, 1))  # fmt: skip
        for column in ("pod", "requests", "share", ""):
            table.add_column(column)
        pods, total = tally.pods(), max(1, tally.count)
        for name in self._pods:
            share = pods[name] / total
            table.add_row(
                name, str(pods[name]), f"{share:5.1%}", ProgressBar(total=1.0, completed=share, width=30)
            )
        table.add_row("progress", f"{min(elapsed, self._seconds):.1f} s", "",
                      ProgressBar(total=self._seconds, completed=min(elapsed, self._seconds), width=30))  # fmt: skip
        return table


def display(live: bool) -> PlainDisplay:
    """A live display if asked and ``rich`` is installed, else plain lines (saying why on a terminal)."""
    if live:
        try:
            return LiveDisplay()
        except ImportError:
            out = PlainDisplay()
            out.print("(plain output: the live view needs rich: pip install 'kube-balance[demo]')")
            return out
    return PlainDisplay()
