"""HedgePolicy, its budget, its latency window and the race between two attempts."""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_balance import ConfigurationError, Endpoint, HedgePolicy, Outcome
from kube_balance._hedge import HedgeBudget, Hedging, LatencyWindow, RaceSide, race
from test_balancer_dispatch import make, shut

EP = Endpoint("10.0.0.1", 80)


# -- the policy ---------------------------------------------------------------------------------
def test_defaults_are_p95_with_a_floor_a_default_and_a_five_percent_budget() -> None:
    """The documented defaults."""
    policy = HedgePolicy()
    assert (policy.delay, policy.percentile, policy.min_delay, policy.default_delay) == (
        None,
        95.0,
        0.005,
        0.05,
    )
    assert (policy.window, policy.min_samples, policy.budget_percent, policy.budget_max) == (
        512,
        64,
        0.05,
        10,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": 0}, r"HedgePolicy delay=0 is invalid: expected a finite number of seconds > 0.0"),
        ({"delay": -1.0}, r"HedgePolicy delay=-1.0 is invalid"),
        ({"delay": math.inf}, r"HedgePolicy delay=inf is invalid"),
        ({"delay": "50ms"}, r"HedgePolicy delay='50ms' is invalid"),
        (
            {"percentile": 100},
            r"HedgePolicy percentile=100 is invalid: expected a finite number in \(0, 100\)",
        ),
        ({"percentile": 0}, r"HedgePolicy percentile=0 is invalid"),
        ({"percentile": True}, r"HedgePolicy percentile=True is invalid"),
        ({"min_delay": -0.001}, r"HedgePolicy min_delay=-0.001 is invalid: .* >= 0.0"),
        ({"default_delay": 0.0}, r"HedgePolicy default_delay=0.0 is invalid: .* > 0.0"),
        ({"window": 0}, r"HedgePolicy window=0 is invalid: expected an int in \[1, 100000\]"),
        (
            {"window": 10, "min_samples": 11},
            r"HedgePolicy min_samples=11 is invalid: expected at most window \(10\)",
        ),
        (
            {"window": 1},
            r"HedgePolicy window=1 is invalid: expected at least min_samples \(64\)",
        ),
        ({"budget_percent": 1.5}, r"HedgePolicy budget_percent=1.5 is invalid: .*\[0.0, 1.0\]"),
        ({"budget_max": 0}, r"HedgePolicy budget_max=0 is invalid: expected an int >= 1"),
    ],
)
def test_bad_options_name_the_option_the_value_and_what_is_allowed(
    kwargs: dict[str, Any], message: str
) -> None:
    """Each wrong option is a ConfigurationError at construction."""
    with pytest.raises(ConfigurationError, match=message):
        HedgePolicy(**kwargs)


OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "delay": st.none() | st.floats(allow_nan=True) | st.integers(-5, 5) | st.text(max_size=3),
        "percentile": st.floats(allow_nan=True) | st.integers(-5, 200) | st.booleans(),
        "min_delay": st.floats() | st.integers(-5, 5),
        "default_delay": st.floats() | st.integers(-5, 5),
        "window": st.integers(-5, 200_000) | st.floats() | st.none(),
        "min_samples": st.integers(-5, 1000) | st.booleans(),
        "budget_percent": st.floats() | st.integers(-1, 2),
        "budget_max": st.integers(-2, 20) | st.floats(),
    },
)


@settings(max_examples=300, deadline=None)
@given(OPTIONS)
def test_any_options_build_a_working_policy_or_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    """Fuzzed options: a policy whose delay is positive and finite, or a ConfigurationError
    naming one of the options given."""
    try:
        policy = HedgePolicy(**kwargs)
    except ConfigurationError as exc:
        message = str(exc)
    else:
        delay = Hedging(policy).delay()
        assert math.isfinite(delay) and delay > 0
        return
    assert any(f"HedgePolicy {name}=" in message for name in kwargs), message


@pytest.mark.parametrize(
    ("method", "replayable", "hedged"),
    [
        ("GET", True, True),
        ("head", True, True),
        ("OPTIONS", True, True),
        ("PUT", True, True),
        ("DELETE", True, True),
        ("POST", True, False),
        ("PATCH", True, False),
        ("GET", False, False),
        ("PUT", False, False),
    ],
)
def test_only_idempotent_replayable_requests_are_hedged(method: str, replayable: bool, hedged: bool) -> None:
    """RetryPolicy's notion of idempotent (RFC 9110), and a body that can be sent twice."""
    assert HedgePolicy().applies(method, replayable) is hedged


