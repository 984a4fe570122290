"""The dispatch core's retry bookkeeping: attempt counts, the budget, the error that names what was
tried, the first pick without a coroutine, statuses and Retry-After, cancellation, closing."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from kube_balance import Endpoint, HedgePolicy, NoEndpointsAvailable, Outcome
from kube_balance._balancer import LoadBalancer
from kube_balance._dispatch import Attempts, Dispatcher, Lease, Verdict
from kube_balance._hedge import RaceSide
from kube_balance._retry import Failure, RetryPolicy
from kube_balance.discovery.static import StaticSource
from test_balancer_dispatch import Adapter, Pool, make, send, shut


class Refused(ConnectionError):
    """An attempt that could not connect."""


class Explaining(Adapter):
    """Records what explain() was given and raises its own error naming the attempts."""

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__()
        self.explained: list[Attempts] = []
        self._retry_after = retry_after

    def retry_after(self, result: int) -> float | None:
        return self._retry_after

    def explain(self, exc: Exception, attempts: Any, request: None) -> BaseException | None:
        self.explained.append(attempts)
        return RuntimeError(attempts.message(exc))


def dispatcher(
    keys: list[str],
    rng: random.Random,
    *,
    retry_after: float | None = None,
    fallback: str | None = "service",
    **kwargs: Any,
) -> tuple[Dispatcher[Pool, None, int], Explaining]:
    adapter = Explaining(retry_after)
    lb = LoadBalancer(
        "web.shop:80", source=StaticSource(keys), algorithm="round_robin", fallback=fallback, rng=rng
    )
    return Dispatcher(lb, adapter, **kwargs), adapter


def refusing(seen: list[str]) -> Any:
    async def attempt(lease: Lease[Pool]) -> int:
        seen.append(lease.key)
        raise Refused("refused")

    return attempt


def test_attempts_message_names_every_try_and_the_cause() -> None:
    """One attempt or several, a cause with or without text, and the fallback's own wording."""
    one = Attempts("web.shop:80", ("10.0.0.1:80",), None)
    assert one.message(Refused("refused")) == (
        "service web.shop:80: 1 attempt failed, on 10.0.0.1:80; last error: Refused: refused"
    )
    two = Attempts("web.shop:80", ("10.0.0.1:80", "[fd00::2]:80"), None)
    assert two.message(Refused()) == (
        "service web.shop:80: 2 attempts failed, on 10.0.0.1:80, [fd00::2]:80; last error: Refused"
    )
    fallback = Attempts("web.shop:80", ("web.shop:80",), "no endpoints")
    text = fallback.message(Refused("refused"))
    assert text.startswith("the fallback web.shop:80 failed (Refused: refused); requests go to the")
    assert "because no endpoints." in text


async def test_every_attempt_is_counted_and_named(rng: random.Random) -> None:
    """max_attempts bounds the attempts, each on another pod (IPv6 in brackets), and the error
    names them in order, raised from the last one."""
    for attempts in (1, 2, 3):
        d, adapter = dispatcher(
            ["10.0.0.1:80", "[fd00::2]:80", "10.0.0.3:80", "10.0.0.4:80"],
            rng,
            retry=RetryPolicy(max_attempts=attempts),
        )
        seen: list[str] = []
        with pytest.raises(RuntimeError) as info:
            # lost after sending (not "refused"): retried only up to max_attempts
            await send(d, refusing(seen), classify=lambda e: Verdict(Failure.NO_RESPONSE, Outcome.RESET))
        assert len(seen) == attempts == len(set(seen))
        (explained,) = adapter.explained
        assert explained.tried == tuple(seen) and explained.fallback_reason is None  # "[fd00::2]:80"
        assert isinstance(info.value.__cause__, Refused)
        assert d.balancer.counters.retries == attempts - 1
        await shut(d, d.balancer)


