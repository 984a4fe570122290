"""Prometheus metrics for balancers (``pip install 'kube-balance[prometheus]'``); OpenTelemetry in
:mod:`kube_balance.metrics.otel`.

Nothing is exported until asked::

    from kube_balance import metrics

    registration = metrics.register(transport.balancer)          # prometheus-client's REGISTRY
    metrics.register(lb, registry=my_registry, name="checkout")  # or your own registry and label
    metrics.register(BalancedTransport.cluster())                # every balancer it starts, while it runs

Series are read from the balancer's own counters when scraped (a custom collector), so the
request path pays nothing for them; only the request duration histogram (and the opt-in
per-endpoint request counts) are kept per request, by an observer incrementing plain Python
counts. See docs/metrics.md for every series, its type, labels and PromQL examples.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterable
from typing import Any, overload

from .._balancer import LoadBalancer
from .._errors import ConfigurationError
from ._series import DEFAULT_BUCKETS, DEFAULT_ENDPOINT_LIMIT, SERIES, Bound, Series, check_buckets

__all__ = [
    "ClusterRegistration",
    "DEFAULT_BUCKETS",
    "DEFAULT_ENDPOINT_LIMIT",
    "Registration",
    "SERIES",
    "Series",
    "register",
]

logger = logging.getLogger("kube_balance")

_PREFIX = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")

# registry -> prefix -> collector; weak, so a registry dropped by its owner takes its collectors along.
_collectors: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _release(registry: Any, collector: Any) -> None:
    """Unregister ``collector`` once nothing holds it (no balancer bound, no cluster client)."""
    if not collector.bound and not collector.clients:
        registry.unregister(collector)
        _collectors.get(registry, {}).pop(collector.prefix, None)


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
        _release(self.registry, collector)

    def __repr__(self) -> str:
        return f"<Registration {self._bound.name!r} prefix={self._collector.prefix!r}>"


class ClusterRegistration:
    """A cluster client exported in one registry: each balancer it starts is exported from its
    start to its stop (idle, evicted, its Service changed, the client closed), under the ``name``
    label ``web.shop:http`` (``NAME/web.shop:http`` given ``name=``); :meth:`unregister` stops it all."""

    def __init__(
        self, registry: Any, collector: Any, routes: Any, name: str | None, options: dict[str, Any]
    ) -> None:
        self.registry, self._collector, self._name, self._options = registry, collector, name, options
        self._bound: dict[int, Bound] = {}  # id(balancer) -> its series
        collector.clients += 1
        self._remove = routes.add_listener(self._on)
        for balancer in routes.balancers:
            self._on(balancer, True)

    @property
    def names(self) -> list[str]:
        """The ``name`` labels exported now, one per running balancer."""
        return [b.name for b in self._bound.values()]

    def _on(self, balancer: LoadBalancer, started: bool) -> None:
        if not started:
            bound = self._bound.pop(id(balancer), None)
            if bound is not None:
                self._drop(bound)
            return
        label = str(balancer.service) if self._name is None else f"{self._name}/{balancer.service}"
        if id(balancer) in self._bound:
            return
        if label in self._collector.bound:  # on a request's path: said, not raised
            logger.warning(
                "metrics: name %r is already used in this registry (prefix=%r); balancer %s is not "
                "exported: register the cluster client with name= to tell them apart",
                label,
                self._collector.prefix,
                balancer.service,
            )
            return
        bound = self._bound[id(balancer)] = Bound(balancer, label, **self._options)
        self._collector.bound[label] = bound

    def _drop(self, bound: Bound) -> None:
        if self._collector.bound.get(bound.name) is bound:
            del self._collector.bound[bound.name]
        bound.detach()

    def unregister(self) -> None:
        """Stop following the client and remove every series it exported (idempotent)."""
        if self._remove is None:
            return
        self._remove()
        self._remove = None
        for bound in self._bound.values():
            self._drop(bound)
        self._bound.clear()
        self._collector.clients -= 1
        _release(self.registry, self._collector)

    def __repr__(self) -> str:
        return f"<ClusterRegistration {self._name!r} prefix={self._collector.prefix!r} {self.names}>"


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


def _cluster_routes(client: object) -> Any:
    """The cluster table of a cluster client (or the table itself); ConfigurationError otherwise."""
    from .._cluster import ClusterRoutes

    routes = client if isinstance(client, ClusterRoutes) else getattr(client, "cluster_routes", None)
    if isinstance(routes, ClusterRoutes):
        return routes
    raise ConfigurationError(
        f"cannot register {client!r}: expected a LoadBalancer, or a cluster client "
        "(BalancedTransport.cluster(), BalancedConnector.cluster()); for a client of named Services, "
        "register each of its .balancers"
    )


@overload
def register(
    balancer: LoadBalancer,
    registry: Any = None,
    name: str | None = None,
    prefix: str = "kube_balance",
    *,
    per_endpoint: bool = False,
    endpoint_limit: int = DEFAULT_ENDPOINT_LIMIT,
    buckets: Iterable[float] = DEFAULT_BUCKETS,
) -> Registration: ...


@overload
def register(
    balancer: Any,
    registry: Any = None,
    name: str | None = None,
    prefix: str = "kube_balance",
    *,
    per_endpoint: bool = False,
    endpoint_limit: int = DEFAULT_ENDPOINT_LIMIT,
    buckets: Iterable[float] = DEFAULT_BUCKETS,
) -> ClusterRegistration: ...


def register(
    balancer: Any,
    registry: Any = None,
    name: str | None = None,
    prefix: str = "kube_balance",
    *,
    per_endpoint: bool = False,
    endpoint_limit: int = DEFAULT_ENDPOINT_LIMIT,
    buckets: Iterable[float] = DEFAULT_BUCKETS,
) -> Registration | ClusterRegistration:
    """Export ``balancer``'s series in ``registry`` (default: prometheus-client's ``REGISTRY``).

    ``name`` is the value of the ``name`` label (default: the Service reference, ``web.shop:http``);
    ``prefix`` starts every series name. ``per_endpoint`` adds per-endpoint in-flight and request
    series for at most ``endpoint_limit`` endpoints (by address order), since each endpoint is a
    series of its own. ``buckets`` are the request duration histogram's upper bounds in seconds.

    ``balancer`` may also be a cluster client (``BalancedTransport.cluster()``,
    ``BalancedConnector.cluster()``): each balancer it starts is exported until it stops, and
    ``name`` (if given) prefixes each one's label: ``NAME/web.shop:http``.

    Registering the same balancer, or the same ``name``, twice in one registry under one prefix
    raises :class:`~kube_balance.ConfigurationError`: call :meth:`Registration.unregister` first.
    """
    routes = None if isinstance(balancer, LoadBalancer) else _cluster_routes(balancer)
    check_options(name, prefix, per_endpoint, endpoint_limit)
    bounds = check_buckets(buckets)
    options: dict[str, Any] = {
        "buckets": bounds,
        "per_endpoint": per_endpoint,
        "endpoint_limit": endpoint_limit,
    }
    try:
        from prometheus_client import REGISTRY
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "kube_balance.metrics needs prometheus-client: pip install 'kube-balance[prometheus]'"
        ) from exc
    registry = REGISTRY if registry is None else registry
    if routes is not None:
        return ClusterRegistration(registry, _collector(registry, prefix), routes, name, options)
    label = name if name is not None else str(balancer.service)
    collector = _collectors.get(registry, {}).get(prefix)
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
    bound = Bound(balancer, label, **options)
    try:
        collector = _collector(registry, prefix)
    except ConfigurationError:
        bound.detach()
        raise
    collector.bound[label] = bound
    return Registration(registry, collector, bound)


def _collector(registry: Any, prefix: str) -> Any:
    """The registry's collector for ``prefix``, registered on first use."""
    from ._prometheus import BalancerCollector

    by_prefix = _collectors.setdefault(registry, {})
    collector = by_prefix.get(prefix)
    if collector is None:
        collector = BalancerCollector(prefix)
        try:
            registry.register(collector)
        except ValueError as exc:  # a name clash with another collector of the registry
            raise ConfigurationError(
                f"cannot register kube-balance metrics with prefix {prefix!r}: {exc}"
            ) from exc
        by_prefix[prefix] = collector
    return collector
