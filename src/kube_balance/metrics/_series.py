"""What kube-balance exports, independent of the metrics library: one table of series.

Every series but the request duration histogram is read from the balancer's own state at
collection time (its :class:`~kube_balance._balancer.Counters`, the algorithm's in-flight counts,
the snapshot, the watch's :class:`~kube_balance.discovery.kubernetes._watcher.WatchStats`): the
request path pays nothing for them. The histogram (and the opt-in per-endpoint request counts) are
kept by balancer observers that increment plain Python lists and dicts: no lock and no client
library object on the request path. The Prometheus collector and the OpenTelemetry callbacks both
walk :data:`SERIES`; a new series (outlier ejections, panic mode, zone spill) is one more line
there.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .._balancer import LoadBalancer
from .._endpoint import Endpoint
from .._errors import ConfigurationError
from .._outcome import Outcome

COUNTER, GAUGE = "counter", "gauge"

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
"""Seconds: prometheus-client's default histogram buckets (+Inf is implied)."""

DEFAULT_ENDPOINT_LIMIT = 100
"""Per-endpoint series are opt-in, and then cover at most this many endpoints per balancer."""

CONDITIONS = ("ready", "serving", "terminating")

Sample = tuple[tuple[str, ...], float]
"""The values of a series' own labels (after ``name``), and the value."""


class DurationRecorder:
    """A balancer observer counting attempt durations into fixed buckets (plain list increments)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def __call__(
        self,
        endpoint: Endpoint,
        elapsed: float | None,
        outcome: Outcome,
        status: int | None,
        ra: float | None,
    ) -> None:
        if elapsed is not None:
            # bisect_left: a duration equal to a bound counts in that bucket (Prometheus' "le")
            self.counts[bisect_left(self.bounds, elapsed)] += 1
            self.sum += elapsed

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` for every bucket, +Inf last."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class EndpointRequests:
    """A balancer observer counting completed attempts per endpoint key (opt-in)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(
        self,
        endpoint: Endpoint,
        elapsed: float | None,
        outcome: Outcome,
        status: int | None,
        ra: float | None,
    ) -> None:
        key = endpoint.key
        self.counts[key] = self.counts.get(key, 0) + 1


def check_buckets(buckets: Iterable[float]) -> tuple[float, ...]:
    """Bucket bounds: finite, positive, strictly increasing (``ConfigurationError`` otherwise)."""
    try:
        bounds = tuple(float(b) for b in buckets)
    except (TypeError, ValueError):
        raise ConfigurationError(f"buckets must be numbers of seconds, not {buckets!r}") from None
    if (
        not bounds
        or any(not math.isfinite(b) or b <= 0 for b in bounds)
        or list(bounds) != sorted(set(bounds))
    ):
        raise ConfigurationError(
            f"buckets must be finite positive seconds in increasing order (+Inf is implied), not {buckets!r}"
        )
    return bounds