async def test_a_failing_fallback_is_not_retried_and_says_why(rng: random.Random) -> None:
    """The fallback has nowhere else to go: one attempt, and the reason it served."""
    d, adapter = dispatcher([], rng)
    seen: list[str] = []
    with pytest.raises(RuntimeError):
        await send(d, refusing(seen))
    assert len(seen) == 1 and d.balancer.counters.fallback_requests == 1
    (explained,) = adapter.explained
    assert explained.fallback_reason is not None and "web.shop" in explained.fallback_reason
    await shut(d, d.balancer)


async def test_cancellation_is_released_as_cancelled_and_never_explained(rng: random.Random) -> None:
    d, adapter = dispatcher(["10.0.0.1:80", "10.0.0.2:80"], rng)

    async def cancelled(lease: Lease[Pool]) -> int:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await send(d, cancelled)
    assert adapter.explained == []
    assert d.balancer.counters.outcomes[Outcome.CANCELLED] == 1
    assert d.inflight("10.0.0.1:80") == d.inflight("10.0.0.2:80") == 0
    await shut(d, d.balancer)


async def test_budgeted_retries_hold_a_slot_until_released(rng: random.Random) -> None:
    """A status retry takes a budget slot, held by its lease; a plain request leaves it alone."""
    policy = RetryPolicy(retry_statuses=[503], max_attempts=2)
    d, _ = dispatcher(["10.0.0.1:80", "10.0.0.2:80"], rng, retry=policy)
    answers = iter([503, 200, 200])

    async def answer(lease: Lease[Pool]) -> int:
        return next(answers)

    code, retried = await send(d, answer)
    assert code == 200 and retried.retry and d.budget.retries == 1
    code, plain = await send(d, answer)
    assert not plain.retry
    plain.release()
    assert d.budget.retries == 1  # not the plain request's slot
    retried.release()
    assert d.budget.retries == 0 and d.budget.active == 0
    await shut(d, d.balancer)


async def test_an_exhausted_budget_stops_status_retries(rng: random.Random) -> None:
    policy = RetryPolicy(retry_statuses=[503], max_attempts=3, budget_percent=0.0, budget_min_concurrency=0)
    d, _ = dispatcher(["10.0.0.1:80", "10.0.0.2:80"], rng, retry=policy)

    async def unavailable(lease: Lease[Pool]) -> int:
        return 503

    code, lease = await send(d, unavailable)
    assert code == 503 and d.balancer.counters.retry_budget_exhausted == 1
    assert d.balancer.counters.retries == 0
    lease.release()
    await shut(d, d.balancer)


async def test_no_pod_left_gives_the_budget_slot_back(rng: random.Random) -> None:
    """Both pods refused (budget taken for the retry): the slot taken for a third try comes back."""
    policy = RetryPolicy(max_attempts=5, budget_not_sent=True)
    d, _ = dispatcher(["10.0.0.1:80", "10.0.0.2:80"], rng, retry=policy)
    seen: list[str] = []
    with pytest.raises(RuntimeError):
        await send(d, refusing(seen))
    assert len(seen) == 2 and d.budget.retries == 0 and d.budget.active == 0
    await shut(d, d.balancer)


async def test_an_outer_retry_slot_is_released_with_its_lease_or_on_failure(rng: random.Random) -> None:
    """retry_slot=True (aiohttp's middleware): the slot goes back with the lease, or at once when
    no lease could be taken."""
    d, _ = dispatcher(["10.0.0.1:80"], rng)
    assert d.budget.try_acquire()
    adapter = d.adapter
    assert isinstance(adapter, Adapter)

    async def ok(lease: Lease[Pool]) -> int:
        return 200

    adapter.attempt_fn = ok
    _code, lease = await asyncio.wait_for(
        d.send(None, key=None, method="GET", replayable=True, retry_slot=True), 1
    )
    assert lease.retry and d.budget.retries == 1
    lease.release()
    assert d.budget.retries == 0
    await shut(d, d.balancer)

    empty, _ = dispatcher([], rng, fallback=None)
    assert empty.budget.try_acquire()
    with pytest.raises(NoEndpointsAvailable):
        await asyncio.wait_for(empty.send(None, key=None, method="GET", replayable=True, retry_slot=True), 1)
    assert empty.budget.retries == 0
    await shut(empty, empty.balancer)


