"""ZoneAware: local endpoints from node/zone hints or zones, kube-proxy's safeguard, fallback, spill."""

from __future__ import annotations

import logging
import random

import pytest

from kube_balance import ConfigurationError, Endpoint, EndpointSet, LoadBalancer, ZoneAware
from kube_balance.testing import FakeClock, StaticSource


def ep(n: int, zone: str | None = None, hints: tuple[str, ...] = (), nodes: tuple[str, ...] = ()) -> Endpoint:
    return Endpoint(f"10.0.0.{n}", 8080, zone=zone, zone_hints=frozenset(hints), node_hints=frozenset(nodes))


def select(f: ZoneAware, *eps: Endpoint) -> set[int]:
    """The last octets of the endpoints the filter keeps."""
    return {int(e.address.rsplit(".", 1)[1]) for e in f.policy().select(EndpointSet(eps))}


def zone_filter(zone: str | None = "a", **options: object) -> ZoneAware:
    return ZoneAware(zone, environ={}, **options)  # type: ignore[arg-type]


def test_same_zone_endpoints_without_hints() -> None:
    """Without hints the endpoints whose zone is ours are local; the others get nothing."""
    f = zone_filter("a")
    assert select(f, ep(1, "a"), ep(2, "b"), ep(3, "a"), ep(4)) == {1, 3}
    assert f.status().mode == "same-zone" and (f.status().local, f.status().remote) == (2, 2)


def test_zone_hints_win_over_the_endpoints_own_zone() -> None:
    """With every endpoint hinted, hints decide (the controller may lend a zone-b pod to zone a)."""
    f = zone_filter("a")
    assert select(f, ep(1, "a", ("a",)), ep(2, "b", ("a",)), ep(3, "b", ("b",))) == {1, 2}
    assert f.status().mode == "zone-hints"


def test_partial_hints_are_ignored_kube_proxys_safeguard() -> None:
    """One endpoint without hints: hints are not honoured (all-zones, as kube-proxy) or zone decides."""
    eps = (ep(1, "a", ("b",)), ep(2, "b", ("b",)), ep(3, "b"))
    strict = zone_filter("a", without_hints="all-zones")
    assert select(strict, *eps) == {1, 2, 3}
    assert strict.status().mode == "all-zones"
    assert select(zone_filter("a"), *eps) == {1}  # same-zone: hints for b are not followed


def test_local_zone_with_no_endpoint_falls_back_to_every_zone() -> None:
    """Hints or zones that name no endpoint for our zone: every zone serves."""
    assert select(zone_filter("c"), ep(1, "a"), ep(2, "b")) == {1, 2}
    f = zone_filter("c")
    assert select(f, ep(1, "a", ("a",)), ep(2, "b", ("b",))) == {1, 2}
    assert f.status().mode == "all-zones"


def test_no_zone_passes_everything() -> None:
    """No zone option, no environment, no node: the filter is off."""
    f = zone_filter(None)
    assert select(f, ep(1, "a"), ep(2, "b")) == {1, 2}
    assert f.status().mode == "off" and f.status().zone_source.startswith("unknown")


def test_node_hints_prefer_our_node_when_every_endpoint_has_them() -> None:
    """PreferSameNode: our node's endpoints; partial node hints fall back to zone hints."""
    hinted = (ep(1, "a", ("a",), ("n1",)), ep(2, "a", ("a",), ("n2",)), ep(3, "b", ("b",), ("n3",)))
    f = zone_filter("a", node="n2")
    assert select(f, *hinted) == {2}
    assert f.status().mode == "node-hints"
    partial = (*hinted[:2], ep(3, "b", ("b",)))
    assert select(f, *partial) == {1, 2}
    assert f.status().mode == "zone-hints"
    # No endpoint for our node: the zone decides.
    assert select(zone_filter("b", node="n9"), *hinted) == {3}