class Bound:
    """One balancer registered for export: its ``name`` label and its observers (a duration
    histogram unless ``buckets`` is None; per-endpoint request counts if ``per_endpoint``)."""

    def __init__(
        self,
        balancer: LoadBalancer,
        name: str,
        *,
        buckets: Sequence[float] | None,
        per_endpoint: bool,
        endpoint_limit: int,
    ) -> None:
        self.balancer, self.name = balancer, name
        self.durations = DurationRecorder(buckets) if buckets is not None else None
        self.endpoint_requests = EndpointRequests() if per_endpoint else None
        self.endpoint_limit = endpoint_limit
        self._removers = []
        if self.durations is not None:
            self._removers.append(balancer.add_observer(self.durations))
        if self.endpoint_requests is not None:
            self._removers.append(balancer.add_observer(self.endpoint_requests))

    def detach(self) -> None:
        """Stop observing the balancer."""
        for remove in self._removers:
            remove()
        self._removers = []

    # -- readers used by SERIES ---------------------------------------------------------------
    def inflight(self) -> int:
        total = getattr(self.balancer.algorithm, "total_inflight", None)
        return int(total()) if callable(total) else 0

    def overflowed(self) -> int:
        return int(getattr(self.balancer.algorithm, "overflowed", 0))

    def conditions(self) -> list[Sample]:
        eps = self.balancer.snapshot.endpoints
        return [
            (("ready",), sum(ep.ready for ep in eps)),
            (("serving",), sum(ep.serving for ep in eps)),
            (("terminating",), sum(ep.terminating for ep in eps)),
        ]

    def outcomes(self) -> list[Sample]:
        counts = self.balancer.counters.outcomes
        return [((o.label,), counts[o]) for o in Outcome]

    def health(self) -> Any:
        """What the policy's health steps report (ejected endpoints, panic, ramps, penalties)."""
        return self.balancer.policy.report()

    def zone(self) -> Any:
        """The zone filter's status, or None when the policy has no zone filter."""
        return self.balancer.status_zone()

    def watch_stats(self) -> Any:
        """The source's WatchStats (KubernetesSource), or None for another source."""
        return getattr(self.balancer.source, "watch_stats", None)

    def endpoints(self) -> list[Endpoint]:
        """The endpoints with per-endpoint series: at most ``endpoint_limit``, by key."""
        eps = sorted(self.balancer.snapshot.endpoints, key=lambda ep: ep.key)
        return eps[: self.endpoint_limit]

    def endpoint_inflight(self) -> list[Sample]:
        inflight = getattr(self.balancer.algorithm, "inflight", None)
        if self.endpoint_requests is None or not callable(inflight):
            return []
        return [((ep.key, ep.pod_name or ""), inflight(ep)) for ep in self.endpoints()]

    def endpoint_requests_total(self) -> list[Sample]:
        if self.endpoint_requests is None:
            return []
        counts = self.endpoint_requests.counts
        eps = self.endpoints()
        # Forget endpoints that are gone (their series ends, as any series of a deleted pod does),
        # so a Service whose pods churn does not grow this dict for ever.
        known = self.balancer.snapshot.keys
        for key in [k for k in counts if k not in known]:
            del counts[key]
        return [((ep.key, ep.pod_name or ""), counts.get(ep.key, 0)) for ep in eps]


def _one(read: Callable[[Bound], float | None]) -> Callable[[Bound], list[Sample]]:
    def samples(b: Bound) -> list[Sample]:
        value = read(b)
        return [] if value is None else [((), value)]

    return samples


def _watch(read: Callable[[Any], float | None]) -> Callable[[Bound], list[Sample]]:
    """A series read from the watch's stats; none for a source without a watch."""

    def samples(b: Bound) -> list[Sample]:
        stats = b.watch_stats()
        value = read(stats) if stats is not None else None
        return [] if value is None else [((), value)]

    return samples


def _watch_errors(b: Bound) -> list[Sample]:
    stats = b.watch_stats()
    return [] if stats is None else [((kind,), n) for kind, n in sorted(stats.errors.items())]


