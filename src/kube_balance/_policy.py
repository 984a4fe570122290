"""Which endpoints get traffic: one policy, a list of filters, applied to every snapshot.

The source reports every endpoint it sees with its conditions; the LoadBalancer runs the
snapshot through an :class:`EndpointPolicy` and hands only the result to ``algorithm.update()``.
The first (and for now only) filter is kube-proxy's rule: ready endpoints, and when none is
ready, the ones that are serving while terminating, so a Service in the middle of a full
rollout keeps answering (KEP-1669, "ProxyTerminatingEndpoints"). Outlier ejection, zone
preference and slow start are further filters appended to the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from ._endpoint import Endpoint, EndpointSet
from ._validate import invalid

__all__ = ["EndpointFilter", "EndpointPolicy", "ready_else_serving_terminating"]


@runtime_checkable
class EndpointFilter(Protocol):
    """One step of the policy: narrows ``candidates`` (never adds endpoints not in ``snapshot``)."""

    def __call__(self, snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        """Return the endpoints of ``candidates`` that may receive traffic, in their order."""
        ...


def ready_else_serving_terminating(
    snapshot: EndpointSet, candidates: tuple[Endpoint, ...]
) -> tuple[Endpoint, ...]:
    """Ready endpoints; when none is ready, serving-and-terminating ones (kube-proxy's rule)."""
    ready = tuple(ep for ep in candidates if ep.ready)
    if ready:
        return ready
    return tuple(ep for ep in candidates if ep.serving and ep.terminating)


class EndpointPolicy:
    """A pure function from an :class:`EndpointSet` to the endpoints that get traffic.

    Filters run in order, each on the previous one's output. The default list is
    ``[ready_else_serving_terminating]``. A filter with state of its own (outlier ejection,
    slow start) asks the balancer to re-run the policy with ``LoadBalancer.refresh()``.
    """

    def __init__(self, filters: Iterable[EndpointFilter] | None = None) -> None:
        allowed = "expected a list of callables (snapshot, candidates) -> endpoints, or None for the default"
        if filters is not None and (isinstance(filters, (str, bytes)) or not isinstance(filters, Iterable)):
            raise invalid("EndpointPolicy filters", filters, allowed)
        self._filters: tuple[EndpointFilter, ...] = (
            (ready_else_serving_terminating,) if filters is None else tuple(filters)
        )
        if not all(callable(f) for f in self._filters):
            raise invalid("EndpointPolicy filters", filters, allowed)

    @property
    def filters(self) -> Sequence[EndpointFilter]:
        """The filters, in the order they run."""
        return self._filters

    def select(self, snapshot: EndpointSet) -> tuple[Endpoint, ...]:
        """The endpoints of ``snapshot`` that should receive traffic now."""
        candidates = snapshot.endpoints
        for f in self._filters:
            candidates = f(snapshot, candidates)
        return candidates

    def __repr__(self) -> str:
        names = ", ".join(getattr(f, "__name__", type(f).__name__) for f in self._filters)
        return f"EndpointPolicy([{names}])"
