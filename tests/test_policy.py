"""EndpointPolicy: which endpoints get traffic (kube-proxy's rule, then any further filters)."""

from __future__ import annotations

from kube_balance import Endpoint, EndpointSet
from kube_balance._policy import EndpointPolicy, ready_else_serving_terminating


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