def test_zone_comes_from_the_option_then_the_environment() -> None:
    """The option wins; else KUBE_BALANCE_ZONE; NODE_NAME names the node."""
    env = {"KUBE_BALANCE_ZONE": "b", "NODE_NAME": "n1"}
    assert (ZoneAware("a", environ=env).zone, ZoneAware("a", environ=env).status().zone_source) == (
        "a",
        "option",
    )
    f = ZoneAware(environ=env)
    assert (f.zone, f.node, f.status().zone_source) == ("b", "n1", "env KUBE_BALANCE_ZONE")
    assert ZoneAware(environ={"NODE_NAME": "n1"}).status().zone_source == "pending"


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"spill_at": 0}, "spill_at"),
        ({"spill_at": 4, "return_at": 4}, "return_at"),
        ({"return_at": -1}, "return_at"),
        ({"hold": -1}, "hold"),
        ({"without_hints": "nearest"}, "without_hints"),
        ({"zone": ""}, "zone"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], name: str) -> None:
    """Bad values are a ConfigurationError naming the option, the value and what is allowed."""
    with pytest.raises(ConfigurationError, match=f"{name}="):
        ZoneAware(**options)  # type: ignore[arg-type]


def two_zone_balancer(
    clock: FakeClock, rng: random.Random, **options: object
) -> tuple[LoadBalancer, ZoneAware]:
    """A least_request balancer over endpoints 1-2 in zone a (ours) and 3-4 in zone b."""
    f = zone_filter("a", clock=clock, **options)
    lb = LoadBalancer("web.shop:80", source=StaticSource(), policy=f.policy(), fallback="none", rng=rng)
    lb.on_endpoints(EndpointSet((ep(1, "a"), ep(2, "a"), ep(3, "b"), ep(4, "b"))))
    return lb, f


def test_spill_under_load_and_return_when_it_falls(
    clock: FakeClock, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """Local endpoints 8+ in flight above remote ones: all zones; back under 4 each: local only."""
    lb, _ = two_zone_balancer(clock, rng)
    held = [lb.get() for _ in range(18)]
    assert {e.zone for e in held if e is not None} == {"a"}  # all local while not spilling
    assert len(lb.eligible) == 2
    with caplog.at_level(logging.INFO, "kube_balance"):
        lb.put(held.pop())  # 17 in flight over 2 local endpoints: 8.5 >= 8
    assert lb.status().zone is not None and lb.status().zone.spilling
    assert len(lb.eligible) == 4 and "spilling to 2 endpoints" in caplog.text
    more = [lb.get() for _ in range(8)]
    assert "b" in {e.zone for e in more if e is not None}  # least_request fills the idle zone
    held += more

    # Load falls: 25 in flight over 2 local endpoints is far above 4; at 8 left (4 each) it returns.
    clock.advance(5)
    while len(held) > 9:
        lb.put(held.pop())
        assert lb.status().zone.spilling  # type: ignore[union-attr]
    lb.put(held.pop())
    status = lb.status().zone
    assert status is not None and not status.spilling and status.spills == 1
    assert len(lb.eligible) == 2
    for e in held:
        lb.put(e)
    assert lb.status().inflight == 0


def test_hold_keeps_the_state_for_a_while(clock: FakeClock, rng: random.Random) -> None:
    """Within `hold` seconds of spilling the filter does not come back, however low the load."""
    lb, f = two_zone_balancer(clock, rng, hold=2.0)
    held = [lb.get() for _ in range(17)]
    lb.put(held.pop())  # 16 in flight: spill
    assert f.status().spilling
    for e in held:
        lb.put(e)
    assert f.status().spilling  # load is 0 but the hold is not over
    clock.advance(2.0)
    e = lb.get()
    assert e is not None
    lb.put(e)
    assert not f.status().spilling and len(lb.eligible) == 2


def test_no_spill_below_the_threshold(clock: FakeClock, rng: random.Random) -> None:
    """7 in flight per local endpoint (spill_at 8): everything stays local."""
    lb, f = two_zone_balancer(clock, rng)
    held = [lb.get() for _ in range(15)]
    lb.put(held.pop())
    assert not f.status().spilling and len(lb.eligible) == 2
    assert f.status().local_load == 7.0 and f.status().remote_load == 0.0


def test_status_of_a_balancer_without_zones_has_none(rng: random.Random) -> None:
    """The zone field of status() is None when the policy has no zone filter."""
    lb = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]), fallback="none", rng=rng)
    assert lb.status().zone is None


def test_one_filter_one_balancer(rng: random.Random) -> None:
    """Sharing a ZoneAware between balancers is refused: it reads one balancer's load."""
    f = zone_filter("a")
    LoadBalancer("web.shop:80", source=StaticSource(), policy=f.policy(), fallback="none", rng=rng)
    with pytest.raises(ConfigurationError, match="one LoadBalancer"):
        LoadBalancer("web.shop:80", source=StaticSource(), policy=f.policy(), fallback="none", rng=rng)
