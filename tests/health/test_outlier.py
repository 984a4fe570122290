"""Outlier ejection: consecutive failures eject, time grows with each ejection, returns need no
traffic to the ejected endpoint, at most a share is ejected, the success-rate rule, logging."""

from __future__ import annotations

import logging
import random

import pytest
from helpers_health import (
    balancer,
    detector_lb,
    ejection_durations,
    endpoints,
    fail,
    keys,
    ok,
    phantom,
    rate_lb,
    window,
)

from kube_balance import ConfigurationError, EndpointPolicy, EndpointSet, LoadBalancer, Outcome
from kube_balance._outlier import OutlierDetector, SuccessRate
from kube_balance.discovery.static import StaticSource
from kube_balance.testing import FakeClock


def test_on_by_default_and_five_consecutive_failures_eject(clock: FakeClock, rng: random.Random) -> None:
    """A default LoadBalancer ejects an endpoint on its 5th consecutive failure, not its 4th."""
    lb, eps = balancer(10, clock, rng)
    fail(lb, eps[0], 4)
    assert eps[0] in lb.eligible and not lb.status().ejected
    fail(lb, eps[0])
    assert eps[0] not in lb.eligible and len(lb.eligible) == 9
    ejection = lb.status().ejected[eps[0].key]
    assert ejection.reason == "5 consecutive failures (last: connect_failed)"
    assert ejection.times == 1 and ejection.since == clock()
    assert 30.0 <= ejection.until - clock() <= 33.0


def test_a_success_resets_the_count(clock: FakeClock, rng: random.Random) -> None:
    """4 failures, a success, 4 failures: never 5 in a row, never ejected."""
    lb, eps = balancer(10, clock, rng)
    fail(lb, eps[0], 4)
    ok(lb, eps[0])
    fail(lb, eps[0], 4, Outcome.SERVER_ERROR, status=500)
    assert eps[0] in lb.eligible


@pytest.mark.parametrize(
    "outcome", [Outcome.CONNECT_FAILED, Outcome.RESET, Outcome.TIMEOUT, Outcome.SERVER_ERROR, Outcome.ERROR]
)
def test_each_failure_kind_counts(outcome: Outcome, clock: FakeClock, rng: random.Random) -> None:
    """Connection failures, resets, timeouts, 5xx and other endpoint errors all count."""
    lb, eps = balancer(10, clock, rng)
    fail(lb, eps[3], 5, outcome)
    assert eps[3] not in lb.eligible
    assert lb.status().ejected[eps[3].key].reason.endswith(f"(last: {outcome.label})")


@pytest.mark.parametrize("outcome", [Outcome.OVERLOADED, Outcome.CANCELLED, Outcome.LOCAL])
def test_neutral_outcomes_neither_count_nor_reset(
    outcome: Outcome, clock: FakeClock, rng: random.Random
) -> None:
    """429s, cancellations and local errors never eject, and do not break a run of failures."""
    lb, eps = balancer(10, clock, rng)
    fail(lb, eps[0], 20, outcome)
    assert eps[0] in lb.eligible
    fail(lb, eps[0], 4)
    fail(lb, eps[0], 3, outcome)
    fail(lb, eps[0])
    assert eps[0] not in lb.eligible


def test_503_with_retry_after_is_not_a_failure(clock: FakeClock, rng: random.Random) -> None:
    """A 503 with Retry-After asks for a pause (the penalty's job): it does not count to ejection."""
    lb, eps = balancer(10, clock, rng)
    fail(lb, eps[0], 10, Outcome.SERVER_ERROR, status=503, retry_after=1.0)
    assert eps[0] in lb.eligible


def test_server_errors_can_be_left_out(clock: FakeClock, rng: random.Random) -> None:
    """count_server_errors=False: 5xx do not eject, and a 5xx ends a run of connection failures."""
    lb, eps, _ = detector_lb(10, clock, rng, count_server_errors=False)
    fail(lb, eps[0], 10, Outcome.SERVER_ERROR, status=500)
    assert eps[0] in lb.eligible
    fail(lb, eps[1], 4)
    fail(lb, eps[1], 1, Outcome.SERVER_ERROR, status=500)
    fail(lb, eps[1], 4)
    assert eps[1] in lb.eligible
    fail(lb, eps[1])
    assert eps[1] not in lb.eligible


