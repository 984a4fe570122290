"""The outcome seam of LoadBalancer: get(), put(), unget(), the observers, the counters and status()."""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import Iterable

from kube_balance import Endpoint, EndpointPolicy, EndpointSet, LoadBalancer, Outcome, create
from kube_balance.discovery.static import StaticSource
from kube_balance.testing import FakeClock

PENALTY = 7.0  # peak_ewma's failure_penalty here: a failed put() shows as this estimate


class ProtocolOnly:
    """A real round robin behind the bare Algorithm protocol: no total_inflight, no overflowed."""

    name = "protocol_only"
    requires_key = False

    def __init__(self, rng: random.Random) -> None:
        self.inner = create("round_robin", rng=rng)

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        return self.inner.get(key)

    def put(self, endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        self.inner.put(endpoint, elapsed, failed)

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        self.inner.update(endpoints)

    def inflight(self, endpoint: Endpoint | str) -> int:
        return self.inner.inflight(endpoint)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self.inner.endpoints


def ewma_lb(clock: FakeClock, rng: random.Random) -> tuple[LoadBalancer, Endpoint]:
    """A balancer over one endpoint with peak_ewma, whose estimate shows whether put() said failed."""
    lb = LoadBalancer(
        "web.shop:80",
        source=StaticSource(),
        algorithm="peak_ewma",
        algorithm_options={"failure_penalty": PENALTY},
        clock=clock,
        rng=rng,
    )
    lb.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
    return lb, lb.eligible[0]


def test_a_fresh_balancer_counts_nothing(rng: random.Random) -> None:
    """Every counter in status() starts at 0, and an algorithm without overflowed reports 0."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(), rng=rng)
    s = lb.status()
    assert (s.requests, s.outcomes, s.inflight, s.overflowed) == (0, {}, 0, 0)
    assert (s.retries, s.retry_budget_exhausted, s.fallback_requests) == (0, 0, 0)
    assert (s.unclosed_responses, s.source_restarts, lb.unclosed_responses) == (0, 0, 0)
    assert lb.counters.outcomes == [0] * (len(Outcome) + 1)


def test_every_outcome_is_counted_once_under_its_label(rng: random.Random) -> None:
    """One put() of each of the ten outcomes: ten requests, each label once, nothing in flight."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(), rng=rng)
    lb.on_endpoints(EndpointSet.of(["10.0.0.1:80", "10.0.0.2:80"]))
    seen: list[Outcome] = []
    lb.add_observer(lambda ep, elapsed, outcome, status, ra: seen.append(outcome))
    for outcome in Outcome:
        ep = lb.get()
        assert ep is not None
        lb.put(ep, 0.01, outcome=outcome)
    s = lb.status()
    assert seen == list(Outcome)
    assert s.requests == len(Outcome) == 10 and s.inflight == 0
    assert s.outcomes == {o.label: 1 for o in Outcome}


def test_the_algorithm_is_told_failed_by_the_outcome(clock: FakeClock, rng: random.Random) -> None:
    """put() tells the algorithm failed= from the outcome, ignoring failed=; without an outcome,
    failed=True is a server error and failed=False an ok."""
    lb, ep = ewma_lb(clock, rng)
    assert lb.algorithm.ewma(ep) != PENALTY  # type: ignore[attr-defined]
    for failed, outcome, penalized in [
        (False, Outcome.RESET, True),
        (True, Outcome.OK, False),
        (True, Outcome.CANCELLED, False),
        (False, Outcome.ERROR, True),
        (True, None, True),
        (False, None, False),
    ]:
        lb, ep = ewma_lb(clock, rng)
        assert lb.get() == ep
        lb.put(ep, 0.001, failed, outcome)
        assert (lb.algorithm.ewma(ep) == PENALTY) is penalized, (failed, outcome)  # type: ignore[attr-defined]
        assert lb.algorithm.inflight(ep) == 0
        expected = outcome or (Outcome.SERVER_ERROR if failed else Outcome.OK)
        assert lb.status().outcomes == {expected.label: 1}


def test_unget_gives_the_pick_back_unobserved(clock: FakeClock, rng: random.Random) -> None:
    """unget(): the endpoint is no longer in flight, but no request is counted, observed or failed."""
    lb, ep = ewma_lb(clock, rng)
    before = lb.algorithm.ewma(ep)  # type: ignore[attr-defined]
    seen: list[Outcome] = []
    lb.add_observer(lambda ep, elapsed, outcome, status, ra: seen.append(outcome))
    assert lb.get() == ep and lb.status().inflight == 1
    lb.unget(ep)
    s = lb.status()
    assert (s.inflight, s.requests, s.outcomes, seen) == (0, 0, {}, [])
    assert lb.algorithm.ewma(ep) == before != PENALTY  # type: ignore[attr-defined]


def test_removing_an_observer_removes_that_one_only(rng: random.Random) -> None:
    """Each remover takes out its own observer; the others keep hearing every put()."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(), rng=rng)
    lb.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
    heard: dict[str, list[Outcome]] = {"a": [], "b": []}
    remove_a = lb.add_observer(lambda ep, el, outcome, st, ra: heard["a"].append(outcome))
    remove_b = lb.add_observer(lambda ep, el, outcome, st, ra: heard["b"].append(outcome))
    ep = lb.get()
    assert ep is not None
    lb.put(ep, outcome=Outcome.OK)
    remove_a()
    assert lb.get() == ep
    lb.put(ep, outcome=Outcome.TIMEOUT)
    remove_b()
    assert lb.get() == ep
    lb.put(ep, outcome=Outcome.RESET)
    assert heard == {"a": [Outcome.OK], "b": [Outcome.OK, Outcome.TIMEOUT]}
    assert lb.status().requests == 3


def test_observers_hear_endpoint_elapsed_status_and_retry_after(rng: random.Random) -> None:
    """An observer is called with exactly what put() was given."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(), rng=rng)
    lb.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
    heard: list[tuple[object, ...]] = []
    lb.add_observer(lambda *args: heard.append(args))
    ep = lb.get()
    assert ep is not None
    lb.put(ep, 0.25, True, Outcome.OVERLOADED, 429, 3.0)
    assert heard == [(ep, 0.25, Outcome.OVERLOADED, 429, 3.0)]


def test_status_inflight_from_the_algorithm_or_zero(rng: random.Random) -> None:
    """status().inflight is the algorithm's total_inflight(), 0 for an algorithm without one."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(), rng=rng)
    lb.on_endpoints(EndpointSet.of(["10.0.0.1:80", "10.0.0.2:80"]))
    picks = [lb.get(), lb.get(), lb.get()]
    assert lb.status().inflight == 3
    plain = LoadBalancer("web.shop:80", source=StaticSource(), algorithm=ProtocolOnly(rng), rng=rng)
    plain.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
    assert plain.get() is not None
    s = plain.status()
    assert (s.inflight, s.overflowed, s.algorithm) == (0, 0, "protocol_only")
    for ep in picks:
        assert ep is not None
        lb.put(ep)
    assert lb.status().inflight == 0


def test_a_quiet_observer_hears_ok_only_when_it_asks(rng: random.Random) -> None:
    """add_observer(quiet=True): every outcome but OK reaches it; set_quiet(False) brings OK back,
    set_quiet(True) takes it away again; a plain observer hears everything throughout."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(), rng=rng, policy=EndpointPolicy([]))
    lb.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
    heard: dict[str, list[Outcome]] = {"quiet": [], "plain": []}

    def quiet(ep: Endpoint, el: float | None, outcome: Outcome, st: int | None, ra: float | None) -> None:
        heard["quiet"].append(outcome)

    lb.add_observer(quiet, quiet=True)
    lb.add_observer(lambda ep, el, outcome, st, ra: heard["plain"].append(outcome))
    ep = lb.eligible[0]
    steps = ((Outcome.OK, None), (Outcome.RESET, None), (Outcome.OK, False), (Outcome.OK, True))
    for outcome, quiet_now in steps:
        if quiet_now is not None:
            lb.set_quiet(quiet, quiet_now)
        assert lb.get() == ep
        lb.put(ep, outcome=outcome)
    assert heard["quiet"] == [Outcome.RESET, Outcome.OK]
    assert heard["plain"] == [Outcome.OK, Outcome.RESET, Outcome.OK, Outcome.OK]


def test_removing_a_quiet_observer_and_unhashable_observers(rng: random.Random) -> None:
    """A removed quiet observer hears nothing, even after set_quiet(False); observers that cannot
    be hashed (an object with __eq__ and no __hash__) are added, quietened and removed alike."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(), rng=rng, policy=EndpointPolicy([]))
    lb.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __init__(self) -> None:
            self.heard: list[Outcome] = []

        def __eq__(self, other: object) -> bool:
            return self is other

        def __call__(self, ep: Endpoint, el: float | None, outcome: Outcome, *rest: object) -> None:
            self.heard.append(outcome)

    a, b = Unhashable(), Unhashable()
    remove_a = lb.add_observer(a, quiet=True)
    lb.add_observer(b, quiet=True)
    ep = lb.eligible[0]
    lb.set_quiet(b, False)
    remove_a()
    lb.set_quiet(a, False)
    for outcome in (Outcome.OK, Outcome.TIMEOUT):
        assert lb.get() == ep
        lb.put(ep, outcome=outcome)
    assert (a.heard, b.heard) == ([], [Outcome.OK, Outcome.TIMEOUT])
    for quiet in (True, False):  # the balancer keeps no reference to a removed observer
        c = Unhashable()
        gone = weakref.ref(c)
        lb.add_observer(c, quiet=quiet)()
        del c
        gc.collect()
        assert gone() is None, quiet
