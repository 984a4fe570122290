"""Hedged requests through aiohttp: BalancedMiddleware sends the hedge, the connector alone cannot."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random

import aiohttp
import pytest
from helpers_pods import SERVICE_HOST, Pod, running_pods, scripted_pods

from kube_balance import ConfigurationError, HedgePolicy, LoadBalancer, Outcome
from kube_balance.discovery.static import StaticSource
from kube_balance.integrations.aiohttp import BalancedConnector, BalancedMiddleware
from kube_balance.testing import FakeClock

URL = f"http://{SERVICE_HOST}"
ALWAYS = HedgePolicy(delay=0.05, budget_percent=1.0, budget_max=1)

MIDDLEWARES = "middlewares" in inspect.signature(aiohttp.ClientSession.__init__).parameters
pytestmark = pytest.mark.skipif(not MIDDLEWARES, reason="client middlewares need aiohttp >= 3.12")


def connector_for(pods: list[Pod], rng: random.Random, hedge: HedgePolicy = ALWAYS) -> BalancedConnector:
    source = StaticSource([p.key for p in pods])
    return BalancedConnector("web.shop:http", source=source, algorithm="round_robin", hedge=hedge, rng=rng)


def session_for(connector: BalancedConnector) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=connector, middlewares=(BalancedMiddleware(connector),))


def settled(connector: BalancedConnector) -> None:
    """Every pick put back: the algorithm's in-flight count at 0, no connection still leased."""
    assert connector.balancers[0].algorithm.total_inflight() == 0  # type: ignore[attr-defined]
    assert not connector._routes.routes[0].open


async def next_pick(session: aiohttp.ClientSession) -> int:
    """Where round robin goes next (of two pods), learned with a POST: never hedged, one pick."""
    async with session.post(f"{URL}/echo", data=b"x") as r:
        return 1 if (await r.json())["pod"] == "pod-0" else 0