async def test_statuses_and_retry_after_are_recorded(rng: random.Random) -> None:
    """The lease keeps the status, and Retry-After for 429 and 503 only; status 0 (no response
    yet: aiohttp's connection) records nothing."""
    d, _ = dispatcher(["10.0.0.1:80"], rng, retry_after=7.0)
    for status, retry_after in ((200, None), (429, 7.0), (430, None), (502, None), (503, 7.0), (504, None)):

        async def answer(lease: Lease[Pool], status: int = status) -> int:
            return status

        _code, lease = await send(d, answer)
        assert (lease.status, lease.retry_after) == (status, retry_after)
        assert lease.elapsed is not None
        lease.release()

    async def connection(lease: Lease[Pool]) -> int:
        return 0

    _code, lease = await send(d, connection)
    assert (lease.status, lease.elapsed) == (None, None)
    lease.release()
    await shut(d, d.balancer)


async def test_a_failed_discard_is_logged_with_its_traceback(
    rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    d, _ = dispatcher(["10.0.0.1:80", "10.0.0.2:80"], rng, retry=RetryPolicy(retry_statuses=[503]))
    answers = iter([503, 200])

    async def answer(lease: Lease[Pool]) -> int:
        return next(answers)

    async def broken(result: int) -> None:
        raise OSError("broken body")

    with caplog.at_level(logging.WARNING, logger="kube_balance"):
        code, lease = await send(d, answer, discard=broken)
    assert code == 200
    (record,) = [r for r in caplog.records if "discarding" in r.getMessage()]
    assert record.exc_info is not None and isinstance(record.exc_info[1], OSError)
    lease.release()
    await shut(d, d.balancer)


async def test_cancelled_while_discarding_releases_both_leases(rng: random.Random) -> None:
    d, _ = dispatcher(["10.0.0.1:80", "10.0.0.2:80"], rng, retry=RetryPolicy(retry_statuses=[503]))

    async def unavailable(lease: Lease[Pool]) -> int:
        return 503

    async def cancelled(result: int) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await send(d, unavailable, discard=cancelled)
    assert d.inflight("10.0.0.1:80") == d.inflight("10.0.0.2:80") == 0
    assert d.balancer.counters.outcomes[Outcome.CANCELLED] == 1
    assert d.budget.retries == 0
    await shut(d, d.balancer)


async def test_first_pick_without_waiting_when_started(rng: random.Random) -> None:
    """A balancer started by someone else: the first request picks at once and still records
    the loop; round robin sees one get() per request; a closed dispatcher refuses (its
    first_attempt() too)."""
    keys = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]
    d, _ = dispatcher(keys, rng)
    lb = d.balancer
    await asyncio.wait_for(lb.ensure_started(), 1)
    seen: list[str] = []

    async def ok(lease: Lease[Pool]) -> int:
        seen.append(lease.key)
        return 200

    for _ in range(8):
        _code, lease = await send(d, ok)
        lease.release()
    assert d.loop is asyncio.get_running_loop()
    assert sorted(seen) == sorted(keys * 2)  # one get() per request: no pick taken and dropped
    assert seen[:4] == seen[4:]
    await d.aclose()
    assert d.first_attempt(None, None) is None  # the fast path refuses too: send() says why
    with pytest.raises(RuntimeError, match="closed"):
        await send(d, ok)
    await lb.aclose()


