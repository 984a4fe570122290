"""The Prometheus side: one custom collector per (registry, prefix), reading bound balancers at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ._series import COUNTER, DURATION, SERIES, Bound


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class BalancerCollector(Collector):
    """Every series of every balancer registered under one prefix in one registry.

    One collector holds them all, so each metric name is one family (one ``# TYPE`` line) with a
    sample per balancer, told apart by the ``name`` label.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.bound: dict[str, Bound] = {}
        self.clients = 0  # cluster clients registered: they keep the collector while they have no balancer

    def describe(self) -> Iterator[Metric]:
        """The families, without samples: lets the registry refuse a clashing name at register()."""
        for s in SERIES:
            yield self._family(s.name, s.kind, s.help, s.labels)
        yield HistogramMetricFamily(f"{self.prefix}_{DURATION.name}", DURATION.help, labels=["name"])

    def _family(
        self, name: str, kind: str, help_text: str, labels: tuple[str, ...]
    ) -> CounterMetricFamily | GaugeMetricFamily:
        cls = CounterMetricFamily if kind == COUNTER else GaugeMetricFamily
        return cls(f"{self.prefix}_{name}", help_text, labels=["name", *labels])

    def collect(self) -> Iterator[Metric]:
        """Read every bound balancer now (scrape time)."""
        bound = list(self.bound.values())
        for s in SERIES:
            family = self._family(s.name, s.kind, s.help, s.labels)
            for b in bound:
                for labels, value in s.read(b):
                    family.add_metric([b.name, *labels], value)
            if family.samples:
                yield family
        hist = HistogramMetricFamily(f"{self.prefix}_{DURATION.name}", DURATION.help, labels=["name"])
        for b in bound:
            if b.durations is None:  # pragma: no cover - register() always asks for one
                continue
            buckets = [(_bound_text(le), n) for le, n in b.durations.cumulative()]
            hist.add_metric([b.name], buckets, sum_value=b.durations.sum)
        if bound:
            yield hist
