"""Jittered exponential backoff between failed attempts (watches, source restarts), as client-go's reflector does.

client-go (``tools/cache/reflector.go``) backs off 800 ms, doubling, capped at 30 s, jitter 1.0,
and resets after 2 minutes without a failure. We keep those defaults but cap the jittered delay
at 30 s too, so the wait is always within 0.8 s..30 s. A server's ``Retry-After`` (429, 503)
replaces the computed delay when it is longer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[object]]

INITIAL = 0.8  # client-go reflector: initial backoff 800 ms
CAP = 30.0  # client-go reflector: max backoff 30 s
FACTOR = 2.0  # client-go reflector: factor 2.0
JITTER = 1.0  # client-go reflector: jitter 1.0 (delay in [d, 2d), then capped)
RESET_AFTER = 120.0  # client-go reflector: reset after 2 minutes without failure
MAX_RETRY_AFTER = 300.0  # ours: the longest Retry-After we honour


class Backoff:
    """Delays for consecutive failures; :meth:`reset` after success, or automatically when healthy.

    ``rng``, ``clock`` and ``sleep`` are injected so tests assert the spacing without waiting.
    """

    def __init__(
        self,
        *,
        initial: float = INITIAL,
        cap: float = CAP,
        factor: float = FACTOR,
        jitter: float = JITTER,
        reset_after: float = RESET_AFTER,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self.reset_after = reset_after
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._attempt = 0
        self._last_failure: float | None = None
        self.delays: list[float] = []  # every delay slept, newest last (bounded): for status and tests

    def reset(self) -> None:
        """Forget past failures: the next delay is ``initial`` again."""
        self._attempt = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """The delay before the next attempt, counting this failure."""
        now = self._clock()
        if self._last_failure is not None and now - self._last_failure >= self.reset_after:
            self._attempt = 0  # healthy for a while: start small again, as client-go does
        self._last_failure = now
        base = min(self.cap, self.initial * self.factor**self._attempt)
        self._attempt = min(self._attempt + 1, 64)
        delay = min(self.cap, base * (1.0 + self.jitter * self._rng.random()))
        if retry_after is not None and retry_after > delay:
            # The server said when: never come back sooner, but a bogus header must not park
            # the watcher for hours.
            delay = min(retry_after, MAX_RETRY_AFTER)
        return delay

    async def wait(self, retry_after: float | None = None) -> float:
        """Sleep for :meth:`next_delay` (via the injected ``sleep``) and return the delay."""
        delay = self.next_delay(retry_after)
        self.delays.append(delay)
        del self.delays[:-100]
        await self._sleep(delay)
        return delay
