"""Panic threshold: when fewer than half the endpoints are healthy, all of them get traffic."""

from __future__ import annotations

import logging
import random

import pytest
from helpers_health import balancer, fail, keys, ok

from kube_balance import ConfigurationError, EndpointPolicy, EndpointSet
from kube_balance._outlier import OutlierDetector
from kube_balance._panic import PanicThreshold
from kube_balance.testing import FakeClock


def test_the_only_endpoint_ejected_still_serves(clock: FakeClock, rng: random.Random) -> None:
    """One endpoint of one ejected: 0% healthy, panic, it keeps its traffic; the return ends panic."""
    lb, eps = balancer(1, clock, rng)
    fail(lb, eps[0], 5)
    status = lb.status()
    assert status.panic and list(status.ejected) == [eps[0].key]
    assert lb.eligible == (eps[0],) and lb.get() == eps[0]
    clock.advance(40)
    ok(lb, eps[0])
    assert not lb.status().panic and not lb.status().ejected


def test_below_half_healthy_balances_across_all(clock: FakeClock, rng: random.Random) -> None:
    """With ejection uncapped, 2 of 4 ejected is 50%: no panic; 3 of 4: panic, all 4 eligible."""
    policy = EndpointPolicy.default(outlier=OutlierDetector(max_ejection_percent=100))
    lb, eps = balancer(4, clock, rng, policy=policy)
    fail(lb, eps[0], 5)
    fail(lb, eps[1], 5)
    assert keys(lb.eligible) == keys(eps[2:]) and not lb.status().panic
    fail(lb, eps[2], 5)
    assert keys(lb.eligible) == keys(eps) and lb.status().panic
    assert len(lb.status().ejected) == 3


def test_threshold_zero_never_panics(clock: FakeClock, rng: random.Random) -> None:
    """panic_threshold=0 turns panic off: the last endpoint ejected leaves none eligible."""
    lb, eps = balancer(1, clock, rng, policy=EndpointPolicy.default(panic_threshold=0))
    fail(lb, eps[0], 5)
    assert lb.eligible == () and not lb.status().panic


def test_panic_logged_once_each_way(
    clock: FakeClock, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """Entering panic is one warning, leaving it one info, however often the policy runs."""
    lb, eps = balancer(1, clock, rng)
    with caplog.at_level(logging.INFO, logger="kube_balance"):
        fail(lb, eps[0], 5)
        for _ in range(3):
            lb.refresh()
            lb.on_endpoints(EndpointSet(tuple(eps)))
        clock.advance(40)
        ok(lb, eps[0])
        lb.refresh()
    panic = [r.getMessage() for r in caplog.records if "panic" in r.getMessage()]
    assert panic == [
        "web.shop:80: panic: only 0 of 1 endpoints healthy (threshold 50%): balancing across all",
        "web.shop:80: panic over: 1 of 1 endpoints healthy",
    ]


def test_wraps_any_step() -> None:
    """PanicThreshold works around any filter, and rejects a threshold outside 0..1."""
    eps = tuple(EndpointSet.of(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]).endpoints)

    def first_only(snapshot: EndpointSet, candidates: tuple) -> tuple:  # type: ignore[type-arg]
        return candidates[:1]

    assert PanicThreshold(first_only, 0.3)(EndpointSet(eps), eps) == eps[:1]
    panicking = PanicThreshold(first_only, 0.5)
    assert panicking(EndpointSet(eps), eps) == eps and panicking.panic
    with pytest.raises(
        ConfigurationError, match=r"PanicThreshold threshold must be a number in \[0.0, 1.0\], not 50"
    ):
        PanicThreshold(first_only, 50)


@pytest.mark.parametrize("step", [5, None, "outlier"])
def test_a_step_that_is_not_a_filter_is_refused_at_construction(step: object) -> None:
    """PanicThreshold(5) used to construct; every update then failed, blamed on the endpoint source."""
    with pytest.raises(ConfigurationError, match=r"PanicThreshold step must be an endpoint filter .*, not "):
        PanicThreshold(step)  # type: ignore[arg-type]