async def test_started_without_endpoints_goes_to_the_fallback_rules(rng: random.Random) -> None:
    """Started with no endpoint and no fallback: every send() says so, and first_attempt() picks
    nothing (None: send() decides)."""
    d, _ = dispatcher([], rng, fallback=None)
    await asyncio.wait_for(d.balancer.ensure_started(), 1)

    async def ok(lease: Lease[Pool]) -> int:
        return 200

    for _ in range(2):  # the second without a coroutine of its own (the loop is known)
        with pytest.raises(NoEndpointsAvailable):
            await send(d, ok)
    assert d.first_attempt(None, None) is None  # nothing to pick at once: send() decides
    await shut(d, d.balancer)


async def test_has_other_and_exclude(rng: random.Random) -> None:
    d, _ = dispatcher(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], rng)
    await asyncio.wait_for(d.balancer.wait_ready(1), 1)
    assert d.has_other({"10.0.0.1:80", "10.0.0.3:80"})
    assert not d.has_other({"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"})

    async def ok(lease: Lease[Pool]) -> int:
        return 200

    adapter = d.adapter
    assert isinstance(adapter, Adapter)
    adapter.attempt_fn = ok
    picked = []
    for _ in range(4):  # the algorithm's own picks, skipping the excluded one
        _code, lease = await asyncio.wait_for(
            d.send(None, key=None, method="GET", replayable=True, exclude={"10.0.0.1:80"}), 1
        )
        picked.append(lease.key)
        lease.release()
    assert sorted(picked) == ["10.0.0.2:80"] * 2 + ["10.0.0.3:80"] * 2
    d.balancer.source.set([])  # type: ignore[attr-defined]
    _code, lease = await asyncio.wait_for(  # nothing eligible: the fallback
        d.send(None, key=None, method="GET", replayable=True, exclude={"10.0.0.1:80"}), 1
    )
    assert lease.endpoint is None
    lease.release()
    await shut(d, d.balancer)


async def test_aclose_stops_listening_and_a_second_call_waits(rng: random.Random) -> None:
    d, _ = dispatcher(["10.0.0.1:80"], rng)
    lb = d.balancer
    listeners = len(lb._listeners)
    await asyncio.wait_for(d.aclose(), 1)
    assert len(lb._listeners) == listeners - 1
    await asyncio.wait_for(d.aclose(), 1)
    assert len(lb._listeners) == listeners - 1
    await lb.aclose()


def test_verdict_defaults_to_an_error() -> None:
    assert Verdict(None).outcome is Outcome.ERROR
    assert Endpoint("fd00::1", 80).address == "fd00::1"


async def test_statuses_count_attempts_and_name_them_all(rng: random.Random) -> None:
    """Status retries count towards max_attempts; an error after two of them names all three."""
    keys = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]
    policy = RetryPolicy(retry_statuses=[503], max_attempts=3)
    d, adapter = dispatcher(keys, rng, retry=policy)
    seen: list[str] = []

    async def unavailable(lease: Lease[Pool]) -> int:
        seen.append(lease.key)
        return 503

    code, lease = await send(d, unavailable)
    assert code == 503 and len(seen) == 3
    lease.release()
    seen.clear()
    answers = iter([503, 503])

    async def then_lost(lease: Lease[Pool]) -> int:
        seen.append(lease.key)
        status = next(answers, None)
        if status is None:
            raise Refused("lost")
        return status

    with pytest.raises(RuntimeError):
        await send(d, then_lost, classify=lambda e: Verdict(Failure.NO_RESPONSE, Outcome.RESET))
    assert adapter.explained[-1].tried == tuple(seen) and len(seen) == 3
    await shut(d, d.balancer)


async def test_a_fallback_failing_after_pods_appeared_is_not_retried_on_them(rng: random.Random) -> None:
    d, adapter = dispatcher([], rng)
    seen: list[str] = []

    async def lost(lease: Lease[Pool]) -> int:
        seen.append(lease.key)
        d.balancer.source.set(["10.0.0.1:80"])  # type: ignore[attr-defined]
        await asyncio.sleep(0)
        raise Refused("lost")

    with pytest.raises(RuntimeError):
        await send(d, lost, classify=lambda e: Verdict(Failure.NO_RESPONSE, Outcome.RESET))
    assert len(seen) == 1 and adapter.explained[-1].fallback_reason is not None
    await shut(d, d.balancer)