# -- the budget ---------------------------------------------------------------------------------
def test_the_budget_earns_a_hedge_every_twentieth_request_by_default() -> None:
    """5%: 20 deposits make exactly one hedge (no float drift), and a refusal is counted."""
    budget = HedgeBudget(0.05, 10)
    allowed = []
    for _ in range(100):
        budget.deposit()
        if budget.available():
            budget.withdraw()
            allowed.append(True)
        else:
            allowed.append(False)
    assert allowed == ([False] * 19 + [True]) * 5
    assert budget.exhausted == 95


def test_the_budget_saves_up_at_most_budget_max_hedges() -> None:
    """A quiet period saves up ``max_saved`` hedges, not more: a burst after it is capped."""
    budget = HedgeBudget(0.5, 3)
    for _ in range(100):
        budget.deposit()
    taken = 0
    while budget.available():
        budget.withdraw()
        taken += 1
    assert taken == 3 and budget.exhausted == 1


def test_a_zero_budget_never_hedges() -> None:
    """budget_percent=0 turns hedging off while keeping the policy (and counts refusals)."""
    budget = HedgeBudget(0.0, 10)
    for _ in range(50):
        budget.deposit()
    assert budget.available() is False and budget.exhausted == 1


# -- the latency window -------------------------------------------------------------------------
def test_the_window_keeps_the_percentile_of_recent_successes_only() -> None:
    """Failures, cancellations and attempts without a time are not samples; the value is the
    p95 of the last ``size`` successes, recomputed every size // 16 samples."""
    window = LatencyWindow(32, 95.0)
    window(EP, None, Outcome.OK, 200, None)
    window(EP, 9.0, Outcome.SERVER_ERROR, 503, None)
    window(EP, 9.0, Outcome.CANCELLED, None, None)
    assert len(window) == 0 and window.value is None
    for i in range(1, 33):  # 1..32 ms
        window(EP, i / 1000, Outcome.OK, 200, None)
    assert window.value == 0.031  # sorted[int(0.95 * 32)] = sorted[30]
    for _ in range(32):  # the window slides: only 5 ms answers left
        window(EP, 0.005, Outcome.OK, 200, None)
    assert len(window) == 32 and window.value == 0.005


def test_the_delay_is_the_default_then_the_percentile_never_below_the_floor() -> None:
    """Default until min_samples, then the window's percentile, floored at min_delay."""
    hedging = Hedging(HedgePolicy(min_delay=0.01, default_delay=0.2, window=16, min_samples=8))
    assert hedging.latency is not None
    assert hedging.delay() == 0.2
    for _ in range(8):
        hedging.latency(EP, 0.03, Outcome.OK, 200, None)
    assert hedging.delay() == 0.03
    for _ in range(16):
        hedging.latency(EP, 0.001, Outcome.OK, 200, None)
    assert hedging.delay() == 0.01
    assert Hedging(HedgePolicy(delay=0.12)).delay() == 0.12
    assert Hedging(HedgePolicy(delay=0.12)).latency is None  # a fixed delay tracks nothing


# -- the race -----------------------------------------------------------------------------------
class Arm:
    """An attempt that answers ``value`` (or raises ``error``) when its event is set."""

    def __init__(self, value: str, error: Exception | None = None) -> None:
        self.value, self.error = value, error
        self.go = asyncio.Event()
        self.cancelled = False

    async def run(self) -> str:
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return self.value


async def test_a_first_attempt_that_answers_in_time_sends_no_hedge() -> None:
    """No hedge is asked for when the first attempt finishes before the delay."""
    first, asked = Arm("first"), []
    first.go.set()
    async with asyncio.timeout(5):
        result = await race(first.run(), lambda: asked.append(1), 10.0, _no_drop)  # type: ignore[func-returns-value]
    assert result == "first" and asked == []


