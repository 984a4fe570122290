"""The same series as OpenTelemetry observable instruments (``pip install 'kube-balance[otel]'``).

::

    from kube_balance.metrics import otel

    otel.instrument(lb)                         # the global MeterProvider
    otel.instrument(lb, meter_provider=provider, name="checkout")

Every instrument is observable: its callback reads the balancer's counters when the SDK collects,
so, as with Prometheus, the request path pays nothing. Counters drop Prometheus' ``_total``
suffix (OpenTelemetry's Prometheus exporter adds it back). The request duration histogram is not
exported here: the OpenTelemetry API has no observable histogram, and a synchronous one would
take the SDK's lock on every request; use the Prometheus collector for it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

try:
    from opentelemetry import metrics as _otel
    from opentelemetry.metrics import CallbackOptions, Observation
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kube_balance.metrics.otel needs opentelemetry-api: pip install 'kube-balance[otel]'"
    ) from exc

from .. import __version__
from .._balancer import LoadBalancer
from .._errors import ConfigurationError
from . import check_options
from ._series import COUNTER, DEFAULT_ENDPOINT_LIMIT, SERIES, Bound, Series

__all__ = ["Instrumentation", "instrument"]


class _Instruments:
    """One set of observable instruments per (meter provider, prefix), reading every bound balancer."""

    def __init__(self, meter: Any, prefix: str) -> None:
        self.prefix = prefix
        self.bound: dict[str, Bound] = {}
        for s in SERIES:
            create = meter.create_observable_counter if s.kind == COUNTER else meter.create_observable_gauge
            create(
                f"{prefix}_{s.name}", callbacks=[self._callback(s)], unit=s.unit or "1", description=s.help
            )

    def _callback(self, s: Series) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            out = []
            for b in list(self.bound.values()):
                for labels, value in s.read(b):
                    out.append(
                        Observation(value, {"name": b.name, **dict(zip(s.labels, labels, strict=True))})
                    )
            return out

        return observe


# meter provider -> prefix -> instruments (the API has no way to remove an instrument: they stay, empty)
_instruments: weakref.WeakKeyDictionary[Any, dict[str, _Instruments]] = weakref.WeakKeyDictionary()


class Instrumentation:
    """One balancer exported through one meter provider; :meth:`uninstrument` stops it."""

    def __init__(self, instruments: _Instruments, bound: Bound) -> None:
        self._instruments, self._bound = instruments, bound

    @property
    def name(self) -> str:
        """The ``name`` attribute of this balancer's observations."""
        return self._bound.name

    def uninstrument(self) -> None:
        """Stop reporting this balancer (idempotent)."""
        if self._instruments.bound.get(self._bound.name) is self._bound:
            del self._instruments.bound[self._bound.name]
            self._bound.detach()


_global_instruments: dict[str, _Instruments] = {}


def instrument(
    balancer: LoadBalancer,
    meter_provider: Any = None,
    name: str | None = None,
    prefix: str = "kube_balance",
    *,
    per_endpoint: bool = False,
    endpoint_limit: int = DEFAULT_ENDPOINT_LIMIT,
) -> Instrumentation:
    """Report ``balancer``'s series through ``meter_provider`` (default: the global one).

    ``name``, ``prefix``, ``per_endpoint`` and ``endpoint_limit`` mean what they mean for
    :func:`kube_balance.metrics.register`. The same balancer or ``name`` twice under one provider
    and prefix raises :class:`~kube_balance.ConfigurationError`.
    """
    if not isinstance(balancer, LoadBalancer):
        raise ConfigurationError(f"balancer must be a LoadBalancer, not {balancer!r}")
    check_options(name, prefix, per_endpoint, endpoint_limit)
    label = name if name is not None else str(balancer.service)
    by_prefix = _global_instruments if meter_provider is None else _instruments.setdefault(meter_provider, {})
    instruments = by_prefix.get(prefix)
    if instruments is None:
        meter = _otel.get_meter("kube_balance", __version__, meter_provider=meter_provider)
        instruments = by_prefix[prefix] = _Instruments(meter, prefix)
    for other in instruments.bound.values():
        if other.balancer is balancer:
            raise ConfigurationError(
                f"balancer {balancer.service} is already instrumented on this meter provider "
                f"(name={other.name!r}, prefix={prefix!r}); uninstrument() the first one first"
            )
    if label in instruments.bound:
        raise ConfigurationError(
            f"name {label!r} is already used on this meter provider (prefix={prefix!r}): pass name= to tell them apart"
        )
    bound = Bound(balancer, label, buckets=None, per_endpoint=per_endpoint, endpoint_limit=endpoint_limit)
    instruments.bound[label] = bound
    return Instrumentation(instruments, bound)
