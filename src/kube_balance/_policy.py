"""Which endpoints get traffic: one policy, a list of filters, applied to every snapshot.

The source reports every endpoint it sees with its conditions; the LoadBalancer runs the
snapshot through an :class:`EndpointPolicy` and hands only the result to ``algorithm.update()``.
The first filter is kube-proxy's rule: ready endpoints, and when none is ready, the ones that
are serving while terminating, so a Service in the middle of a full rollout keeps answering
(KEP-1669, "ProxyTerminatingEndpoints"). The default policy then runs the health steps:
outlier ejection under the panic threshold, and the 429 penalty (see :meth:`EndpointPolicy.default`).

A step with state has ``bind(host)`` (the balancer calls it once: the step observes outcomes and
re-runs the policy when its state changes), may have ``weight_factors()`` (slow start: per-endpoint
weight factors the balancer hands to ``algorithm.set_weight_factors``) and ``report(health)``
(what it adds to ``LoadBalancer.status()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from ._endpoint import Endpoint, EndpointSet
from ._health import HealthReport, PolicyHost
from ._outlier import OutlierDetector
from ._panic import DEFAULT_PANIC_THRESHOLD, PanicThreshold
from ._penalty import OverloadPenalty
from ._slow_start import SlowStart
from ._validate import invalid

__all__ = ["EndpointFilter", "EndpointPolicy", "default_filters", "ready_else_serving_terminating"]


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

    Filters run in order, each on the previous one's output. ``EndpointPolicy()`` is
    :meth:`default`: kube-proxy's rule, then outlier ejection under the panic threshold, then the
    429 penalty. An explicit list is used as given (``[ready_else_serving_terminating]`` alone
    turns every health step off). A step with state of its own asks the balancer to re-run the
    policy with ``LoadBalancer.refresh()``; a policy binds to one balancer only.
    """

    def __init__(self, filters: Iterable[EndpointFilter] | None = None) -> None:
        allowed = "expected a list of callables (snapshot, candidates) -> endpoints, or None for the default"
        if filters is not None and (isinstance(filters, (str, bytes)) or not isinstance(filters, Iterable)):
            raise invalid("EndpointPolicy filters", filters, allowed)
        self._filters: tuple[EndpointFilter, ...] = default_filters() if filters is None else tuple(filters)
        if not all(callable(f) for f in self._filters):
            raise invalid("EndpointPolicy filters", filters, allowed)

    @classmethod
    def default(
        cls,
        *,
        outlier: OutlierDetector | None = None,
        panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
        overload: OverloadPenalty | None = None,
        slow_start: SlowStart | None = None,
        ejection: bool = True,
        overload_penalty: bool = True,
    ) -> EndpointPolicy:
        """The default steps, each replaceable: ``outlier`` (an :class:`OutlierDetector`, default
        settings when None; ``ejection=False`` turns it off) under ``panic_threshold`` (0 never
        panics), ``overload`` (an :class:`OverloadPenalty`; ``overload_penalty=False`` turns it
        off) and, when given, ``slow_start``."""
        return cls(
            default_filters(
                outlier=outlier,
                panic_threshold=panic_threshold,
                overload=overload,
                slow_start=slow_start,
                ejection=ejection,
                overload_penalty=overload_penalty,
            )
        )

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

    def bind(self, host: PolicyHost) -> None:
        """Bind every step with state to ``host`` (a :class:`~kube_balance.LoadBalancer`)."""
        for f in self._filters:
            bind = getattr(f, "bind", None)
            if bind is not None:
                bind(host)

    def weight_factors(self) -> dict[str, float]:
        """Per-endpoint weight factors from the steps that ramp weights (slow start); {} if none."""
        factors: dict[str, float] = {}
        for f in self._filters:
            step = getattr(f, "weight_factors", None)
            if step is not None:
                for key, factor in step().items():
                    factors[key] = factors.get(key, 1.0) * factor
        return factors

    def report(self) -> HealthReport:
        """What the steps say about health: ejected endpoints, panic, ramps, penalties."""
        health = HealthReport()
        for f in self._filters:
            report = getattr(f, "report", None)
            if report is not None:
                report(health)
        return health

    async def aclose(self) -> None:
        """Stop what steps run in the background (the subset filter's watch of its peers)."""
        for f in self._filters:
            aclose = getattr(f, "aclose", None)
            if aclose is not None:
                await aclose()

    def __repr__(self) -> str:
        names = ", ".join(getattr(f, "__name__", type(f).__name__) for f in self._filters)
        return f"EndpointPolicy([{names}])"


def default_filters(
    *,
    outlier: OutlierDetector | None = None,
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
    overload: OverloadPenalty | None = None,
    slow_start: SlowStart | None = None,
    ejection: bool = True,
    overload_penalty: bool = True,
) -> tuple[EndpointFilter, ...]:
    """The steps of :meth:`EndpointPolicy.default` (new objects on each call: steps keep state)."""
    steps: list[EndpointFilter] = [ready_else_serving_terminating]
    if ejection:
        steps.append(PanicThreshold(outlier if outlier is not None else OutlierDetector(), panic_threshold))
    if overload_penalty:
        steps.append(overload if overload is not None else OverloadPenalty())
    if slow_start is not None:
        steps.append(slow_start)
    return tuple(steps)