async def test_the_hedge_wins_and_the_first_attempt_is_cancelled() -> None:
    """After the delay the hedge runs; it answers first, the first attempt is cancelled (and
    finished) before race returns."""
    first, second = Arm("first"), Arm("second")

    def hedge() -> Any:
        second.go.set()
        return second.run()

    outrun: list[bool] = []

    def on_outrun() -> None:
        outrun.append(first.cancelled)  # before the first attempt is cancelled

    async with asyncio.timeout(5):
        assert await race(first.run(), hedge, 0.01, _no_drop, on_outrun) == "second"
    assert first.cancelled and not second.cancelled
    assert outrun == [False]  # told once, before the cancellation


async def test_a_first_attempt_that_answers_after_the_hedge_was_sent_is_not_outrun() -> None:
    """The hedge is sent, the first attempt still answers first: it wins, outrun() is not called
    and the hedge is the one cancelled."""
    first, second = Arm("first"), Arm("second")

    def hedge() -> Any:
        asyncio.get_running_loop().call_later(0.02, first.go.set)
        return second.run()

    outrun: list[int] = []
    async with asyncio.timeout(5):
        assert await race(first.run(), hedge, 0.01, _no_drop, lambda: outrun.append(1)) == "first"
    assert second.cancelled and outrun == []


async def test_no_hedge_available_waits_for_the_first_attempt() -> None:
    """hedge() returning None (budget, no other pod): the first attempt's answer, however late."""
    first = Arm("first")
    asyncio.get_running_loop().call_later(0.05, first.go.set)
    async with asyncio.timeout(5):
        assert await race(first.run(), lambda: None, 0.01, _no_drop) == "first"


async def test_a_failed_attempt_leaves_the_other_to_win_and_both_failing_raise_the_first_error() -> None:
    """One attempt failing does not fail the request while the other runs; both failing raise
    the first attempt's error."""
    first, second = Arm("first", ValueError("first failed")), Arm("second")
    first.go.set()

    async def late_first() -> str:
        await asyncio.sleep(0.02)
        return await first.run()

    def hedge() -> Any:
        asyncio.get_running_loop().call_later(0.05, second.go.set)
        return second.run()

    async with asyncio.timeout(5):
        assert await race(late_first(), hedge, 0.01, _no_drop) == "second"
        a, b = Arm("a", ValueError("a failed")), Arm("b", KeyError("b failed"))

        def hedge_b() -> Any:
            asyncio.get_running_loop().call_later(0.02, a.go.set)
            asyncio.get_running_loop().call_later(0.03, b.go.set)
            return b.run()

        with pytest.raises(ValueError, match="a failed"):
            await race(a.run(), hedge_b, 0.01, _no_drop)


async def test_an_attempt_that_finished_too_is_dropped() -> None:
    """Both attempts answer in the same loop turn: the winner is returned, the other dropped."""
    dropped: list[str] = []
    first, second = Arm("first"), Arm("second")

    def hedge() -> Any:
        first.go.set()
        second.go.set()
        return second.run()

    async def drop(value: str) -> None:
        dropped.append(value)

    async with asyncio.timeout(5):
        winner = await race(first.run(), hedge, 0.01, drop)
    assert {winner, *dropped} == {"first", "second"} and len(dropped) == 1


async def test_cancelling_the_race_cancels_both_attempts() -> None:
    """A caller that gives up cancels the first attempt and the hedge."""
    first, second = Arm("first"), Arm("second")
    task = asyncio.create_task(race(first.run(), second.run, 0.01, _no_drop))
    async with asyncio.timeout(5):
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert first.cancelled and second.cancelled


# -- the side a hedge outran (RaceSide) -----------------------------------------------------------
async def test_race_side_marks_the_lease_the_hedge_left_and_its_cancellation_is_slow(
    rng: random.Random,
) -> None:
    """The lease in flight when the hedge was sent, cancelled after the hedge won, is put() as
    SLOW (the pod was outrun); a later lease of the same side, and an ordinary cancellation,
    stay CANCELLED; every lease is put once."""
    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80"], rng)
    side = RaceSide()
    async with asyncio.timeout(1):
        left = await d.acquire()
        side.add(left)
        side.hedged()
        later = await d.acquire()
        side.add(later)  # a retry of the same side after the hedge was sent: not the one it left
    assert side.keys == {"10.0.0.1:80", "10.0.0.2:80"} and side.current is later and side.left is left
    side.outrun()
    assert left.outrun and not later.outrun
    left.release(Outcome.CANCELLED)
    later.release(Outcome.CANCELLED)
    assert lb.status().outcomes == {"slow": 1, "cancelled": 1} and lb.status().inflight == 0
    await shut(d, lb)