@dataclass(frozen=True)
class Series:
    """One exported series: ``name`` after the prefix (counters without ``_total``), its type,
    help text, labels after ``name``, and the reader giving its samples for one balancer."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]
    read: Callable[[Bound], list[Sample]]
    unit: str = ""


SERIES: tuple[Series, ...] = (
    # The seed's four.
    Series("lb_requests_inflight", GAUGE, "Requests in flight on the balancer's endpoints (draining ones included).", (), _one(Bound.inflight)),
    Series("lb_endpoints", GAUGE, "Endpoints the algorithm balances across (the eligible ones).", (), _one(lambda b: len(b.balancer.eligible))),
    Series("lb_requests", COUNTER, "Completed attempts on an endpoint, whatever their outcome.", (), _one(lambda b: sum(b.balancer.counters.outcomes))),
    Series("lb_requests_overflowed", COUNTER, "Requests a bounded-load hash algorithm moved off their full first-choice endpoint.", (), _one(Bound.overflowed)),
    # Endpoints as discovered.
    Series("lb_endpoints_discovered", GAUGE, "Endpoints in the last snapshot from discovery, whatever their conditions.", (), _one(lambda b: len(b.balancer.snapshot))),
    Series("lb_endpoints_condition", GAUGE, "Discovered endpoints whose condition (ready, serving, terminating) is true.", ("condition",), Bound.conditions),
    # Outcomes and the dispatch core's counters.
    Series("lb_request_outcomes", COUNTER, f"Completed attempts by outcome ({', '.join(o.label for o in Outcome)}).", ("outcome",), Bound.outcomes),
    Series("lb_retries", COUNTER, "Attempts sent again on another endpoint.", (), _one(lambda b: b.balancer.counters.retries)),
    Series("lb_retry_budget_exhausted", COUNTER, "Retries the retry budget refused.", (), _one(lambda b: b.balancer.counters.retry_budget_exhausted)),
    Series("lb_hedges", COUNTER, "Hedges sent: second attempts on another endpoint because the first was slow to answer.", (), _one(lambda b: b.balancer.counters.hedges)),
    Series("lb_hedge_budget_exhausted", COUNTER, "Hedges the hedge budget refused.", (), _one(lambda b: b.balancer.counters.hedge_budget_exhausted)),
    Series("lb_fallback_requests", COUNTER, "Attempts sent to the fallback target (no usable endpoint).", (), _one(lambda b: b.balancer.counters.fallback_requests)),
    Series("lb_unclosed_responses", COUNTER, "Responses released by a safety net because nobody closed them.", (), _one(lambda b: b.balancer.counters.unclosed_responses)),
    Series("lb_source_restarts", COUNTER, "Times the endpoint source stopped and was restarted.", (), _one(lambda b: b.balancer.counters.source_restarts)),
    # The Kubernetes watch (KubernetesSource only; shared by balancers on the same watch).
    Series("discovery_relists", COUNTER, "Lists of the Service's EndpointSlices after the first one (410 Gone, fallback to Endpoints).", (), _watch(lambda s: max(0, s.lists - 1))),
    Series("discovery_watch_restarts", COUNTER, "Watch requests after the first one (timeouts, dropped streams, errors).", (), _watch(lambda s: max(0, s.watches - 1))),
    Series("discovery_events", COUNTER, "Watch events and bookmarks received.", (), _watch(lambda s: s.events)),
    Series("discovery_errors", COUNTER, "List and watch failures by kind (unavailable, retryable, expired, unauthorized, auth_error, not_served, error, other).", ("kind",), _watch_errors),
    Series("discovery_last_event_age_seconds", GAUGE, "Seconds since the last list, watch event or bookmark.", (), _watch(lambda s: s.since_last_event()), unit="s"),
    # Per endpoint: opt-in (per_endpoint=True), at most endpoint_limit endpoints per balancer.
    Series("lb_endpoint_requests_inflight", GAUGE, "Requests in flight per endpoint (opt-in, capped).", ("endpoint", "pod"), Bound.endpoint_inflight),
    Series("lb_endpoint_requests", COUNTER, "Completed attempts per endpoint (opt-in, capped).", ("endpoint", "pod"), Bound.endpoint_requests_total),
    # Health: outlier ejection, panic, slow start, 429 penalties, zone spill.
    Series("lb_endpoints_ejected", GAUGE, "Endpoints ejected by outlier detection now.", (), _one(lambda b: len(b.health().ejected))),
    Series("lb_ejections", COUNTER, "Outlier ejections since the balancer started.", (), _one(lambda b: b.health().ejections)),
    Series("lb_panic", GAUGE, "1 while fewer endpoints are healthy than the panic threshold (traffic to all), else 0.", (), _one(lambda b: int(b.health().panic))),
    Series("lb_endpoints_slow_start", GAUGE, "Endpoints still ramping up under slow start.", (), _one(lambda b: len(b.health().slow_start))),
    Series("lb_endpoints_penalized", GAUGE, "Endpoints under a 429 / Retry-After penalty now.", (), _one(lambda b: len(b.health().penalized))),
    Series("lb_zone_spilling", GAUGE, "1 while the zone filter spills to other zones under load, else 0 (no zone filter: absent).", (), _one(lambda b: None if (z := b.zone()) is None else int(z.spilling))),
    Series("lb_zone_spills", COUNTER, "Times the zone filter started spilling to other zones.", (), _one(lambda b: None if (z := b.zone()) is None else z.spills)),
)  # fmt: skip

DURATION = Series(
    "lb_request_duration_seconds",
    "histogram",
    "Time from sending an attempt to its response headers (or failure), per balancer.",
    (),
    lambda b: [],
    unit="s",
)