async def test_a_slow_first_pod_is_hedged_and_the_hedge_wins(
    rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """pod-0 takes 5 s: requests picked for it are hedged to pod-1 after 50 ms and answered from
    there; the slow attempt is cancelled and put back once, as SLOW (a hedge outran it). No
    warning about a missing middleware: it is there."""
    caplog.set_level(logging.WARNING, logger="kube_balance")
    async with running_pods(2) as pods, asyncio.timeout(10):
        pods[0].delay = 5.0
        connector = connector_for(pods, rng)
        seen: list[tuple[str, Outcome, float | None]] = []
        connector.balancers[0].add_observer(
            lambda ep, elapsed, outcome, s, ra: seen.append((ep.key, outcome, elapsed))
        )
        async with session_for(connector) as session:
            answers = []
            for _ in range(6):
                async with session.get(f"{URL}/") as r:
                    answers.append((await r.json())["pod"])
            settled(connector)
            status = connector.balancers[0].status()
    assert answers == ["pod-1"] * 6
    assert status.hedges == pods[0].arrived >= 1 and pods[1].arrived == 6
    assert status.outcomes["ok"] == 6 and status.outcomes["slow"] >= 1  # see the httpx test
    assert status.outcomes["slow"] + status.outcomes.get("cancelled", 0) == status.hedges
    assert status.inflight == 0 and status.retries == 0
    assert not [r for r in caplog.records if "BalancedMiddleware" in r.getMessage()]
    losers = [(k, e) for k, o, e in seen if o in (Outcome.SLOW, Outcome.CANCELLED)]
    assert len(losers) == status.hedges and all(
        k == pods[0].key and e is not None and e > 0 for k, e in losers
    )


async def test_a_put_with_a_bytes_body_is_hedged_whole(rng: random.Random) -> None:
    """The hedge is a copy of the request: a PUT's bytes body reaches the hedge's pod whole."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        connector = connector_for(pods, rng)
        async with session_for(connector) as session:
            slow = await next_pick(session)
            pods[slow].delay = 5.0
            async with session.put(f"{URL}/echo", data=b"0123456789") as r:
                answer = await r.json()
            settled(connector)
            status = connector.balancers[0].status()
    assert answer == {"pod": f"pod-{1 - slow}", "host": SERVICE_HOST, "cookie": None, "length": 10}
    assert status.hedges == 1 and status.outcomes == {"ok": 2, "slow": 1}


async def test_posts_are_never_hedged(rng: random.Random) -> None:
    """A POST waits for the slow pod; a GET in the same setup is hedged (so this can fail)."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        connector = connector_for(pods, rng)
        async with session_for(connector) as session:
            slow = await next_pick(session)
            pods[slow].delay = 0.3
            async with session.post(f"{URL}/", data=b"x") as r:
                assert (await r.json())["pod"] == f"pod-{slow}"
            assert connector.balancers[0].status().hedges == 0
            pods[1 - slow].delay = 0.3  # both slow: the GET is hedged whichever pod it picks
            async with session.get(f"{URL}/") as r:
                assert r.status == 200
            settled(connector)
            status = connector.balancers[0].status()
    assert status.hedges == 1 and status.outcomes == {"ok": 3, "cancelled": 1}


async def test_the_budget_caps_hedges_exactly(rng: random.Random) -> None:
    """Both pods slow, a 25% budget with 1 saved: the 4th, 8th and 12th requests are hedged."""
    async with running_pods(2) as pods, asyncio.timeout(20):
        pods[0].delay = pods[1].delay = 0.08
        connector = connector_for(pods, rng, HedgePolicy(delay=0.01, budget_percent=0.25, budget_max=1))
        async with session_for(connector) as session:
            hedged = []
            for _ in range(12):
                before = connector.balancers[0].status().hedges
                async with session.get(f"{URL}/") as r:
                    assert r.status == 200
                hedged.append(connector.balancers[0].status().hedges - before)
            settled(connector)
            status = connector.balancers[0].status()
    assert hedged == [0, 0, 0, 1] * 3
    assert status.hedges == 3 and status.hedge_budget_exhausted == 9
    assert pods[0].arrived + pods[1].arrived == 15
    # Each loser is cancelled (CANCELLED; SLOW for a first attempt a hedge outran) unless its
    # answer, 10 ms behind, came in first on a loaded machine: then it is put as the OK it was.
    # Either way, one put() per attempt.
    assert status.outcomes.keys() <= {"ok", "cancelled", "slow"}
    assert status.outcomes["ok"] >= 12 and sum(status.outcomes.values()) == 15


async def test_the_winners_body_streams_after_the_loser_is_cancelled(rng: random.Random) -> None:
    """A streamed answer from the hedge: the loser is put back as SLOW while the winner's
    body is open (one lease held), and the body then arrives whole."""
    async with running_pods(2) as pods, asyncio.timeout(10):
        connector = connector_for(pods, rng)
        async with session_for(connector) as session:
            slow = await next_pick(session)
            pods[slow].delay = 5.0
            async with session.get(f"{URL}/stream") as r:
                assert await r.content.readexactly(6) == b"first;"
                status = connector.balancers[0].status()
                assert status.hedges == 1 and status.outcomes == {"ok": 1, "slow": 1}
                assert connector.balancers[0].algorithm.total_inflight() == 1  # type: ignore[attr-defined]
                pods[1 - slow].gate.set()
                assert await r.content.read() == b"last"
            settled(connector)
            status = connector.balancers[0].status()
    assert status.outcomes == {"ok": 2, "slow": 1} and status.inflight == 0


async def test_the_connector_alone_does_not_hedge(
    rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the middleware the policy cannot act (the connector only hands out connections):
    a GET to the slow pod waits for it. It says so, once (it used to be silent)."""
    caplog.set_level(logging.WARNING, logger="kube_balance")
    async with running_pods(2) as pods, asyncio.timeout(10):
        connector = connector_for(pods, rng)
        async with aiohttp.ClientSession(connector=connector) as session:
            slow = await next_pick(session)
            pods[slow].delay = 0.3
            async with session.get(f"{URL}/") as r:
                assert (await r.json())["pod"] == f"pod-{slow}"
            status = connector.balancers[0].status()
    assert status.hedges == 0 and status.outcomes == {"ok": 2}
    (warning,) = [r.getMessage() for r in caplog.records if "BalancedMiddleware" in r.getMessage()]
    assert warning.startswith(
        "web.shop:http: BalancedConnector(hedge=...) hedges only through BalancedMiddleware"
    )
    assert "middlewares=(BalancedMiddleware(connector),)" in warning


async def test_the_connector_refuses_a_hedge_that_is_not_a_policy() -> None:
    """hedge= takes a HedgePolicy: anything else is a ConfigurationError naming the option."""
    with pytest.raises(
        ConfigurationError, match=r"BalancedConnector hedge=True is invalid: expected a HedgePolicy"
    ):
        BalancedConnector("web.shop:http", source=StaticSource(["127.0.0.1:1"]), hedge=True)  # type: ignore[arg-type]


async def test_least_request_keeps_away_from_a_pod_a_hedge_outran_until_slow_time_passes(
    rng: random.Random, clock: FakeClock
) -> None:
    """As with httpx: the first request on the 5 s pod is outrun by its hedge (SLOW), the pod is
    penalised for 5 s on the balancer's clock and gets nothing; once the time is up and it answers
    fast again, it gets its share back. One put() per attempt, the budget exact."""
    async with running_pods(3) as pods, asyncio.timeout(30):
        pods[0].delay = 5.0
        lb = LoadBalancer("web.shop:http", source=StaticSource([p.key for p in pods]), rng=rng, clock=clock)
        connector = BalancedConnector(lb, hedge=HedgePolicy(delay=0.5, budget_percent=1.0, budget_max=1))

        async def pod_of_next() -> str:
            async with session.get(f"{URL}/") as r:
                return str((await r.json())["pod"])

        async with lb, session_for(connector) as session:
            sent = 0
            while pods[0].arrived == 0:  # least_request ties: pod-0 is picked about 1 time in 3
                assert sent < 60
                assert await pod_of_next() != "pod-0"
                sent += 1
            assert lb.status().penalized == {pods[0].key: clock() + 5.0}
            for _ in range(20):
                assert await pod_of_next() != "pod-0"
            assert pods[0].arrived == 1
            pods[0].delay = 0.0
            clock.advance(5.0)
            back = 0
            while pods[0].arrived == 1:  # the next outcome ends the penalty
                assert back < 60
                await pod_of_next()
                back += 1
            settled(connector)
            status = lb.status()
            hedging = connector._routes.routes[0].dispatcher.hedging
    total = sent + 20 + back
    assert status.penalized == {} and status.hedges == 1 and status.hedge_budget_exhausted == 0
    assert status.outcomes == {"ok": total, "slow": 1} and status.requests == total + 1
    assert hedging is not None and hedging.budget.exhausted == 0 and hedging.budget.balance == 1_000_000


async def test_a_first_attempt_retried_after_the_hedge_avoids_the_hedges_pod(rng: random.Random) -> None:
    """As with httpx: each of 6 requests' first attempt is dropped by its pod after the hedge
    went to another, slow, pod; the retry (aiohttp's own or the middleware's) avoids the hedge's
    pod, lands on the third and wins. Every attempt of a request on a pod of its own."""
    requests = 6
    script = [("drop", 0.4), ("answer", 2.0), ("answer", 0.0)] * requests  # first, hedge, retry
    async with scripted_pods(3, script) as (keys, arrivals), asyncio.timeout(20):
        source = StaticSource(keys)
        connector = BalancedConnector(
            "web.shop:http", source=source, algorithm="random", hedge=ALWAYS, rng=rng
        )
        async with session_for(connector) as session:
            answers = []
            for _ in range(requests):
                async with session.get(f"{URL}/") as r:
                    answers.append(await r.json())
            settled(connector)
            status = connector.balancers[0].status()
    triples = [arrivals[i : i + 3] for i in range(0, len(arrivals), 3)]
    assert len(arrivals) == 3 * requests and all(len(set(t)) == 3 for t in triples), triples
    assert [a["arrival"] for a in answers] == [3 * i + 2 for i in range(requests)]
    assert status.hedges == requests and status.inflight == 0
    assert status.outcomes == {"reset": requests, "ok": requests, "cancelled": requests}


async def test_a_total_timeout_of_a_hedged_request_says_which_pods_it_waited_for(rng: random.Random) -> None:
    """Both pods hang: aiohttp's total timeout raises its bare TimeoutError() from the
    cancellation, outside the middleware; that cancellation carries a note naming the Service and
    both pods the hedged request waited for (shown in the traceback), and both picks are put back."""
    async with (
        scripted_pods(2, [("answer", 30.0), ("answer", 30.0)]) as (keys, arrivals),
        asyncio.timeout(10),
    ):
        source = StaticSource(keys)
        connector = BalancedConnector(
            "web.shop:http", source=source, algorithm="round_robin", hedge=ALWAYS, rng=rng
        )
        async with session_for(connector) as session:
            with pytest.raises(asyncio.TimeoutError) as info:
                await session.get(f"{URL}/", timeout=aiohttp.ClientTimeout(total=0.4))
            cause = info.value.__cause__
            assert isinstance(cause, asyncio.CancelledError)
            assert cause.__notes__ == [
                f"kube-balance: the hedged request to web.shop:http was cancelled waiting for {', '.join(sorted(keys))}"
            ]
            assert sorted(arrivals) == sorted(keys)
            settled(connector)


async def test_a_hedged_request_cancelled_before_any_pick_says_so() -> None:
    """No pod known yet (the source has said nothing): the timeout's note says the request was
    waiting for a connection, and no pick was taken."""

    class Silent(StaticSource):
        async def run(self, sink: object) -> None:
            await asyncio.Event().wait()

    lb = LoadBalancer("web.shop:http", source=Silent([]), startup_timeout=30)
    async with asyncio.timeout(10):
        connector = BalancedConnector(lb, hedge=ALWAYS)
        async with session_for(connector) as session:
            with pytest.raises(asyncio.TimeoutError) as info:
                await session.get(f"{URL}/", timeout=aiohttp.ClientTimeout(total=0.2))
            cause = info.value.__cause__
            assert isinstance(cause, asyncio.CancelledError)
            assert cause.__notes__ == [
                "kube-balance: the hedged request to web.shop:http was cancelled waiting for a connection"
            ]
            settled(connector)
        await lb.aclose()
