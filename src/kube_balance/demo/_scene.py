"""What every scene shares: its result, and the context that runs its phases of traffic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._traffic import Send, Tally, drive


@dataclass
class SceneResult:
    """One scene: its phases' tallies, one line of outcome, the checks it makes, its figures."""

    key: str
    title: str
    phases: list[Tally] = field(default_factory=list)
    headline: str = ""
    checks: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    focus: str = ""  # the pod the scene is about (slow, failing, hot): drawn apart in the plot
    matrix: tuple[list[str], list[str], list[list[int]]] | None = None
    """Rows, columns and counts (clients x pods) the plot draws as a grid instead of shares over time."""
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0  # how long the scene took, set when it is done

    @property
    def requests(self) -> int:
        return sum(t.count for t in self.phases)

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.phases)

    @property
    def passed(self) -> bool:
        return all(self.checks.values())


class Display(Protocol):
    """Where a scene's progress goes: a live terminal view or plain lines."""

    def print(self, text: str = "") -> None: ...

    def scene_started(self, key: str, title: str, story: str) -> None: ...

    def phase_started(self, tally: Tally, seconds: float, pods: Sequence[str]) -> None: ...

    def phase_done(self, tally: Tally, pods: Sequence[str], note: str = "") -> None: ...

    def scene_done(self, result: SceneResult) -> None: ...


class Context:
    """Runs phases of traffic for a scene and reports them to the display.

    ``quick`` halves every phase (for tests and a first look), never below ``MIN_SECONDS``.
    """

    MIN_SECONDS = 0.8

    def __init__(self, display: Display, *, quick: bool) -> None:
        self.display = display
        self.quick = quick

    def seconds(self, full: float) -> float:
        return max(self.MIN_SECONDS, full / 2) if self.quick else full

    async def run(
        self,
        label: str,
        send: Send,
        *,
        seconds: float,
        concurrency: int,
        pods: Sequence[str],
        keys: Sequence[str] = (),
        stop: asyncio.Event | None = None,
        cap: float | None = None,
        requests: int | None = None,
    ) -> Tally:
        """One phase: ``concurrency`` workers for ``seconds``, or until ``stop`` is set or
        ``requests`` were sent (then at most ``cap`` seconds)."""
        tally = Tally(label)
        self.display.phase_started(tally, seconds, pods)
        await drive(send, tally, seconds=cap or seconds, concurrency=concurrency, keys=keys, stop=stop,
                    requests=requests)  # fmt: skip
        return tally

    def done(self, tally: Tally, pods: Sequence[str], note: str = "") -> None:
        self.display.phase_done(tally, pods, note)


def ratio(shares: dict[str, float]) -> float:
    """max/min of the shares (inf when a pod got nothing)."""
    low = min(shares.values())
    return max(shares.values()) / low if low else float("inf")
