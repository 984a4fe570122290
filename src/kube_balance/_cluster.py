"""Cluster mode: every Service in the cluster through one client, each watched while it is in use.

A request's host is read as a Service name (:func:`parse_host`); the first request for a Service
reads the Service object (once, shared by concurrent first requests), maps the URL's port (the
Service port) to the port name the EndpointSlices carry, as kube-proxy does, and starts a
:class:`LoadBalancer` watching its EndpointSlices. The read holds for ``service_refresh``
seconds: the first request after that reads the Service again in the background, and a port
renamed or removed, or a Service deleted or made ExternalName, retires the routes it changes.
Hosts that are not Services, and Services that cannot be balanced (ExternalName, no endpoint at
all), pass through; a Service whose EndpointSlices the client may not read (403) raises
:class:`DiscoveryAuthError`. When Services stop (idle, evicted) is ``_cluster_idle.py``'s policy.

:class:`ClusterRoutes` has the interface of :class:`~kube_balance._routes.Routes` (``resolve``,
``routes``, ``balancers``, ``aclose``), so the httpx transport and the aiohttp connector use either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Generic

from ._balancer import LoadBalancer
from ._cluster_idle import Entry, R, Sweeper, busy, idle, least_recently_used
from ._cluster_options import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_SERVICES,
    DEFAULT_SERVICE_REFRESH,
    ClusterSpec,
    check_options,
    parse_host,
)
from ._cluster_service import (
    READS,
    WATCHES,
    passes_through,
    port_name,
    read_service,
    stale_ports,
    watch_refused,
    with_hint,
)
from ._errors import DiscoveryAuthError, TooManyServices, UnknownServicePort
from ._routes import Routes
from ._service import DEFAULT_CLUSTER_DOMAIN, ServiceRef, client_namespace
from .algorithms import Clock

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_SERVICES",
    "DEFAULT_SERVICE_REFRESH",
    "ClusterRoutes",
    "ClusterSpec",
    "TooManyServices",
    "UnknownServicePort",
    "parse_host",
    "route_table",
]

logger = logging.getLogger("kube_balance")

UNAVAILABLE_RECHECK = 5.0
"""Seconds a Service whose read failed (API unreachable) passes through before the next read."""
_HOST_CACHE = 4096  # parsed hosts kept; the cache is emptied when full (hosts are few in practice)
_UNSEEN: Any = object()

Listener = Callable[[LoadBalancer, bool], None]
"""Told ``(balancer, True)`` when a Service port's balancer starts, ``(balancer, False)`` when it stops."""


