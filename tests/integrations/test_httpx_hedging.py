"""Hedged requests through BalancedTransport: real pods on 127.0.0.1, one of them slow."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import httpx
import pytest
from helpers_pods import SERVICE_HOST, Pod, running_pods, scripted_pods

from kube_balance import ConfigurationError, HedgePolicy, LoadBalancer, Outcome
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.httpx import BalancedTransport
from kube_balance.testing import FakeClock

URL = f"http://{SERVICE_HOST}"
ALWAYS = HedgePolicy(delay=0.05, budget_percent=1.0, budget_max=1)
"""A hedge after 50 ms, and the budget for one on every request (tests that count hedges)."""


def transport_for(pods: list[Pod], rng: random.Random, hedge: HedgePolicy = ALWAYS) -> BalancedTransport:
    source = StaticSource([p.key for p in pods])
    return BalancedTransport("web.shop:http", source=source, algorithm="round_robin", hedge=hedge, rng=rng)


def inflight(transport: BalancedTransport) -> int:
    return int(transport.balancer.algorithm.total_inflight())  # type: ignore[attr-defined]


def settled(transport: BalancedTransport, pods: list[Pod]) -> None:
    """Every pick put back (the loser before the winner's response is returned): the algorithm's
    and the dispatcher's in-flight counts at 0."""
    assert inflight(transport) == 0
    assert [transport.dispatcher.inflight(p.key) for p in pods] == [0] * len(pods)


async def next_pick(client: httpx.AsyncClient) -> str:
    """Send one request and return where round robin goes next (the other of two pods): a POST,
    never hedged, so it takes exactly one pick even when a slow machine delays its answer."""
    r = await client.post(f"{URL}/echo", content=b"x")
    return "pod-1" if r.json()["pod"] == "pod-0" else "pod-0"


async def test_a_slow_first_pod_is_hedged_and_the_hedge_wins(rng: random.Random) -> None:
    """pod-0 takes 5 s: every request picked for it is hedged to pod-1 after 50 ms and answered
    from there; the slow attempt is cancelled, put() once as SLOW (a hedge outran it) with the
    time it waited (for latency-aware algorithms), nothing left in flight."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        pods[0].delay = 5.0
        transport = transport_for(pods, rng)
        seen: list[tuple[str, Outcome, float | None]] = []
        transport.balancer.add_observer(
            lambda ep, elapsed, outcome, s, ra: seen.append((ep.key, outcome, elapsed))
        )
        async with httpx.AsyncClient(transport=transport) as client:
            answers = [(await client.get(f"{URL}/")).json()["pod"] for _ in range(6)]
            settled(transport, pods)
            status = transport.balancer.status()
    assert answers == ["pod-1"] * 6
    assert pods[0].arrived >= 1  # round robin sends at least one of the first two to pod-0
    assert status.hedges == pods[0].arrived  # each request that reached pod-0 was hedged, once
    assert pods[1].arrived == 6  # the hedges went to the other pod, never to pod-0 again
    # A first attempt on pod-0 is outrun by its hedge (SLOW); on a loaded machine a first
    # attempt on pod-1 may be slower than 50 ms too, and then its hedge to pod-0 loses (CANCELLED).
    assert status.outcomes["ok"] == 6 and status.outcomes["slow"] >= 1
    assert status.outcomes["slow"] + status.outcomes.get("cancelled", 0) == status.hedges
    assert status.requests == 6 + status.hedges and status.inflight == 0
    assert status.retries == 0 and status.hedge_budget_exhausted == 0
    losers = [(k, e) for k, o, e in seen if o in (Outcome.SLOW, Outcome.CANCELLED)]
    assert len(losers) == status.hedges and all(
        k == pods[0].key and e is not None and e > 0 for k, e in losers
    )


async def test_a_fast_first_attempt_sends_no_hedge(rng: random.Random) -> None:
    """Both pods answer at once: no request waits 50 ms, so no hedge is sent."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        transport = transport_for(pods, rng, HedgePolicy(delay=2.0, budget_percent=1.0, budget_max=1))
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(10):
                assert (await client.get(f"{URL}/")).status_code == 200
            status = transport.balancer.status()
    assert status.hedges == 0 and status.outcomes == {"ok": 10}
    assert pods[0].arrived + pods[1].arrived == 10


async def test_non_idempotent_and_streamed_bodies_are_never_hedged(rng: random.Random) -> None:
    """POST (not idempotent) and a PUT with a streamed body (not replayable) wait for the slow pod;
    a GET in the same setup is hedged (so this test can fail)."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        transport = transport_for(pods, rng)
        async with httpx.AsyncClient(transport=transport) as client:
            slow = await next_pick(client)
            pods[int(slow[-1])].delay = 0.3

            async def body() -> AsyncIterator[bytes]:
                yield b"streamed"

            post = await client.post(f"{URL}/echo", content=b"x")  # first pick: the slow pod
            assert post.json()["pod"] == slow
            assert transport.balancer.status().hedges == 0
            put = await client.put(f"{URL}/echo", content=body())  # round robin: the fast pod
            pods[0].delay = pods[1].delay = 0.3  # both slow now: the streamed PUT would be hedged
            put = await client.put(f"{URL}/echo", content=body())
            assert put.json()["length"] == 8
            assert transport.balancer.status().hedges == 0
            get = await client.get(f"{URL}/")
            assert get.status_code == 200
            settled(transport, pods)
            status = transport.balancer.status()
    assert status.hedges == 1  # the GET, and only it
    assert status.outcomes == {"ok": 5, "cancelled": 1}


async def test_the_budget_caps_hedges_exactly(rng: random.Random) -> None:
    """Both pods slow (every request could be hedged), 25% budget, at most 1 saved: of 12
    requests, the 4th, 8th and 12th are hedged, 9 hedges are refused and counted."""
    async with running_pods(2) as pods, asyncio.timeout(20):
        pods[0].delay = pods[1].delay = 0.08
        hedge = HedgePolicy(delay=0.01, budget_percent=0.25, budget_max=1)
        transport = transport_for(pods, rng, hedge)
        async with httpx.AsyncClient(transport=transport) as client:
            hedged = []
            for _ in range(12):
                before = transport.balancer.status().hedges
                assert (await client.get(f"{URL}/")).status_code == 200
                hedged.append(transport.balancer.status().hedges - before)
            settled(transport, pods)
            status = transport.balancer.status()
    assert hedged == [0, 0, 0, 1] * 3
    assert status.hedges == 3 and status.hedge_budget_exhausted == 9
    assert pods[0].arrived + pods[1].arrived == 15
    assert status.outcomes == {"ok": 12, "cancelled": 3}  # the first attempt answered first
    assert transport.dispatcher.hedging is not None
    assert transport.dispatcher.hedging.budget.exhausted == 9


async def test_a_hedge_never_goes_to_the_same_pod(rng: random.Random) -> None:
    """One slow pod and no other: no hedge is sent (it would only load the same pod twice)."""
    async with running_pods(1) as pods, asyncio.timeout(10):
        pods[0].delay = 0.15
        transport = transport_for(pods, rng)
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):
                assert (await client.get(f"{URL}/")).json()["pod"] == "pod-0"
            status = transport.balancer.status()
    assert status.hedges == 0 and pods[0].arrived == 3
    assert status.outcomes == {"ok": 3}


async def test_the_winners_body_streams_after_the_loser_is_cancelled(rng: random.Random) -> None:
    """A streamed response from the hedge: the slow attempt is put back as SLOW while the
    winner's body is still open (one lease held), and the body arrives whole afterwards."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        transport = transport_for(pods, rng)
        async with httpx.AsyncClient(transport=transport) as client:
            slow = await next_pick(client)
            fast = pods[1 - int(slow[-1])]
            pods[int(slow[-1])].delay = 5.0
            async with client.stream("GET", f"{URL}/stream") as r:
                chunks = r.aiter_raw()
                assert await anext(chunks) == b"first;"
                status = transport.balancer.status()
                assert status.hedges == 1 and status.outcomes == {"ok": 1, "slow": 1}
                assert inflight(transport) == 1  # the winner's stream only
                fast.gate.set()
                assert b"".join([c async for c in chunks]) == b"last"
            settled(transport, pods)
            status = transport.balancer.status()
    assert status.outcomes == {"ok": 2, "slow": 1} and status.inflight == 0


async def test_a_percentile_delay_follows_the_service(rng: random.Random) -> None:
    """With no fixed delay, the delay is the default until min_samples answers were seen, then
    the p90 of recent successful attempts (at least min_delay)."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        hedge = HedgePolicy(percentile=90, default_delay=0.5, min_delay=0.02, window=16, min_samples=16)
        transport = transport_for(pods, rng, hedge)
        hedging = transport.dispatcher.hedging
        assert hedging is not None
        async with httpx.AsyncClient(transport=transport) as client:
            assert hedging.delay() == 0.5
            for _ in range(16):
                await client.get(f"{URL}/")
            assert hedging.latency is not None and len(hedging.latency) == 16
            assert hedging.delay() == max(0.02, hedging.latency.value or 0)
            assert hedging.delay() < 0.5
        await transport.aclose()
        assert hedging.latency not in transport.balancer._observers  # removed on close


async def test_the_transport_refuses_a_hedge_that_is_not_a_policy() -> None:
    """hedge= takes a HedgePolicy: anything else is a ConfigurationError naming the option."""
    with pytest.raises(
        ConfigurationError, match=r"BalancedTransport hedge=0\.05 is invalid: expected a HedgePolicy"
    ):
        BalancedTransport("web.shop:http", source=StaticSource(["127.0.0.1:1"]), hedge=0.05)  # type: ignore[arg-type]


async def test_a_shared_balancer_counts_hedges_in_its_status(rng: random.Random) -> None:
    """A LoadBalancer given to the transport: its status() shows the hedges, and a retry budget
    is untouched by them."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        pods[0].delay = 5.0
        lb = LoadBalancer(
            "web.shop:http", source=StaticSource([p.key for p in pods]), algorithm="round_robin", rng=rng
        )
        async with lb, BalancedTransport(lb, hedge=ALWAYS) as transport:
            async with httpx.AsyncClient(transport=transport) as client:
                for _ in range(4):
                    assert (await client.get(f"{URL}/")).json()["pod"] == "pod-1"
            settled(transport, pods)
            # Every attempt that reached the slow pod was hedged (as a first attempt) or was a
            # hedge; one cancelled before it got there (a loaded machine) is a hedge all the same.
            assert lb.status().hedges >= pods[0].arrived >= 1
            assert transport.dispatcher.budget.retries == 0 and transport.dispatcher.budget.active == 0


async def test_least_request_keeps_away_from_a_pod_a_hedge_outran_until_slow_time_passes(
    rng: random.Random, clock: FakeClock
) -> None:
    """The default algorithm, least_request, cannot see latency: the first request that lands on
    the 5 s pod is outrun by its hedge (put() as SLOW), the pod is penalised for 5 s on the
    balancer's clock and no request (nor hedge) reaches it; once the time is up and it answers
    fast again, it gets its share back. One put() per attempt, the budget exact."""
    async with running_pods(3) as pods, asyncio.timeout(30):
        pods[0].delay = 5.0
        lb = LoadBalancer("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng, clock=clock)
        policy = HedgePolicy(delay=0.5, budget_percent=1.0, budget_max=1)
        transport = BalancedTransport(lb, hedge=policy)
        async with lb, httpx.AsyncClient(transport=transport) as client:
            sent = 0
            while pods[0].arrived == 0:  # least_request ties: pod-0 is picked about 1 time in 3
                assert sent < 60
                assert (await client.get(f"{URL}/")).json()["pod"] != "pod-0"
                sent += 1
            assert lb.status().penalized == {pods[0].key: clock() + 5.0}
            for _ in range(20):
                assert (await client.get(f"{URL}/")).json()["pod"] != "pod-0"
            assert pods[0].arrived == 1
            pods[0].delay = 0.0
            clock.advance(5.0)
            back = 0
            while pods[0].arrived == 1:  # the next outcome ends the penalty
                assert back < 60
                await client.get(f"{URL}/")
                back += 1
            settled(transport, pods)
            status = lb.status()
            hedging = transport.dispatcher.hedging
    total = sent + 20 + back
    assert status.penalized == {} and status.hedges == 1 and status.hedge_budget_exhausted == 0
    assert status.outcomes == {"ok": total, "slow": 1} and status.requests == total + 1
    assert hedging is not None and hedging.budget.exhausted == 0
    assert hedging.budget.balance == 1_000_000  # saved up to budget_max again


async def test_a_first_attempt_retried_after_the_hedge_avoids_the_hedges_pod(rng: random.Random) -> None:
    """Each of 6 requests: its first attempt's pod drops the connection after the hedge went to
    another pod, which is slow. The retry goes to the third pod (a load-blind pick, here
    ``random``, would take the hedge's own pod about half the time: a third copy on a pod already
    slow to answer), answers first and wins; every attempt of a request on a pod of its own."""
    requests = 6
    script = [("drop", 0.4), ("answer", 2.0), ("answer", 0.0)] * requests  # first, hedge, retry
    async with scripted_pods(3, script) as (keys, arrivals), asyncio.timeout(20):
        transport = BalancedTransport(
            "web.shop:http", source=StaticSource(keys), algorithm="random", hedge=ALWAYS, rng=rng
        )
        async with httpx.AsyncClient(transport=transport) as client:
            answers = [(await client.get(f"{URL}/")).json() for _ in range(requests)]
            status = transport.balancer.status()
    triples = [arrivals[i : i + 3] for i in range(0, len(arrivals), 3)]
    assert len(arrivals) == 3 * requests and all(len(set(t)) == 3 for t in triples), triples
    assert [a["arrival"] for a in answers] == [3 * i + 2 for i in range(requests)]
    assert status.hedges == status.retries == requests and status.inflight == 0
    assert status.outcomes == {"reset": requests, "ok": requests, "cancelled": requests}


async def test_a_retry_goes_to_the_hedges_pod_only_when_no_other_is_left(rng: random.Random) -> None:
    """Two pods: the first attempt's pod drops the connection after the hedge went to the other;
    no third pod, so the first side has nowhere to retry but the hedge's pod (as before): the
    request is still answered, by one of the two attempts there."""
    script = [("drop", 0.4), ("answer", 0.8)]
    async with scripted_pods(2, script) as (keys, arrivals), asyncio.timeout(10):
        transport = BalancedTransport(
            "web.shop:http", source=StaticSource(keys), algorithm="random", hedge=ALWAYS, rng=rng
        )
        async with httpx.AsyncClient(transport=transport) as client:
            r = await client.get(f"{URL}/")
            status = transport.balancer.status()
    assert r.status_code == 200 and arrivals[1] == arrivals[2] != arrivals[0]
    assert status.hedges == 1 and status.retries == 1 and status.inflight == 0
