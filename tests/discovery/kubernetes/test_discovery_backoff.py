"""Jittered exponential backoff: client-go's spacing on a fake clock, reset, cap and Retry-After."""

from __future__ import annotations

import random

from kube_balance._backoff import Backoff
from kube_balance.testing import FakeClock


def test_delays_double_from_800ms_within_jitter_and_cap(clock: FakeClock) -> None:
    """Delay n lies in [0.8 * 2^n, 2 * 0.8 * 2^n) and never exceeds 30 s."""
    backoff = Backoff(rng=random.Random(1), clock=clock)
    for n in range(10):
        base = min(30.0, 0.8 * 2**n)
        delay = backoff.next_delay()
        assert base <= delay <= min(30.0, 2 * base)
        clock.advance(delay)
    assert backoff.next_delay() == 30.0


def test_no_jitter_gives_exact_sequence(clock: FakeClock) -> None:
    """With jitter 0 the sequence is exactly 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30."""
    backoff = Backoff(jitter=0.0, clock=clock)
    assert [backoff.next_delay() for _ in range(8)] == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]


def test_jitter_is_seeded_and_spreads(clock: FakeClock) -> None:
    """Two backoffs with the same seed agree; different seeds spread the first delay."""
    a = [Backoff(rng=random.Random(7), clock=clock).next_delay() for _ in range(2)]
    assert a[0] == a[1]
    firsts = {Backoff(rng=random.Random(s), clock=clock).next_delay() for s in range(20)}
    assert len(firsts) == 20 and all(0.8 <= d < 1.6 for d in firsts)


def test_resets_after_two_healthy_minutes(clock: FakeClock) -> None:
    """After 120 s without a failure the next delay starts at 0.8 s again."""
    backoff = Backoff(jitter=0.0, clock=clock)
    for _ in range(5):
        backoff.next_delay()
    clock.advance(119.0)
    assert backoff.next_delay() == 25.6  # still inside the window: keeps growing
    clock.advance(120.0)
    assert backoff.next_delay() == 0.8


def test_retry_after_replaces_a_shorter_delay(clock: FakeClock) -> None:
    """A Retry-After longer than the computed delay wins; a shorter one does not shorten it; it is capped."""
    backoff = Backoff(jitter=0.0, clock=clock)
    assert backoff.next_delay(retry_after=5.0) == 5.0
    assert backoff.next_delay(retry_after=0.1) == 1.6
    assert backoff.next_delay(retry_after=10_000.0) == 300.0


async def test_wait_uses_injected_sleep(clock: FakeClock) -> None:
    """wait() sleeps through the injected sleep and records the delay."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backoff = Backoff(jitter=0.0, clock=clock, sleep=sleep)
    assert await backoff.wait() == 0.8
    assert await backoff.wait() == 1.6
    assert slept == backoff.delays == [0.8, 1.6]
    backoff.reset()
    assert await backoff.wait() == 0.8