def test_lower_threshold_for_local_origin_failures(clock: FakeClock, rng: random.Random) -> None:
    """consecutive_local_origin_failures=2: two refusals eject; two 5xx do not."""
    lb, eps, _ = detector_lb(10, clock, rng, consecutive_local_origin_failures=2)
    fail(lb, eps[0], 2, Outcome.SERVER_ERROR, status=500)
    assert eps[0] in lb.eligible
    fail(lb, eps[1], 1, Outcome.RESET)
    assert eps[1] in lb.eligible
    fail(lb, eps[1], 1, Outcome.TIMEOUT)
    assert eps[1] not in lb.eligible
    assert lb.status().ejected[eps[1].key].reason == "2 consecutive local-origin failures (last: timeout)"


def test_returns_without_traffic_to_it(clock: FakeClock, rng: random.Random) -> None:
    """After its ejection time, an outcome of another endpoint brings the ejected one back."""
    lb, eps, _ = detector_lb(10, clock, rng, jitter=0)
    fail(lb, eps[0], 5)
    clock.advance(29.9)
    ok(lb, eps[1])
    assert eps[0] not in lb.eligible
    clock.advance(0.1)
    ok(lb, eps[1])
    assert eps[0] in lb.eligible and not lb.status().ejected


def test_status_and_refresh_return_it_too(clock: FakeClock, rng: random.Random) -> None:
    """With no traffic at all, reading status() (or a policy re-run) returns an endpoint whose time is up."""
    lb, eps, _ = detector_lb(10, clock, rng, jitter=0)
    fail(lb, eps[0], 5)
    clock.advance(30)
    assert lb.status().ejected == {} and eps[0] in lb.eligible
    fail(lb, eps[1], 5)
    clock.advance(30)
    lb.refresh()
    assert eps[1] in lb.eligible


def test_one_failure_on_return_ejects_again_for_longer(clock: FakeClock, rng: random.Random) -> None:
    """Back from an ejection, one failure ejects again, for base x 2; a success ends the probation."""
    lb, eps, _ = detector_lb(10, clock, rng, jitter=0)
    fail(lb, eps[0], 5)
    clock.advance(30)
    ok(lb, eps[1])
    fail(lb, eps[0])
    ejection = lb.status().ejected[eps[0].key]
    assert ejection.times == 2 and ejection.until - clock() == 60.0
    assert ejection.reason == "failed on return from an ejection (connect_failed)"
    clock.advance(60)
    ok(lb, eps[0])  # back (this put returns it) and succeeding: probation over
    fail(lb, eps[0], 4)
    assert eps[0] in lb.eligible


def test_ejection_time_is_capped(clock: FakeClock, rng: random.Random) -> None:
    """base x times grows to max_ejection_time and stays there."""
    lb, eps, _ = detector_lb(10, clock, rng, jitter=0, base_ejection_time=30, max_ejection_time=100)
    assert ejection_durations(lb, clock, eps, 6) == [30, 60, 90, 100, 100, 100]


def test_jitter_stays_within_its_bound(clock: FakeClock) -> None:
    """Each ejection lasts base x (1 + jitter x u), u in [0, 1): between 30 and 33 s, and not always 30."""
    durations = set()
    for seed in range(30):
        lb, eps, _ = detector_lb(10, FakeClock(1000), random.Random(seed))
        fail(lb, eps[0], 5)
        ejection = lb.status().ejected[eps[0].key]
        durations.add(ejection.until - ejection.since)
    assert all(30.0 <= d < 33.0 for d in durations)
    assert max(durations) - min(durations) > 1.5


def test_multiplier_decays_while_healthy(clock: FakeClock, rng: random.Random) -> None:
    """Each base time spent back without an ejection takes one off the multiplier (Envoy)."""
    lb, eps, _ = detector_lb(10, clock, rng, jitter=0)
    fail(lb, eps[0], 5)
    clock.advance(30)
    ok(lb, eps[1])
    fail(lb, eps[0])  # times 2, 60 s
    clock.advance(60)
    ok(lb, eps[0])
    clock.advance(30)  # one base time healthy: 2 -> 1
    fail(lb, eps[0], 5)
    assert lb.status().ejected[eps[0].key].times == 2
    clock.advance(60)
    ok(lb, eps[0])
    clock.advance(200)  # many base times: down to 0
    fail(lb, eps[0], 5)
    assert lb.status().ejected[eps[0].key].times == 1


