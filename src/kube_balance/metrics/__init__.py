"""Prometheus metrics for balancers (``pip install kube-balance[prometheus]``); OpenTelemetry in
:mod:`kube_balance.metrics.otel`.

Nothing is exported until asked::

    from kube_balance import metrics

    registration = metrics.register(transport.balancer)          # prometheus-client's REGISTRY
    metrics.register(lb, registry=my_registry, name="checkout")  # or your own registry and label

Series are read from the balancer's own counters when scraped (a custom collector), so the
request path pays nothing for them; only the request duration histogram (and the opt-in
per-endpoint request counts) are kept per request, by an observer incrementing plain Python
counts. See docs/metrics.md for every series, its type, labels and PromQL examples.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from typing import Any

from .._balancer import LoadBalancer
from .._errors import ConfigurationError
from ._series import DEFAULT_BUCKETS, DEFAULT_ENDPOINT_LIMIT, SERIES, Bound, Series, check_buckets

__all__ = ["DEFAULT_BUCKETS", "DEFAULT_ENDPOINT_LIMIT", "Registration", "SERIES", "Series", "register"]

_PREFIX = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")

# registry -> prefix -> collector; weak, so a registry dropped by its owner takes its collectors along.
_collectors: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


class Registration:
    """One balancer exported in one registry; :meth:`unregister` stops it (idempotent)."""

    def __init__(self, registry: Any, collector: Any, bound: Bound) -> None:
        self.registry, self._collector, self._bound = registry, collector, bound

    @property
    def name(self) -> str:
        """The ``name`` label of this balancer's series."""
        return self._bound.name

    def unregister(self) -> None:
        """Remove the balancer's series and observers (the registry's other balancers stay)."""
        collector = self._collector
        if collector.bound.get(self._bound.name) is not self._bound:
            return
        del collector.bound[self._bound.name]
        self._bound.detach()
        if not collector.bound:
            self.registry.unregister(collector)
            _collectors.get(self.registry, {}).pop(collector.prefix, None)

    def __repr__(self) -> str:
        return f"<Registration {self._bound.name!r} prefix={self._collector.prefix!r}>"


def check_options(name: str | None, prefix: str, per_endpoint: bool, endpoint_limit: int) -> None:
    """Shared by :func:`register` and the OpenTelemetry side: each bad option named."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ConfigurationError(f"prefix must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), not {prefix!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigurationError(f"name must be a non-empty str (the 'name' label), not {name!r}")
    if not isinstance(per_endpoint, bool):
        raise ConfigurationError(f"per_endpoint must be True or False, not {per_endpoint!r}")
    if isinstance(endpoint_limit, bool) or not isinstance(endpoint_limit, int) or endpoint_limit < 1:
        raise ConfigurationError(f"endpoint_limit must be an int >= 1, not {endpoint_limit!r}")


def register(
    balancer: LoadBalancer,
    registry: Any = None,
    name: str | None = None,
    prefix: str = "kube_balance",
    *,
    per_endpoint: bool = False,
    endpoint_limit: int = DEFAULT_ENDPOINT_LIMIT,
    buckets: Iterable[float] = DEFAULT_BUCKETS,
) -> Registration:
    """Export ``balancer``'s series in ``registry`` (default: prometheus-client's ``REGISTRY``).

    ``name`` is the value of the ``name`` label (default: the Service reference, ``web.shop:http``);
    ``prefix`` starts every series name. ``per_endpoint`` adds per-endpoint in-flight and request
    series for at most ``endpoint_limit`` endpoints (by address order), since each endpoint is a
    series of its own. ``buckets`` are the request duration histogram's upper bounds in seconds.

    Registering the same balancer, or the same ``name``, twice in one registry under one prefix
    raises :class:`~kube_balance.ConfigurationError`: call :meth:`Registration.unregister` first.
    """
    if not isinstance(balancer, LoadBalancer):
        raise ConfigurationError(f"balancer must be a LoadBalancer, not {balancer!r}")
    check_options(name, prefix, per_endpoint, endpoint_limit)
    bounds = check_buckets(buckets)
    try:
        from prometheus_client import REGISTRY

        from ._prometheus import BalancerCollector
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "kube_balance.metrics needs prometheus-client: pip install kube-balance[prometheus]"
        ) from exc
    registry = REGISTRY if registry is None else registry
    label = name if name is not None else str(balancer.service)
    by_prefix = _collectors.setdefault(registry, {})
    collector = by_prefix.get(prefix)
    if collector is not None:
        for other in collector.bound.values():
            if other.balancer is balancer:
                raise ConfigurationError(
                    f"balancer {balancer.service} is already registered in this registry (name={other.name!r}, "
                    f"prefix={prefix!r}); unregister() the first registration, or use another registry"
                )
        if label in collector.bound:
            raise ConfigurationError(
                f"name {label!r} is already used in this registry (prefix={prefix!r}) by another balancer: "
                "pass name= to tell them apart"
            )
    bound = Bound(balancer, label, buckets=bounds, per_endpoint=per_endpoint, endpoint_limit=endpoint_limit)
    if collector is None:
        collector = BalancerCollector(prefix)
        collector.bound[label] = bound
        try:
            registry.register(collector)
        except ValueError as exc:  # a name clash with another collector of the registry
            bound.detach()
            raise ConfigurationError(
                f"cannot register kube-balance metrics with prefix {prefix!r}: {exc}"
            ) from exc
        by_prefix[prefix] = collector
    else:
        collector.bound[label] = bound
    return Registration(registry, collector, bound)
