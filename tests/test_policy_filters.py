"""EndpointPolicy.filters: the list a policy runs, as given or the default."""

from __future__ import annotations

import pytest

from kube_balance import ConfigurationError, Endpoint, EndpointSet
from kube_balance._policy import EndpointFilter, EndpointPolicy, ready_else_serving_terminating


def drop_first(snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
    return candidates[1:]


def keep_all(snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
    return candidates


def test_default_filters_start_with_kube_proxys_rule() -> None:
    """The default policy runs kube-proxy's rule first (ready, else serving-and-terminating), then
    the health steps (outlier ejection under the panic threshold, the 429 penalty)."""
    filters = tuple(EndpointPolicy().filters)
    assert filters[0] is ready_else_serving_terminating
    assert [type(f).__name__ for f in filters[1:]] == ["PanicThreshold", "OverloadPenalty"]
    explicit = EndpointPolicy([ready_else_serving_terminating])
    assert repr(explicit) == "EndpointPolicy([ready_else_serving_terminating])"


def test_filters_are_the_given_ones_in_order() -> None:
    """filters returns what was passed, in the order it runs; an empty list stays empty."""
    given: list[EndpointFilter] = [keep_all, drop_first]
    policy = EndpointPolicy(given)
    assert tuple(policy.filters) == (keep_all, drop_first)
    given.append(drop_first)  # the policy took a copy
    assert len(policy.filters) == 2
    assert tuple(EndpointPolicy([]).filters) == ()
    assert isinstance(drop_first, EndpointFilter)


@pytest.mark.parametrize("bad", ["ready", 42, [1, 2], [ready_else_serving_terminating, None]])
def test_filters_that_are_not_a_list_of_callables_are_refused(bad: object) -> None:
    """A string, a number, or a list holding something not callable: ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError, match="EndpointPolicy filters"):
        EndpointPolicy(bad)  # type: ignore[arg-type]