@pytest.mark.parametrize(
    ("n", "percent", "most"), [(4, 10, 1), (10, 10, 1), (20, 10, 2), (25, 10, 2), (10, 50, 5)]
)
def test_never_more_than_the_max_share(
    n: int, percent: float, most: int, clock: FakeClock, rng: random.Random
) -> None:
    """max_ejection_percent of the endpoints at once, at least one; the rest keep serving."""
    lb, eps, detector = detector_lb(n, clock, rng, max_ejection_percent=percent)
    for ep in eps:
        fail(lb, ep, 5)
    assert len(lb.status().ejected) == most == detector.max_ejected()
    assert len(lb.eligible) == n - most


def test_room_under_the_cap_is_taken_by_the_next_failure(clock: FakeClock, rng: random.Random) -> None:
    """An endpoint refused ejection by the cap is ejected on its next failure once there is room."""
    lb, eps, _ = detector_lb(4, clock, rng, jitter=0)
    fail(lb, eps[0], 5)
    fail(lb, eps[1], 5)
    assert list(lb.status().ejected) == [eps[0].key]
    clock.advance(30)
    ok(lb, eps[2])  # eps[0] returns
    fail(lb, eps[1])
    assert list(lb.status().ejected) == [eps[1].key]


def test_success_rate_rule(clock: FakeClock, rng: random.Random) -> None:
    """Envoy's rule: below mean - 1.9 stddev, among >= 5 hosts with >= 100 requests, is ejected."""
    lb, eps, _ = rate_lb(6, clock, rng, success_rate=SuccessRate(interval=10))
    window(lb, eps, [1, 0.99, 0.6, 0.97, 0.96, 0.95])
    assert not lb.status().ejected
    clock.advance(10)
    ok(lb, eps[0])  # the window closes on the next outcome
    ejected = lb.status().ejected
    assert list(ejected) == [eps[2].key]
    assert ejected[eps[2].key].reason.startswith("success rate 0.600 below 0.")


def test_success_rate_judges_only_the_endpoints_in_the_service(clock: FakeClock, rng: random.Random) -> None:
    """An endpoint that left the Service during the interval is neither judged nor part of the
    mean: the worst one left (success rate 0.3) would otherwise take the only ejection there is
    room for (20% of 6), and hide the 0.6 one (below 0.645 among the six that remain)."""
    lb, eps, _ = detector_lb(
        7,
        clock,
        rng,
        success_rate=SuccessRate(interval=10),
        max_ejection_percent=20,
        consecutive_failures=1000,
    )
    for i, ep in enumerate(eps):
        failures = {2: 40, 6: 70}.get(i, i)
        ok(lb, ep, 100 - failures)
        fail(lb, ep, failures, Outcome.SERVER_ERROR, status=500)
    lb.on_endpoints(EndpointSet(tuple(eps[:6])))
    clock.advance(10)
    ok(lb, eps[0])
    assert list(lb.status().ejected) == [eps[2].key]
    assert (
        lb.status().ejected[eps[2].key].reason.startswith("success rate 0.600 below 0.645 (mean 0.912 of 6)")
    )


def test_success_rate_judges_an_endpoint_back_in_the_service_on_the_whole_interval(
    clock: FakeClock, rng: random.Random
) -> None:
    """An endpoint that left and came back within the interval is judged on its requests of the
    whole interval (they are its address's), with a new ejection history (its first ejection)."""
    lb, eps, _ = detector_lb(
        6,
        clock,
        rng,
        success_rate=SuccessRate(interval=10),
        max_ejection_percent=50,
        consecutive_failures=1000,
    )
    for i, ep in enumerate(eps):
        ok(lb, ep, 100 - (40 if i == 2 else i))
        fail(lb, ep, 40 if i == 2 else i, Outcome.SERVER_ERROR, status=500)
    lb.on_endpoints(EndpointSet(tuple(e for e in eps if e is not eps[2])))
    lb.on_endpoints(EndpointSet(tuple(eps)))
    clock.advance(10)
    ok(lb, eps[0])
    ejection = lb.status().ejected[eps[2].key]
    assert list(lb.status().ejected) == [eps[2].key] and ejection.times == 1
    assert ejection.reason.startswith("success rate 0.600 below")


@pytest.mark.parametrize(("hosts", "volume"), [(4, 100), (6, 99)])
def test_success_rate_needs_hosts_and_volume(
    hosts: int, volume: int, clock: FakeClock, rng: random.Random
) -> None:
    """Fewer than minimum_hosts hosts, or fewer than request_volume requests each: no judgement."""
    lb, eps, _ = rate_lb(hosts, clock, rng)
    window(lb, eps, [0.5] + [1] * (hosts - 1), volume)  # 99 requests: 50 successes, 49 failures
    clock.advance(10)
    ok(lb, eps[1])
    assert not lb.status().ejected


