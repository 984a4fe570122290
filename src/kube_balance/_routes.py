"""Several Services through one client: which balancer a request's host belongs to.

Both integrations take one Service or a list (``"web.shop:http"``, a :class:`ServiceRef`, or a
running :class:`LoadBalancer` that the client uses and does not close). Each Service gets a
balancer, and each of the host names that name it (``web.shop``, ``web.shop.svc``, ...) maps to
a route of the integration's own type. This module owns that table, so the httpx transport and
the aiohttp connector resolve hosts, refuse duplicates and report balancers the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from ._affinity import AffinityKey, KeyFunction
from ._balancer import LoadBalancer
from ._errors import ConfigurationError
from ._service import ServiceRef

ServiceSpec = str | ServiceRef | LoadBalancer
R = TypeVar("R")


def as_list(services: ServiceSpec | Sequence[ServiceSpec] | Iterable[ServiceSpec]) -> list[ServiceSpec]:
    """One Service or several, as a non-empty list."""
    if isinstance(services, (str, ServiceRef, LoadBalancer)):
        return [services]
    try:
        specs = list(services)
    except TypeError:
        raise ConfigurationError(
            f"service {services!r} must be a Service reference ('name.ns:port'), a ServiceRef, a "
            "LoadBalancer or a list of them"
        ) from None
    if not specs:
        raise ConfigurationError("service list is empty: give at least one Service reference")
    for spec in specs:
        if not isinstance(spec, (str, ServiceRef, LoadBalancer)):
            raise ConfigurationError(
                f"service {spec!r} in {services!r} is not a Service reference ('name.ns:port'), a "
                "ServiceRef or a LoadBalancer"
            )
    return specs


def balancers(
    services: ServiceSpec | Sequence[ServiceSpec], balancer_options: Mapping[str, Any]
) -> list[tuple[LoadBalancer, bool]]:
    """A balancer per Service, and whether the client owns it (True unless it was given one).

    ``balancer_options`` (algorithm, source, fallback, ...) configure the balancers built here;
    ``source`` can only serve one Service.
    """
    specs = as_list(services)
    if any(isinstance(spec, LoadBalancer) for spec in specs):
        # A given balancer was built with its own algorithm, source, fallback and rng: a value
        # given here too would be silently ignored, so it is refused instead.
        defaults = {"algorithm": "least_request", "fallback": "service"}
        given = [
            name
            for name, value in balancer_options.items()
            if name != "clock" and value is not None and value != defaults.get(name)
        ]
        if given:
            raise ConfigurationError(
                f"given a LoadBalancer and {', '.join(given)}: these belong to the LoadBalancer; "
                "pass them to LoadBalancer(...) instead, or pass the service name here"
            )
    if balancer_options.get("source") is not None and len(specs) > 1:
        raise ConfigurationError(
            f"service {services!r} names {len(specs)} Services, but source= applies to one Service: "
            "pass a LoadBalancer (with its own source) per Service instead"
        )
    return [
        (spec, False) if isinstance(spec, LoadBalancer) else (LoadBalancer(spec, **balancer_options), True)
        for spec in specs
    ]


def affinity_for(
    balancer: LoadBalancer, affinity: AffinityKey | str | KeyFunction | None
) -> AffinityKey | None:
    """How to read a request's key for ``balancer``: ``affinity``, else the seed's ``X-Affinity``
    header when its algorithm needs a key, else None."""
    key = AffinityKey.parse(affinity)
    if key is None and getattr(balancer.algorithm, "requires_key", False):
        return AffinityKey()
    return key


class Routes(Generic[R]):
    """Routes by request host; a host is matched case-insensitively, without a trailing dot.

    ``static``: every route is known up front, so :meth:`get` answers alone (the cluster table,
    ``kube_balance._cluster.ClusterRoutes``, needs :meth:`resolve` with the port).
    """

    static = True

    def __init__(self) -> None:
        self._by_host: dict[str, R] = {}
        self.exact: Mapping[str, R] = self._by_host  # the hosts as given: a lookup without get()
        self._balancers: dict[int, tuple[LoadBalancer, R]] = {}

    def add(self, balancer: LoadBalancer, route: R) -> None:
        """Route every host name of ``balancer``'s Service to ``route``; a host given twice is refused."""
        for host in balancer.service.hosts:
            if host in self._by_host:
                raise ConfigurationError(f"service {balancer.service} is given twice (host {host!r})")
            self._by_host[host] = route
        self._balancers[id(balancer)] = (balancer, route)

    def get(self, host: str | None) -> R | None:
        """The route for ``host``, or None when the host is not balanced."""
        if not host:
            return None
        route = self._by_host.get(host)
        if route is None:
            route = self._by_host.get(host.rstrip(".").lower())
        return route

    async def resolve(self, host: str | None, port: int | None, scheme: str = "http") -> R | None:
        """:meth:`get`, as the cluster table's ``resolve`` (the port plays no part here)."""
        return self.get(host)

    async def aclose(self) -> None:
        """Nothing of its own to close: the integration closes the routes."""

    @property
    def balancers(self) -> list[LoadBalancer]:
        """The balancers, in the order their Services were given."""
        return [balancer for balancer, _ in self._balancers.values()]

    @property
    def routes(self) -> list[R]:
        """One route per Service, in the order given."""
        return [route for _, route in self._balancers.values()]

    def build(
        self,
        services: ServiceSpec | Sequence[ServiceSpec],
        balancer_options: Mapping[str, Any],
        route: Callable[[LoadBalancer, bool], R],
    ) -> Routes[R]:
        """Add a route ``route(balancer, owned)`` for each Service; returns self."""
        for balancer, owned in balancers(services, balancer_options):
            self.add(balancer, route(balancer, owned))
        return self