class ClusterRoutes(Generic[R]):
    """Routes for every Service of the cluster, started on first use and stopped when idle.

    ``route(balancer, owned)`` builds an integration's route for a new balancer (as
    :meth:`Routes.build` does); ``balancer_options`` (algorithm by name, algorithm_options, rng,
    clock) configure each Service's balancer; ``spec`` holds the cluster options and the
    :class:`~kube_balance.discovery.KubernetesSource` options. ``clock`` times idleness and the
    Service re-reads (default ``time.monotonic``).
    """

    static = False

    def __init__(
        self,
        route: Callable[[LoadBalancer, bool], R],
        spec: ClusterSpec,
        *,
        balancer_options: Mapping[str, Any],
        clock: Clock | None = None,
    ) -> None:
        check_options(spec, clock, balancer_options)
        self._route = route
        self._balancer_options = dict(balancer_options)
        self._source_options = dict(spec.source_options)
        self.namespace: str = (
            spec.namespace
            if spec.namespace is not None
            else client_namespace(self._source_options.get("kubeconfig"), self._source_options.get("context"))
        )
        self.namespaces = None if spec.namespaces is None else frozenset[str](spec.namespaces)
        self.cluster_domain = spec.cluster_domain
        self.idle_timeout = float(spec.idle_timeout)
        self.max_services = spec.max_services
        self.service_refresh = float(spec.service_refresh)
        self._clock: Clock = clock if clock is not None else time.monotonic
        self._hosts: dict[str, tuple[str, str] | None] = {}
        self._services: dict[tuple[str, str], Entry[R]] = {}
        self._retired: list[R] = []  # routes whose Service changed, closed once nothing is in flight
        self._reads: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._config: Any = None  # the ClientConfig the Service reads go through
        self._sweeper = Sweeper(self.idle_timeout, self.sweep)
        self._listeners: list[Listener] = []
        self._closed = False  # aclose()d: a request would start a watch nothing stops

    # -- the request path -------------------------------------------------------------------
    def get(self, host: str | None) -> R | None:
        """Always None: in cluster mode a route depends on the port too (use :meth:`resolve`)."""
        return None

    async def resolve(self, host: str | None, port: int | None, scheme: str = "http") -> R | None:
        """The route for ``host:port`` (the Service port; None: 80, or 443 for https), starting
        the Service's watch on its first request; None to pass the request through."""
        if self._closed:
            raise RuntimeError("cannot send a request: the cluster transport (connector) has been closed")
        if not host:
            return None
        names = self._hosts.get(host, _UNSEEN)
        if names is _UNSEEN:
            names = self._parse(host)
        if names is None:
            return None
        svc = self._services.get(names)
        number = port if port is not None else 443 if scheme == "https" else 80
        if svc is not None and (r := svc.routes.get(number)) is not None:
            now = svc.used = self._clock()
            if now >= svc.expires and names not in self._reads:
                self._read_in_background(names)
            balancer = r.balancer
            if balancer.started and balancer.eligible:
                return r
        return await self._resolve_slow(names, number)

    def _parse(self, host: str) -> tuple[str, str] | None:
        names = parse_host(host, namespace=self.namespace, cluster_domain=self.cluster_domain)
        if names is not None and self.namespaces is not None and names[1] not in self.namespaces:
            names = None
        if len(self._hosts) >= _HOST_CACHE:
            self._hosts.clear()
        self._hosts[host] = names
        return names

    async def _resolve_slow(self, names: tuple[str, str], port: int) -> R | None:
        self._sweeper.start()
        svc = await self._read(names)
        if port not in svc.routes and svc.routes and svc.expires <= self._clock():
            svc = await self._read(names, again=True)  # a new port: on the Service as it is now
        if svc.error is not None:  # a new exception each time: one raised twice grows its traceback
            raise type(svc.error)(str(svc.error)) from svc.error.__cause__
        if passes_through(svc.obj):
            return None
        svc.used = self._clock()
        r = svc.routes.get(port)
        if r is None:
            r = await self._add(names, svc, port)
        await r.balancer.ensure_started()  # concurrent first requests wait on the same start
        if svc.routes.get(port) is not r:  # stopped meanwhile (evicted, its Service changed): again
            return await self._resolve_slow(names, port)
        if r.balancer.eligible:
            return r
        refused = watch_refused(r.balancer)
        if refused is not None:  # nothing to balance over because RBAC says no: say so
            raise with_hint(refused, names[1], WATCHES)
        return None

    async def _read(self, names: tuple[str, str], again: bool = False) -> Entry[R]:
        """The Service's entry, read from the API if it is new or its negative answer expired
        (or ``again``); concurrent callers share one read."""
        svc = self._services.get(names)
        while again or svc is None or (not svc.routes and svc.expires <= self._clock()):
            again = False
            await asyncio.shield(self._reads.get(names) or self._read_in_background(names))
            svc = self._services.get(names)
            if svc is not None and (svc.expires > self._clock() or svc.routes):
                break
        return svc

    def _read_in_background(self, names: tuple[str, str]) -> asyncio.Future[None]:
        read = self._reads[names] = asyncio.ensure_future(self._fetch(names))

        def done(f: asyncio.Future[None]) -> None:
            self._reads.pop(names, None)
            if not f.cancelled() and f.exception() is not None:  # retrieved: a waiter re-raises it
                logger.warning("reading Service %s/%s failed: %r", names[1], names[0], f.exception())

        read.add_done_callback(done)
        return read

    async def _fetch(self, names: tuple[str, str]) -> None:
        from .discovery.kubernetes._config import ClientConfig

        name, ns = names
        svc = self._services.get(names) or Entry[R]()
        if self._config is None:
            self._config = ClientConfig(**self._source_options)
        obj, failed = await read_service(self._config, name, ns)
        svc.error, ttl = None, self.service_refresh
        if failed is not None:  # unreachable, 5xx, 401/403: go on as DNS would, or as last read
            if svc.routes:
                going = "its balancers go on with the last read"
            elif isinstance(failed, DiscoveryAuthError):  # the fix: RBAC, namespaces; not DNS
                going = "its requests raise DiscoveryAuthError until it can be read"
                svc.error = with_hint(failed, ns, READS)
            else:
                going = "passing its requests through"
            logger.warning("cannot read Service %s/%s (%s): %s", ns, name, failed, going)
            obj, ttl = (svc.obj if svc.routes else None), UNAVAILABLE_RECHECK
        svc.obj, svc.expires = obj, self._clock() + ttl
        self._services[names] = svc
        stale = stale_ports(obj, [(port, r.balancer) for port, r in svc.routes.items()])
        for port in stale:  # retired: no new request takes them; closed once idle
            logger.info("Service %s/%s changed: the balancer of its port %d stops", ns, name, port)
            self._retired.append(svc.routes.pop(port))
        if stale:
            await self._drain()

    async def _add(self, names: tuple[str, str], svc: Entry[R], port: int) -> R:
        """A new balancer and route for one port of a Service already read."""
        name, ns = names
        assert svc.obj is not None
        watched_port = port_name(svc.obj, name, ns, port)
        if not svc.routes and self._watched() >= self.max_services:
            await self._evict(names)
        if port in svc.routes:  # another request added it while we evicted
            return svc.routes[port]
        from .discovery import KubernetesSource

        domain = None if self.cluster_domain == DEFAULT_CLUSTER_DOMAIN else self.cluster_domain
        ref = ServiceRef(name, ns, watched_port, None, domain)
        balancer = LoadBalancer(
            ref,
            source=KubernetesSource(ref, **self._source_options),
            fallback=f"{ref.host}:{port}",  # the Service's DNS name, as a plain client would dial
            **self._balancer_options,
        )
        r = svc.routes[port] = self._route(balancer, True)
        for listener in tuple(self._listeners):
            listener(balancer, True)
        return r

    def _watched(self) -> int:
        return sum(1 for s in self._services.values() if s.routes)

    async def _evict(self, names: tuple[str, str]) -> None:
        """Stop the least recently used idle Service to make room, or raise TooManyServices."""
        key = least_recently_used(self._services)
        if key is None:
            raise TooManyServices(
                f"cannot balance Service {names[1]}/{names[0]}: {self.max_services} Services are "
                f"watched (max_services={self.max_services}) and every one has requests in flight; "
                "raise max_services, or lower idle_timeout so idle Services stop sooner"
            )
        await self._stop(key)

    # -- stopping ---------------------------------------------------------------------------
    async def sweep(self) -> list[str]:
        """Stop every Service idle for ``idle_timeout`` with nothing in flight; returns their
        ``ns/name``. Runs by itself every ``idle_timeout / 4`` (at most every minute)."""
        now = self._clock()
        stale = idle(self._services, now, self.idle_timeout)
        for key in stale:
            await self._stop(key)
        for key in [k for k, s in self._services.items() if not s.routes and s.expires <= now]:
            del self._services[key]  # answers no longer held (no such Service, ExternalName)
        await self._drain()
        return [f"{ns}/{name}" for name, ns in stale]

    async def _stop(self, key: tuple[str, str]) -> None:
        svc = self._services.pop(key)
        routes, svc.routes = list(svc.routes.values()), {}
        for r in routes:
            await self._close(r)

    async def _drain(self) -> None:
        """Close the retired routes with nothing in flight (the others wait for the next sweep)."""
        retired, self._retired = self._retired, []
        done: list[R] = []
        for r in retired:
            (self._retired if busy((r,)) else done).append(r)
        for r in done:
            await self._close(r)

    async def _close(self, r: R) -> None:
        await r.dispatcher.aclose()
        await r.balancer.aclose()
        self._stopped(r)

    def _stopped(self, r: R) -> None:
        for listener in tuple(self._listeners):
            listener(r.balancer, False)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(balancer, True)`` when a Service port's balancer starts and
        ``listener(balancer, False)`` when it stops (idle, evicted, its Service changed, the
        client closed); returns a remover. Metrics use it to follow the balancers."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # -- the table's interface ----------------------------------------------------------------
    @property
    def routes(self) -> list[R]:
        """The routes running now: one per Service port in use, then those draining."""
        return [r for s in self._services.values() for r in s.routes.values()] + self._retired

    @property
    def balancers(self) -> list[LoadBalancer]:
        """The balancers running now (one per Service port in use, then those draining)."""
        return [r.balancer for r in self.routes]

    @property
    def watched(self) -> list[str]:
        """``ns/name`` of every Service watched now."""
        return [f"{ns}/{name}" for (name, ns), s in self._services.items() if s.routes]

    async def refresh(self) -> None:
        """Read every watched Service again now (as the first request after ``service_refresh``
        does in the background), retiring the routes a change no longer backs."""
        for names in [k for k, s in self._services.items() if s.routes]:
            await self._read(names, again=True)

    async def aclose(self) -> None:
        """Stop the idle sweep and the reads, and close the API client used to read Services
        (the integration closes the routes, as it does a fixed table's)."""
        self._closed = True
        await self._sweeper.aclose()
        reads = list(self._reads.values())
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        routes = self.routes
        for s in self._services.values():
            s.routes = {}
        self._services.clear()
        self._retired = []
        for r in routes:
            self._stopped(r)
        config, self._config = self._config, None
        if config is not None:
            await config.aclose()


def route_table(
    services: Any, balancer_options: Mapping[str, Any], route: Callable[[LoadBalancer, bool], R]
) -> Routes[R] | ClusterRoutes[R]:
    """The integration's route table: a fixed :class:`Routes` for the Services given, or a
    :class:`ClusterRoutes` for a :class:`ClusterSpec`."""
    if not isinstance(services, ClusterSpec):
        return Routes[R]().build(services, balancer_options, route)
    check_options(services, balancer_options.get("clock"), balancer_options)
    options = {k: v for k, v in balancer_options.items() if k not in ("source", "fallback")}
    from .discovery.kubernetes._config import ClientConfig

    ClientConfig(**services.source_options)  # a wrong credential option fails now, by name
    return ClusterRoutes(route, services, balancer_options=options, clock=balancer_options.get("clock"))