async def test_a_second_aclose_waits_for_the_closes_in_progress(rng: random.Random) -> None:
    d, lb, _ = make(["10.0.0.1:80"], rng, close_pool=slow_close)
    lease = await asyncio.wait_for(d.acquire(), 1)
    lease.release()
    first = asyncio.create_task(d.aclose())
    await asyncio.sleep(0.01)
    first.cancel()
    second = asyncio.create_task(d.aclose())
    await asyncio.sleep(0.01)
    assert not second.done()  # the pool is still closing
    RELEASE.set()
    await asyncio.wait_for(second, 1)
    await lb.aclose()


RELEASE = asyncio.Event()


async def slow_close(pool: Pool) -> None:
    await asyncio.wait_for(RELEASE.wait(), 2)
    pool.closed = True


class Marked(Lease[Pool]):
    """A lease type of an integration's own (``Dispatcher(lease_type=)``)."""

    __slots__ = ()


async def test_first_attempt_then_send_with_its_failure_retries_as_send_would(rng: random.Random) -> None:
    """The first attempt without send()'s coroutine: None before the balancer started; once
    started, the lease (of the dispatcher's lease type) and the attempt; a failure handed to
    send(first=, failed=) is released once and retried on another pod, counted and named, as
    send() alone does it."""
    d, adapter = dispatcher(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], rng, lease_type=Marked)
    assert d.first_attempt(None, None) is None  # not started: send() waits for discovery
    lease = await asyncio.wait_for(d.acquire(), 1)
    lease.release()
    seen: list[str] = []
    adapter.attempt_fn = refusing(seen)
    started = d.first_attempt(None, None)
    assert started is not None
    first, attempt = started
    assert isinstance(first, Marked) and d.inflight(first.key) == 1
    with pytest.raises(Refused) as info:
        await asyncio.wait_for(attempt, 1)
    with pytest.raises(RuntimeError) as explained:
        await send_failed(d, first, info.value)
    assert first.released and len(seen) == 3 == len(set(seen))
    assert adapter.explained[0].tried == tuple(seen)
    assert isinstance(explained.value.__cause__, Refused)
    assert d.balancer.counters.retries == 2
    assert d.balancer.counters.outcomes[Outcome.CONNECT_FAILED] == 3
    assert all(d.inflight(key) == 0 for key in seen)
    await shut(d, d.balancer)


async def send_failed(d: Dispatcher[Pool, None, int], first: Lease[Pool], exc: BaseException) -> Any:
    async with asyncio.timeout(1):
        return await d.send(None, key=None, method="GET", replayable=True, first=first, failed=exc)


class RaisingAtOnce(Explaining):
    """An adapter whose attempt() fails before it returns an awaitable (a bad request object)."""

    def attempt(self, lease: Lease[Pool], request: None) -> Any:  # type: ignore[override]
        raise ValueError("bad request")


async def test_first_attempt_failing_before_its_awaitable_releases_the_lease_as_local(
    rng: random.Random,
) -> None:
    """first_attempt(): an attempt that raises at once is put back as LOCAL (not the pod's
    failure) and the error reaches the caller; nothing stays in flight."""
    adapter = RaisingAtOnce()
    lb = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]), algorithm="round_robin", rng=rng)
    d: Dispatcher[Pool, None, int] = Dispatcher(lb, adapter)
    (await asyncio.wait_for(d.acquire(), 1)).release()  # started
    with pytest.raises(ValueError, match="bad request"):
        d.first_attempt(None, None)
    assert lb.counters.outcomes[Outcome.LOCAL] == 1
    assert d.inflight("10.0.0.1:80") == 0 and lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    await shut(d, lb)


