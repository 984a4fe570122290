"""Cluster mode: every Service in the cluster through one client, each watched while it is in use.

A request's host is read as a Service name (:func:`parse_host`); the first request for a Service
reads the Service object (once, shared by concurrent first requests), maps the URL's port (the
Service port) to the port name the EndpointSlices carry, as kube-proxy does, and starts a
:class:`LoadBalancer` watching its EndpointSlices. A Service left idle for ``idle_timeout`` seconds
is stopped; at most ``max_services`` Services are watched at once (the least recently used idle
one makes room; when none is idle, :class:`TooManyServices`). Hosts that are not Services, and
Services that cannot be balanced (ExternalName, no endpoint at all), pass through.

:class:`ClusterRoutes` has the interface of :class:`~kube_balance._routes.Routes` (``resolve``,
``routes``, ``balancers``, ``aclose``), so the httpx transport and the aiohttp connector use either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ._balancer import LoadBalancer
from ._cluster_options import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_SERVICES,
    ClusterSpec,
    check_options,
    parse_host,
)
from ._errors import (
    DiscoveryAuthError,
    DiscoveryError,
    DiscoveryUnauthorized,
    TooManyServices,
    UnknownServicePort,
)
from ._routes import Routes
from ._service import DEFAULT_CLUSTER_DOMAIN, ServiceRef, client_namespace
from ._validate import invalid
from .algorithms import Clock

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_SERVICES",
    "ClusterRoutes",
    "ClusterSpec",
    "TooManyServices",
    "UnknownServicePort",
    "parse_host",
    "route_table",
]

logger = logging.getLogger("kube_balance")

RECHECK = 30.0
"""Seconds a host found not to be a balanced Service (no such Service, ExternalName) passes
through before the Service is read again, so a Service created later is picked up."""
UNAVAILABLE_RECHECK = 5.0
"""Seconds a Service whose read failed (API unreachable) passes through before the next read."""
_HOST_CACHE = 4096  # parsed hosts kept; the cache is emptied when full (hosts are few in practice)
_UNSEEN: Any = object()


class _Route(Protocol):
    """What cluster mode needs of an integration's route: its balancer and dispatcher."""

    @property
    def balancer(self) -> LoadBalancer: ...

    @property
    def dispatcher(self) -> Any: ...  # a Dispatcher: closed with the route


R = TypeVar("R", bound=_Route)


@dataclass(eq=False)
class _Service(Generic[R]):
    """One Service: what its read said, until when that holds, and its running ports."""

    obj: Mapping[str, Any] | None = None  # None: not found, or the read failed
    error: DiscoveryError | None = None  # a read that failed in a way to report (403)
    expires: float = 0.0  # clock time after which an unwatched entry is read again
    routes: dict[int, R] = field(default_factory=dict)  # Service port -> route
    used: float = 0.0  # clock time of the last request