async def test_race_side_leaves_a_lease_that_already_ended_and_other_outcomes_alone(
    rng: random.Random,
) -> None:
    """A first attempt that failed before the hedge won has said how it ended (its failure); an
    outrun lease released with another outcome (its connection broke) keeps that outcome."""
    d, lb, _ = make(["10.0.0.1:80", "10.0.0.2:80"], rng)
    failed, broken = RaceSide(), RaceSide()
    async with asyncio.timeout(1):
        failed.add(await d.acquire())
        broken.add(await d.acquire())
    failed.hedged()
    broken.hedged()
    assert failed.left is not None and broken.left is not None
    failed.left.release(Outcome.CONNECT_FAILED)
    failed.outrun()
    broken.outrun()
    assert not failed.left.outrun and broken.left.outrun
    broken.left.release(Outcome.RESET)
    assert lb.status().outcomes == {"connect_failed": 1, "reset": 1}
    assert RaceSide().outrun() is None  # nothing leased, no hedge sent: nothing to mark
    # A hedge sent while the first attempt still waits for its pick (no lease yet): nothing is
    # left in flight, so a hedge answering first marks nothing.
    waiting = RaceSide()
    waiting.hedged()
    assert (waiting.current, waiting.left, waiting.keys) == (None, None, set())
    assert waiting.outrun() is None
    await shut(d, lb)


async def _no_drop(value: object) -> None:
    raise AssertionError(f"nothing should be dropped, got {value!r}")


@settings(max_examples=200, deadline=None)
@given(
    percent=st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0]),
    max_saved=st.integers(1, 20),
    steps=st.lists(st.booleans(), max_size=300),
)
def test_hedges_never_exceed_their_share_of_requests(
    percent: float, max_saved: int, steps: list[bool]
) -> None:
    """Whatever the mix of requests (True) and hedge attempts (False), hedges taken never exceed
    ``percent`` of the requests so far: saving up is bounded by what was deposited."""
    budget, requests, hedges = HedgeBudget(percent, max_saved), 0, 0
    for request in steps:
        if request:
            budget.deposit()
            requests += 1
        elif budget.available():
            budget.withdraw()
            hedges += 1
        assert hedges <= math.floor(percent * requests + 1e-9)


# -- limits, exact counts and cadences ------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay": 1e-9},
        {"delay": 0.5},
        {"percentile": 0.001},
        {"percentile": 0.5},
        {"percentile": 99.5},
        {"percentile": 99.999},
        {"min_delay": 0.0},
        {"default_delay": 1e-9},
        {"window": 1, "min_samples": 1},
        {"window": 100_000},
        {"window": 64, "min_samples": 64},
        {"budget_percent": 0.0},
        {"budget_percent": 1.0},
        {"budget_max": 1},
    ],
)
def test_the_limits_themselves_are_allowed(kwargs: dict[str, Any]) -> None:
    """Each option's smallest and largest allowed value (min_samples may equal window)."""
    policy = HedgePolicy(**kwargs)
    assert all(getattr(policy, name) == value for name, value in kwargs.items())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 100_001}, r"HedgePolicy window=100001 is invalid: expected an int in \[1, 100000\]"),
        ({"window": 1, "min_samples": 0}, r"HedgePolicy min_samples=0 is invalid: expected an int >= 1"),
        ({"budget_percent": -0.01}, r"HedgePolicy budget_percent=-0.01 is invalid"),
    ],
)
def test_just_outside_the_limits_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HedgePolicy(**kwargs)


def test_each_hedge_spends_exactly_what_twenty_requests_earned() -> None:
    """In millionths: after each hedge the balance is back to exactly 0 (no drift, ever), and
    the budget's repr shows the hedges saved up and the refusals."""
    budget = HedgeBudget(0.05, 10)
    assert repr(budget) == "<HedgeBudget 0.00 hedges exhausted=0>"
    for _ in range(3):
        for _ in range(20):
            budget.deposit()
        assert budget.balance == 1_000_000 and budget.available()
        budget.withdraw()
        assert budget.balance == 0
    budget.available()
    for _ in range(30):
        budget.deposit()
    assert repr(budget) == "<HedgeBudget 1.50 hedges exhausted=1>"
    assert repr(Hedging(HedgePolicy())) == "<Hedging delay=0.0500 <HedgeBudget 0.00 hedges exhausted=0>>"


