"""OpenTelemetry: the same series as observable instruments, read by the SDK's InMemoryMetricReader."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from kube_balance import ConfigurationError, Endpoint, LoadBalancer, Outcome
from kube_balance.discovery.static import StaticSource
from kube_balance.metrics import SERIES
from kube_balance.metrics.otel import instrument


def collect(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, object], float]]]:
    """metric name -> [(attributes, value)] from one collection."""
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, object], float]]] = {}
    if data is None:  # nothing observed at all
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = [(dict(p.attributes or {}), p.value) for p in m.data.data_points]  # type: ignore[attr-defined]
    return out


def test_observable_instruments_read_the_balancer_at_collection() -> None:
    """Requests put on the balancer show up at the next collection, labelled by name and outcome."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    lb = LoadBalancer("web.shop:http", source=StaticSource(["10.0.0.1:80", "10.0.0.2:80"]), fallback="none")
    lb.on_endpoints(lb.source.snapshot)  # type: ignore[attr-defined]  # no loop needed: push it ourselves
    registration = instrument(lb, meter_provider=provider, per_endpoint=True)
    ep = Endpoint.parse("10.0.0.1:80")
    for outcome in (Outcome.OK, Outcome.OK, Outcome.TIMEOUT):
        lb.put(ep, 0.01, outcome=outcome)
    got = collect(reader)
    name = {"name": "web.shop:http"}
    assert got["kube_balance_lb_requests"] == [(name, 3)]
    assert got["kube_balance_lb_endpoints"] == [(name, 2)]
    outcomes = {attrs["outcome"]: v for attrs, v in got["kube_balance_lb_request_outcomes"]}
    assert outcomes["ok"] == 2 and outcomes["timeout"] == 1 and outcomes["reset"] == 0
    per_endpoint = {attrs["endpoint"]: v for attrs, v in got["kube_balance_lb_endpoint_requests"]}
    assert per_endpoint == {"10.0.0.1:80": 3, "10.0.0.2:80": 0}
    # Every library-neutral series with samples for this source has an instrument.
    # (discovery_* need a Kubernetes source, lb_zone_* a zone filter: neither is here)
    wanted = {s.name for s in SERIES if not s.name.startswith(("discovery_", "lb_zone_"))}
    assert {f"kube_balance_{n}" for n in wanted} <= set(got)

    with pytest.raises(ConfigurationError, match="already instrumented"):
        instrument(lb, meter_provider=provider, name="again")
    registration.uninstrument()
    lb.put(ep, 0.01, outcome=Outcome.OK)
    assert not collect(reader).get("kube_balance_lb_requests")  # no longer reported