class Unpooled(Explaining):
    """A client that pools connections itself (aiohttp's): ``pooled = False``."""

    pooled = False

    def open_pool(self) -> Pool:
        raise AssertionError("a client without pools of ours is never asked for one")


async def test_a_client_without_pools_gets_leases_without_pools_or_per_endpoint_counts(
    rng: random.Random,
) -> None:
    """``pooled = False``: no pool is opened, a lease carries none, no per-endpoint count is kept
    (the algorithm's in-flight count is the one that matters), and retries and the budget's
    active count work as with pools: leases released through every path leave nothing behind."""
    adapter = Unpooled()
    lb = LoadBalancer(
        "web.shop:80", source=StaticSource(["10.0.0.1:80", "10.0.0.2:80"]), algorithm="round_robin", rng=rng
    )
    d: Dispatcher[Pool, None, int] = Dispatcher(lb, adapter)
    lease = await asyncio.wait_for(d.acquire(), 1)
    assert lease.pool is None and d.pools == {} and d.inflight(lease.key) == 0
    assert d.budget.active == 1 and lb.algorithm.total_inflight() == 1  # type: ignore[attr-defined]
    started = d.first_attempt(None, None)  # the fast path too
    assert started is not None
    second, attempt = started
    assert second.pool is None and second.key != lease.key and d.budget.active == 2
    seen: list[str] = []
    adapter.attempt_fn = refusing(seen)
    with pytest.raises(Refused) as info:
        await asyncio.wait_for(attempt, 1)
    with pytest.raises(RuntimeError):  # retried on the other pod, refused too
        await send_failed(d, second, info.value)
    lease.release()
    assert d.pools == {} and d.budget.active == 0 and lb.algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    assert lb.counters.retries == 1 and len(seen) == 2
    await shut(d, lb)


async def test_an_adapter_that_does_not_say_is_pooled(rng: random.Random) -> None:
    """An adapter without a ``pooled`` attribute gets a pool per endpoint (the default)."""
    adapter = Explaining()
    assert not hasattr(adapter, "pooled")
    lb = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]), algorithm="round_robin", rng=rng)
    d: Dispatcher[Pool, None, int] = Dispatcher(lb, adapter)
    lease = await asyncio.wait_for(d.acquire(), 1)
    assert isinstance(lease.pool, Pool) and d.inflight("10.0.0.1:80") == 1
    lease.release()
    assert d.inflight("10.0.0.1:80") == 0
    await shut(d, lb)


async def test_a_lease_on_an_open_idle_pool_counts_one_in_flight(rng: random.Random) -> None:
    """The second lease on an endpoint whose pool stayed open after the first was released is
    counted from 0: one in flight, and 0 again after its release."""
    d, _ = dispatcher(["10.0.0.1:80"], rng)
    (await asyncio.wait_for(d.acquire(), 1)).release()
    assert "10.0.0.1:80" in d.pools and d.inflight("10.0.0.1:80") == 0
    lease = await asyncio.wait_for(d.acquire(), 1)
    assert d.inflight("10.0.0.1:80") == 1
    second = await asyncio.wait_for(d.acquire(), 1)
    assert d.inflight("10.0.0.1:80") == 2
    lease.release()
    second.release()
    assert d.inflight("10.0.0.1:80") == 0
    await shut(d, d.balancer)