class ClusterRoutes(Generic[R]):
    """Routes for every Service of the cluster, started on first use and stopped when idle.

    ``route(balancer, owned)`` builds an integration's route for a new balancer (as
    :meth:`Routes.build` does); ``balancer_options`` (algorithm by name, algorithm_options, rng,
    clock) and ``source_options`` (api_client, kubeconfig, context, in_cluster) configure each
    Service's balancer and its :class:`~kube_balance.discovery.KubernetesSource`. ``clock``
    times idleness (default ``time.monotonic``).
    """

    static = False

    def __init__(
        self,
        route: Callable[[LoadBalancer, bool], R],
        *,
        balancer_options: Mapping[str, Any],
        source_options: Mapping[str, Any],
        namespace: str | None = None,
        namespaces: Any = None,
        cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_services: int = DEFAULT_MAX_SERVICES,
        clock: Clock | None = None,
    ) -> None:
        check_options(
            namespace, namespaces, cluster_domain, idle_timeout, max_services, clock, balancer_options
        )
        self._route = route
        self._balancer_options = dict(balancer_options)
        self._source_options = dict(source_options)
        self.namespace: str = namespace if namespace is not None else client_namespace()
        self.namespaces: frozenset[str] | None = None if namespaces is None else frozenset(namespaces)
        self.cluster_domain = cluster_domain
        self.idle_timeout = float(idle_timeout)
        self.max_services = max_services
        self._clock: Clock = clock if clock is not None else time.monotonic
        self._hosts: dict[str, tuple[str, str] | None] = {}
        self._services: dict[tuple[str, str], _Service[R]] = {}
        self._reads: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._config: Any = None  # the ClientConfig the Service reads go through
        self._reaper: asyncio.Task[None] | None = None

    # -- the request path -------------------------------------------------------------------
    def get(self, host: str | None) -> R | None:
        """Always None: in cluster mode a route depends on the port too (use :meth:`resolve`)."""
        return None

    async def resolve(self, host: str | None, port: int | None, scheme: str = "http") -> R | None:
        """The route for ``host:port`` (the Service port; None: 80, or 443 for https), starting
        the Service's watch on its first request; None to pass the request through."""
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
            svc.used = self._clock()
            if r.balancer.started:
                return r if r.balancer.eligible else None
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
        self._start_reaper()
        svc = await self._read(names)
        if svc.error is not None:  # a new exception each time: one raised twice grows its traceback
            raise type(svc.error)(str(svc.error)) from svc.error.__cause__
        if svc.obj is None or _spec(svc.obj).get("type") == "ExternalName":
            return None  # not a Service, or one DNS answers with a CNAME: pass through
        svc.used = self._clock()
        r = svc.routes.get(port)
        if r is None:
            r = await self._add(names, svc, port)
        await r.balancer.ensure_started()  # concurrent first requests wait on the same start
        return r if r.balancer.eligible else None

    async def _read(self, names: tuple[str, str]) -> _Service[R]:
        """The Service's entry, read from the API if it is new or its negative answer expired;
        concurrent callers share one read."""
        svc = self._services.get(names)
        while svc is None or (not svc.routes and svc.expires <= self._clock()):
            read = self._reads.get(names)
            if read is None:
                read = self._reads[names] = asyncio.ensure_future(self._fetch(names))
                read.add_done_callback(lambda _f: self._reads.pop(names, None))
            await asyncio.shield(read)
            svc = self._services.get(names)
            if svc is not None and (svc.expires > self._clock() or svc.routes):
                break
        return svc

    async def _fetch(self, names: tuple[str, str]) -> None:
        from .discovery.kubernetes._config import ClientConfig
        from .discovery.kubernetes._service_port import get_service
        from .discovery.kubernetes._status import NotFound as ServiceNotFound

        name, ns = names
        old = self._services.get(names)
        svc: _Service[R] = old if old is not None else _Service()
        svc.obj, svc.error = None, None
        if self._config is None:
            self._config = ClientConfig(**self._source_options)
        try:
            client = await self._config.client()
            svc.obj = await get_service(client, ServiceRef(name, ns, None))
            svc.expires = self._clock() + RECHECK
        except ServiceNotFound:
            svc.expires = self._clock() + RECHECK
        except DiscoveryAuthError as exc:  # 401/403: the fix is the client's RBAC or namespaces
            svc.error = _with_hint(exc, ns)
            svc.expires = self._clock() + UNAVAILABLE_RECHECK
        except DiscoveryError as exc:  # unreachable, 5xx, no credentials yet: as DNS would, go on
            logger.warning("cannot read Service %s/%s (%s): passing its requests through", ns, name, exc)
            svc.expires = self._clock() + UNAVAILABLE_RECHECK
        self._services[names] = svc

    async def _add(self, names: tuple[str, str], svc: _Service[R], port: int) -> R:
        """A new balancer and route for one port of a Service already read."""
        name, ns = names
        assert svc.obj is not None
        port_name = _port_name(svc.obj, name, ns, port)
        if not svc.routes and self._watched() >= self.max_services:
            await self._evict(names)
        if port in svc.routes:  # another request added it while we evicted
            return svc.routes[port]
        from .discovery import KubernetesSource

        domain = None if self.cluster_domain == DEFAULT_CLUSTER_DOMAIN else self.cluster_domain
        ref = ServiceRef(name, ns, port_name, None, domain)
        balancer = LoadBalancer(
            ref,
            source=KubernetesSource(ref, **self._source_options),
            fallback=f"{ref.host}:{port}",  # the Service's DNS name, as a plain client would dial
            **self._balancer_options,
        )
        r = svc.routes[port] = self._route(balancer, True)
        return r

    def _watched(self) -> int:
        return sum(1 for s in self._services.values() if s.routes)

    async def _evict(self, names: tuple[str, str]) -> None:
        """Stop the least recently used idle Service to make room, or raise TooManyServices."""
        idle = [(s.used, key) for key, s in self._services.items() if s.routes and not _busy(s)]
        if not idle:
            ns, name = names[1], names[0]
            raise TooManyServices(
                f"cannot balance Service {ns}/{name}: {self.max_services} Services are watched "
                f"(max_services={self.max_services}) and every one has requests in flight; raise "
                "max_services, or lower idle_timeout so idle Services stop sooner"
            )
        _, key = min(idle)
        await self._stop(key)

    # -- idleness ---------------------------------------------------------------------------
    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap(), name="kube-balance cluster idle sweep"
            )

    async def _reap(self) -> None:
        interval = min(max(self.idle_timeout / 4, 0.01), 60.0)
        while True:
            await asyncio.sleep(interval)
            await self.sweep()

    async def sweep(self) -> list[str]:
        """Stop every Service idle for ``idle_timeout`` with nothing in flight; returns their
        ``ns/name``. Runs by itself every ``idle_timeout / 4`` (at most every minute)."""
        now = self._clock()
        stale = [
            key
            for key, s in self._services.items()
            if s.routes and now - s.used >= self.idle_timeout and not _busy(s)
        ]
        for key in stale:
            await self._stop(key)
        for key in [k for k, s in self._services.items() if not s.routes and s.expires <= now]:
            del self._services[key]  # answers no longer held (no such Service, ExternalName)
        return [f"{ns}/{name}" for name, ns in stale]

    async def _stop(self, key: tuple[str, str]) -> None:
        svc = self._services.pop(key)
        routes, svc.routes = list(svc.routes.values()), {}
        for r in routes:
            await _close(r)

    # -- the table's interface ----------------------------------------------------------------
    @property
    def routes(self) -> list[R]:
        """The routes running now (one per Service port in use)."""
        return [r for s in self._services.values() for r in s.routes.values()]

    @property
    def balancers(self) -> list[LoadBalancer]:
        """The balancers running now (one per Service port in use)."""
        return [r.balancer for r in self.routes]

    @property
    def watched(self) -> list[str]:
        """``ns/name`` of every Service watched now."""
        return [f"{ns}/{name}" for (name, ns), s in self._services.items() if s.routes]

    async def aclose(self) -> None:
        """Stop the idle sweep and close the API client used to read Services (the integration
        closes the routes, as it does a fixed table's)."""
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
        for s in self._services.values():
            s.routes = {}
        self._services.clear()
        config, self._config = self._config, None
        if config is not None:
            await config.aclose()


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _port_name(obj: Mapping[str, Any], name: str, ns: str, port: int) -> str | None:
    """The name of the Service port numbered ``port`` (None: the Service's only, unnamed port)."""
    ports = [p for p in _spec(obj).get("ports") or () if isinstance(p, Mapping)]
    for p in ports:
        if p.get("port") == port and p.get("protocol", "TCP") == "TCP":
            return str(p.get("name") or "") or None
    listed = ", ".join(
        f"{p.get('name')}={p.get('port')}" if p.get("name") else str(p.get("port")) for p in ports
    )
    raise UnknownServicePort(
        f"Service {ns}/{name} has no port {port} (its ports: {listed or 'none'}); the URL's port is "
        "the Service port (80 for http and 443 for https when the URL has none), as for kube-proxy"
    )