def test_the_window_recomputes_every_sixteenth_of_its_size() -> None:
    """The default window of 512 sorts every 32 samples: the value is None for the first 31,
    then changes only on the 32nd sample after the last recompute."""
    window = LatencyWindow(512, 50.0)
    for i in range(1, 32):
        window(EP, float(i), Outcome.OK, 200, None)
    assert window.value is None
    window(EP, 32.0, Outcome.OK, 200, None)
    assert window.value == 17.0  # sorted 1..32, index int(0.5 x 32) = 16
    for _ in range(31):
        window(EP, 1000.0, Outcome.OK, 200, None)
    assert window.value == 17.0  # 31 samples since: not yet
    window(EP, 1000.0, Outcome.OK, 200, None)
    assert window.value == 1000.0  # 64 samples, half of them 1000 s: index 32
    small = LatencyWindow(4, 50.0)  # fewer than 16 samples: every sample recomputes
    small(EP, 3.0, Outcome.OK, 200, None)
    assert small.value == 3.0


def test_the_window_overwrites_its_oldest_sample_first() -> None:
    """A full ring replaces the oldest sample, then the next oldest (the minimum shows it)."""
    window = LatencyWindow(4, 1.0)  # the lowest of 4: index int(0.01 x 4) = 0
    for value in (1.0, 2.0, 3.0, 4.0):
        window(EP, value, Outcome.OK, 200, None)
    assert window.value == 1.0
    window(EP, 5.0, Outcome.OK, 200, None)  # replaces 1.0
    assert window.value == 2.0
    window(EP, 6.0, Outcome.OK, 200, None)  # replaces 2.0
    assert window.value == 3.0 and len(window) == 4


@pytest.mark.parametrize(("percentile", "expected"), [(99.0, 1014.0), (99.95, 1024.0), (50.0, 513.0)])
def test_the_percentile_is_the_sample_at_its_rank(percentile: float, expected: float) -> None:
    """The value at index floor(percentile / 100 x n) of the sorted samples (1..1024 here: the
    1024th recomputes), the largest one for a percentile close to 100."""
    window = LatencyWindow(1024, percentile)
    for i in range(1, 1025):
        window(EP, float(i), Outcome.OK, 200, None)
    assert window.value == expected


def test_the_floor_applies_to_the_default_delay_too() -> None:
    """A min_delay above default_delay: the default is raised to the floor."""
    assert Hedging(HedgePolicy(min_delay=0.2, default_delay=0.05)).delay() == 0.2


async def test_a_losers_clean_up_outlives_a_cancelled_caller() -> None:
    """Cancelling the race while a loser's answer is being dropped: the drop still completes (the
    clean-up is shielded and referenced until it ends), and nothing is left referenced after."""
    from kube_balance import _hedge

    first, second = Arm("first"), Arm("second")
    dropping, release, dropped = asyncio.Event(), asyncio.Event(), []

    def hedge() -> Any:
        first.go.set()
        second.go.set()
        return second.run()

    async def slow_drop(value: str) -> None:
        dropping.set()
        await release.wait()
        dropped.append(value)

    async with asyncio.timeout(5):
        task = asyncio.create_task(race(first.run(), hedge, 0.01, slow_drop))
        await dropping.wait()
        assert len(_hedge._settling) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        while _hedge._settling:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    assert len(dropped) == 1


async def test_a_drop_that_fails_is_logged_and_the_winner_returned(caplog: pytest.LogCaptureFixture) -> None:
    """Closing the losing answer failed: the winner is still returned; one warning with the error."""
    first, second = Arm("first"), Arm("second")

    def hedge() -> Any:
        first.go.set()
        second.go.set()
        return second.run()

    async def failing_drop(value: str) -> None:
        raise RuntimeError("close failed")

    async with asyncio.timeout(5):
        assert await race(first.run(), hedge, 0.01, failing_drop) in {"first", "second"}
    [record] = [r for r in caplog.records if r.name == "kube_balance"]
    assert record.levelname == "WARNING"
    assert record.getMessage() == "closing the losing attempt of a hedged request failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "close failed"