@pytest.mark.parametrize("first_fails", ["refused", "503"])
async def test_a_hedged_send_records_every_endpoint_it_leased(rng: random.Random, first_fails: str) -> None:
    """send(taken=...): the first attempt's endpoint and the retry's both go into ``taken`` (a
    hedge then avoids them), whether the first was refused or answered a status retried on."""
    policy = RetryPolicy(retry_statuses=[503])
    d, adapter = dispatcher(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], rng, retry=policy)
    (await asyncio.wait_for(d.acquire(), 1)).release()  # started; round robin moves on by one
    seen: list[str] = []

    async def refuse_first(lease: Lease[Pool]) -> int:
        seen.append(lease.key)
        if len(seen) == 1:
            if first_fails == "503":
                return 503
            raise Refused("refused")
        return 200

    adapter.attempt_fn = refuse_first
    taken = RaceSide()
    async with asyncio.timeout(1):
        result, lease = await d.send(None, key=None, method="GET", replayable=True, taken=taken)
    lease.release()
    assert result == 200 and len(seen) == 2 and taken.keys == set(seen)
    assert taken.current is lease  # the attempt in flight is the one a hedge would outrun
    await shut(d, d.balancer)


async def test_a_hedge_lease_needs_a_first_attempt_on_a_pod_and_another_pod_left(rng: random.Random) -> None:
    """hedge_lease(): None, with nothing counted (not even a refusal by the budget), while the first
    attempt holds no pod yet and when every eligible endpoint is taken; only then does the budget
    decide (here 0%: refused, and counted as such)."""
    d, _ = dispatcher(["10.0.0.1:80", "10.0.0.2:80"], rng, hedge=HedgePolicy(budget_percent=0))
    counters = d.balancer.counters
    first = await asyncio.wait_for(d.acquire(), 1)
    taken = RaceSide()
    assert d.hedge_lease(None, taken) is None  # the first attempt is still connecting
    taken.add(first)
    other = RaceSide()
    other.add(first)
    second = await asyncio.wait_for(d.acquire(), 1)
    other.add(second)
    assert d.hedge_lease(None, other) is None  # no endpoint left for a hedge
    assert counters.hedge_budget_exhausted == 0 and counters.hedges == 0
    assert d.hedge_lease(None, taken) is None  # another pod is left: the budget refuses
    assert counters.hedge_budget_exhausted == 1 and counters.hedges == 0
    first.release()
    second.release()
    await shut(d, d.balancer)


async def test_a_losing_answer_that_arrived_anyway_is_discarded_and_put_back_cancelled(
    rng: random.Random,
) -> None:
    """A hedged request's losing attempt answered after the winner: its response is discarded
    and its lease put back as CANCELLED (not counted against the pod)."""
    d, adapter = dispatcher(["10.0.0.1:80"], rng, hedge=HedgePolicy())
    discarded: list[int] = []

    async def discard(result: int) -> None:
        discarded.append(result)

    adapter.discard_fn = discard
    lease = await asyncio.wait_for(d.acquire(), 1)
    await asyncio.wait_for(d._drop((200, lease)), 1)
    assert discarded == [200] and lease.released
    assert d.balancer.counters.outcomes[Outcome.CANCELLED] == 1 and d.inflight("10.0.0.1:80") == 0
    await shut(d, d.balancer)


async def test_a_retry_takes_the_algorithms_next_pick(rng: random.Random) -> None:
    """A retry's endpoint is the algorithm's own next pick (round robin moves on by one for it),
    not the least loaded untried endpoint (the last resort after MAX_RETRY_PICKS picks of tried
    ones): a refused request and the two after it go round the four endpoints in turn."""
    keys = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]
    d, _ = dispatcher(keys, rng)
    await asyncio.wait_for(d.balancer.ensure_started(), 1)
    seen: list[str] = []

    async def refuse_first(lease: Lease[Pool]) -> int:
        seen.append(lease.key)
        if len(seen) == 1:
            raise Refused("refused")
        return 200

    for _ in range(3):
        _code, lease = await send(d, refuse_first)
        lease.release()
    ring = [ep.key for ep in d.balancer.eligible]
    start = ring.index(seen[0])
    assert seen == [ring[(start + i) % 4] for i in range(4)]
    assert d.balancer.counters.retries == 1
    await shut(d, d.balancer)
