"""A manual clock for deterministic tests of time-dependent policies."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that only moves when told: pass it as ``clock=`` anywhere one is taken.

    >>> clock = FakeClock()
    >>> clock.advance(1.5)
    >>> clock()
    1.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        self.now += seconds

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now})"