def test_each_ejection_and_return_logged_once(
    clock: FakeClock, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """One warning per ejection, one info per return, with the endpoint and the reason; late
    failures of the ejected endpoint, status() reads and policy re-runs log nothing more."""
    lb, eps, _ = detector_lb(10, clock, rng, jitter=0)
    with caplog.at_level(logging.INFO, logger="kube_balance"):
        fail(lb, eps[0], 8)  # 3 late outcomes of requests in flight when it was ejected
        lb.status()
        lb.refresh()
        clock.advance(30)
        for _ in range(3):
            ok(lb, eps[1])
            lb.status()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"web.shop:80: ejected endpoint {eps[0].key} for 30.0 s (ejection 1): 5 consecutive failures (last: connect_failed)",
        f"web.shop:80: endpoint {eps[0].key} returned after 30.0 s (was ejected: 5 consecutive failures (last: connect_failed))",
    ]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]


def test_endpoint_leaving_the_service_is_forgotten(clock: FakeClock, rng: random.Random) -> None:
    """An ejected endpoint that leaves the Service is no longer reported, and comes back fresh."""
    lb, eps, _ = detector_lb(10, clock, rng)
    fail(lb, eps[0], 5)
    lb.on_endpoints(EndpointSet(tuple(eps[1:])))
    assert lb.status().ejected == {}
    lb.on_endpoints(EndpointSet(tuple(eps)))
    assert eps[0] in lb.eligible
    fail(lb, eps[0], 4)
    assert eps[0] in lb.eligible


def test_off_when_not_in_the_policy(clock: FakeClock, rng: random.Random) -> None:
    """EndpointPolicy.default(ejection=False), or an explicit list without it: nothing is ejected."""
    for policy in (EndpointPolicy.default(ejection=False), EndpointPolicy([lambda s, c: c])):
        lb, eps = balancer(4, clock, rng, policy=policy)
        fail(lb, eps[0], 50)
        assert keys(lb.eligible) == keys(eps)


def test_a_policy_binds_to_one_balancer(clock: FakeClock, rng: random.Random) -> None:
    """Sharing a policy (and its ejection state) between balancers is refused at construction."""
    policy = EndpointPolicy()
    LoadBalancer("web.shop:80", source=StaticSource(), policy=policy)
    with pytest.raises(ConfigurationError, match="already bound to another LoadBalancer"):
        LoadBalancer("cart.shop:80", source=StaticSource(), policy=policy)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("consecutive_failures", 0, "consecutive_failures must be an int >= 1, not 0"),
        ("consecutive_local_origin_failures", 1.5, "consecutive_local_origin_failures must be an int >= 1"),
        ("base_ejection_time", -1, "base_ejection_time must be a finite number of seconds > 0, not -1"),
        ("max_ejection_time", float("inf"), "max_ejection_time must be a finite number"),
        ("max_ejection_time", 10, r"max_ejection_time \(10\) must be >= base_ejection_time \(30.0\)"),
        ("jitter", 2, r"jitter must be a number in \[0.0, 1.0\], not 2"),
        ("max_ejection_percent", 101, r"max_ejection_percent must be a number in \[0, 100\], not 101"),
        ("success_rate", 1.9, "success_rate must be a SuccessRate or None, not 1.9"),
    ],
)
def test_bad_options_are_named(option: str, value: object, message: str) -> None:
    """A bad option raises ConfigurationError naming it, its value and what is allowed."""
    with pytest.raises(ConfigurationError, match=message):
        OutlierDetector(**{option: value})  # type: ignore[arg-type]


def test_used_as_a_plain_filter() -> None:
    """Unbound (no balancer), the step filters nothing and needs no clock of its own."""
    eps = tuple(endpoints(3))
    assert OutlierDetector()(EndpointSet(eps), eps) == eps


