"""EndpointPolicy: which endpoints get traffic (kube-proxy's rule, then any further filters)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from kube_balance import (
    ConfigurationError,
    Endpoint,
    EndpointSet,
    LoadBalancer,
    Outcome,
    OutlierDetector,
    OverloadPenalty,
    SlowStart,
    Subset,
    ZoneAware,
)
from kube_balance._policy import EndpointFilter, EndpointPolicy, ready_else_serving_terminating
from kube_balance.discovery.static import StaticSource
from kube_balance.testing import FakeClock


def ep(n: int, **conditions: bool) -> Endpoint:
    return Endpoint(f"10.0.0.{n}", 8080, **conditions)  # type: ignore[arg-type]


def test_ready_endpoints_only_when_any_is_ready() -> None:
    """Ready endpoints win; terminating and not-ready ones get nothing."""
    snap = EndpointSet(
        (ep(1), ep(2, ready=False, terminating=True), ep(3, ready=False, serving=False), ep(4))
    )
    assert EndpointPolicy().select(snap) == (ep(1), ep(4))


def test_serving_terminating_when_none_is_ready() -> None:
    """With no ready endpoint, serving-and-terminating ones serve (kube-proxy's fallback)."""
    snap = EndpointSet(
        (
            ep(1, ready=False, terminating=True),
            ep(2, ready=False, serving=False, terminating=True),
            ep(3, ready=False),
        )
    )
    assert EndpointPolicy().select(snap) == (ep(1, ready=False, terminating=True),)


def test_nothing_usable_gives_nothing() -> None:
    """Only not-ready, not-serving endpoints (or none at all): an empty selection."""
    assert EndpointPolicy().select(EndpointSet((ep(1, ready=False, serving=False),))) == ()
    assert EndpointPolicy().select(EndpointSet()) == ()


def test_filters_run_in_order_on_the_previous_output() -> None:
    """A later filter (say, zone preference) narrows what the kube-proxy rule kept."""
    seen: list[tuple[Endpoint, ...]] = []

    def even_only(snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        seen.append(candidates)
        return tuple(e for e in candidates if int(e.address.rsplit(".", 1)[1]) % 2 == 0)

    policy = EndpointPolicy([ready_else_serving_terminating, even_only])
    snap = EndpointSet((ep(1), ep(2), ep(3, ready=False), ep(4)))
    assert policy.select(snap) == (ep(2), ep(4))
    assert seen == [(ep(1), ep(2), ep(4))]
    assert repr(policy) == "EndpointPolicy([ready_else_serving_terminating, even_only])"


def test_empty_filter_list_passes_everything() -> None:
    """An explicit empty list is honoured (every endpoint, whatever its conditions)."""
    snap = EndpointSet((ep(1, ready=False, serving=False),))
    assert EndpointPolicy([]).select(snap) == snap.endpoints


STEPS_WITH_STATE: list[Callable[[], EndpointFilter]] = [
    OutlierDetector,
    OverloadPenalty,
    lambda: SlowStart(10.0),
    lambda: ZoneAware(environ={}),
    lambda: Subset(2, client_id=0, client_count=1, environ={}),
]


@pytest.mark.parametrize(
    "make", STEPS_WITH_STATE, ids=["outlier", "penalty", "slow_start", "zones", "subset"]
)
def test_a_step_with_state_serves_one_balancer(
    make: Callable[[], EndpointFilter], clock: FakeClock, rng: random.Random
) -> None:
    """Every step with state binds to the balancer that runs it; a second balancer is refused,
    naming the step and what to do; the same balancer again is no second binding."""
    step = make()
    lb = LoadBalancer(
        "web.shop:80", source=StaticSource(), policy=EndpointPolicy([step]), clock=clock, rng=rng
    )
    EndpointPolicy([step]).bind(lb)
    with pytest.raises(ConfigurationError) as refused:
        LoadBalancer("cart.shop:80", source=StaticSource(), policy=EndpointPolicy([step]))
    name = type(step).__name__
    assert str(refused.value) == (
        f"{name} is already bound to another LoadBalancer: a {name} serves one LoadBalancer; "
        "give each LoadBalancer its own EndpointPolicy (and its own steps)"
    )


def test_a_step_listed_twice_observes_each_outcome_once(clock: FakeClock, rng: random.Random) -> None:
    """An OutlierDetector bound twice to one balancer counts each failure once: 4 failures of 5
    needed leave the endpoint in."""
    detector = OutlierDetector()
    policy = EndpointPolicy([ready_else_serving_terminating, detector, detector])
    lb = LoadBalancer("web.shop:80", source=StaticSource(), policy=policy, clock=clock, rng=rng)
    bad = Endpoint("10.0.0.1", 8080)
    lb.on_endpoints(EndpointSet((bad, Endpoint("10.0.0.2", 8080))))
    for _ in range(4):
        lb.put(bad, 0.001, True, Outcome.CONNECT_FAILED)
    assert bad in lb.eligible
    lb.put(bad, 0.001, True, Outcome.CONNECT_FAILED)
    assert bad not in lb.eligible


def test_an_unbound_step_runs_on_the_monotonic_clock() -> None:
    """A slow start used as a plain filter (no balancer) ramps a new endpoint on time.monotonic:
    a moment after it came, it has the minimum weight (10% until 1 s of its 10 s window)."""
    step = SlowStart(10.0)
    first, later = Endpoint("10.0.0.1", 8080), Endpoint("10.0.0.2", 8080)
    step(EndpointSet((first,)), (first,))
    step(EndpointSet((first, later)), (first, later))
    assert step.weight_factors() == {later.key: 0.1}