def _busy(svc: _Service[Any]) -> bool:
    return any(r.balancer.status().inflight for r in svc.routes.values())


async def _close(r: _Route) -> None:
    await r.dispatcher.aclose()
    await r.balancer.aclose()


def _with_hint(exc: DiscoveryError, ns: str) -> DiscoveryError:
    """A 403 reading a Service, with how to grant it or keep the client out of that namespace
    (a 401, rejected credentials, is kept as it is: RBAC is not the fix)."""
    if isinstance(exc, DiscoveryUnauthorized):
        return exc
    error = type(exc)(
        f"{exc}; cluster mode reads the Service of every host it balances (see "
        "integrations/kubernetes/rbac-cluster.yaml), or restrict it with namespaces=[...] to the "
        f"namespaces it may read ({ns!r} is not one)"
    )
    error.__cause__ = exc
    return error


def route_table(
    services: Any, balancer_options: Mapping[str, Any], route: Callable[[LoadBalancer, bool], R]
) -> Routes[R] | ClusterRoutes[R]:
    """The integration's route table: a fixed :class:`Routes` for the Services given, or a
    :class:`ClusterRoutes` for a :class:`ClusterSpec`."""
    if not isinstance(services, ClusterSpec):
        return Routes[R]().build(services, balancer_options, route)
    for name in ("source", "fallback"):
        value = balancer_options.get(name)
        if value is not None and not (name == "fallback" and value == "service"):
            raise invalid(
                f"cluster {name}",
                value,
                "cluster mode watches each Service's EndpointSlices and falls back to its DNS name; "
                "build a client for named Services to choose these",
            )
    options = {k: v for k, v in balancer_options.items() if k not in ("source", "fallback")}
    from .discovery.kubernetes._config import ClientConfig

    ClientConfig(**services.source_options)  # a wrong credential option fails now, by name
    return ClusterRoutes(
        route,
        balancer_options=options,
        source_options=services.source_options,
        namespace=services.namespace,
        namespaces=services.namespaces,
        cluster_domain=services.cluster_domain,
        idle_timeout=services.idle_timeout,
        max_services=services.max_services,
        clock=balancer_options.get("clock"),
    )