def test_failing_endpoint_looks_loaded_until_it_succeeds(clock: FakeClock, rng: random.Random) -> None:
    """Each consecutive failure before the ejection adds 5 phantom requests in flight (least_request
    stops picking a fast-failing pod); a success takes them back; inflight() stays the real count."""
    lb, eps = balancer(4, clock, rng)
    fail(lb, eps[0], 2)
    assert phantom(lb, eps[0]) == 10 and lb.algorithm.inflight(eps[0]) == 0
    picks = [lb.get() for _ in range(12)]  # 3 each would be fair; 10 phantom: none while others < 10
    assert eps[0] not in picks
    for ep in picks:
        assert ep is not None
        lb.unget(ep)
    ok(lb, eps[0])
    assert phantom(lb, eps[0]) == 0
    fail(lb, eps[1], 5)
    assert phantom(lb, eps[1]) == 0  # taken back on ejection
    assert lb.status().inflight == 0


def test_suspect_load_shares_the_slot_with_the_429_penalty(clock: FakeClock, rng: random.Random) -> None:
    """The 429 penalty and the failure load add up, and each takes back only its own share."""
    lb, eps = balancer(4, clock, rng)
    lb.put(eps[0], 0.001, True, Outcome.OVERLOADED, 429, 2.0)
    fail(lb, eps[0], 3)
    assert phantom(lb, eps[0]) == 25 + 15
    ok(lb, eps[0])
    assert phantom(lb, eps[0]) == 25
    clock.advance(2)
    ok(lb, eps[1])
    assert phantom(lb, eps[0]) == 0


def test_an_endpoint_that_leaves_takes_its_suspect_load_with_it(clock: FakeClock, rng: random.Random) -> None:
    """An endpoint that leaves the Service while suspected leaves its phantom load behind: back at
    the same address, a success takes back only the load it earned since, never another step's
    penalty on the slot (here the 429 penalty's 25), even within suspect_time."""
    lb, eps = balancer(4, clock, rng)
    fail(lb, eps[0], 2)
    assert phantom(lb, eps[0]) == 10
    lb.on_endpoints(EndpointSet(tuple(eps[1:])))
    lb.on_endpoints(EndpointSet(tuple(eps)))
    lb.put(eps[0], 0.001, True, Outcome.OVERLOADED, 429, 2.0)
    fail(lb, eps[0])
    assert phantom(lb, eps[0]) == 25 + 5
    ok(lb, eps[0])
    assert phantom(lb, eps[0]) == 25
    fail(lb, eps[0], 4)
    assert eps[0] in lb.eligible  # its 2 failures before it left were forgotten too


def test_an_ejected_endpoint_returns_without_its_old_suspect_load(
    clock: FakeClock, rng: random.Random
) -> None:
    """The phantom load of the failures before an ejection ends with the ejection, whatever
    suspect_time says: on return, a success takes back none of another step's penalty."""
    lb, eps, _ = detector_lb(4, clock, rng, suspect_time=60.0, jitter=0)
    fail(lb, eps[0], 5)  # 4 x 5 phantom requests, then the ejection
    assert eps[0] not in lb.eligible
    clock.advance(30)
    lb.status()  # the ejection is over: eps[0] returns, on probation
    assert eps[0] in lb.eligible and phantom(lb, eps[0]) == 0
    lb.put(eps[0], 0.001, True, Outcome.OVERLOADED, 429, 2.0)
    assert phantom(lb, eps[0]) == 25
    ok(lb, eps[0])
    assert phantom(lb, eps[0]) == 25
    clock.advance(2)
    ok(lb, eps[1])
    assert phantom(lb, eps[0]) == 0 and lb.status().inflight == 0


def test_suspect_load_zero_turns_it_off(clock: FakeClock, rng: random.Random) -> None:
    """suspect_load=0: failures before the ejection add no load."""
    lb, eps, _ = detector_lb(4, clock, rng, suspect_load=0)
    fail(lb, eps[0], 4)
    assert phantom(lb, eps[0]) == 0


def test_suspect_load_lasts_suspect_time_after_the_last_failure(clock: FakeClock, rng: random.Random) -> None:
    """The phantom load ends suspect_time after the latest failure (an outcome of any endpoint
    ends it), so a pod no longer picked is tried again; the failure count itself stays."""
    lb, eps = balancer(4, clock, rng)
    fail(lb, eps[0], 2)
    clock.advance(0.9)
    fail(lb, eps[0])
    clock.advance(0.9)
    ok(lb, eps[1])
    assert phantom(lb, eps[0]) == 15  # 0.9 s after the last failure
    clock.advance(0.1)
    ok(lb, eps[1])
    assert phantom(lb, eps[0]) == 0
    fail(lb, eps[0], 2)
    assert eps[0] not in lb.eligible  # 5 in a row: the count survived
