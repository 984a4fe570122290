"""``BalancedConnector``: an aiohttp connector that balances every request across a Service's pods.

::

    session = aiohttp.ClientSession(connector=BalancedConnector("web.shop:http"))
    await session.get("http://web.shop/items")

A resolver would only spread *new connections*: with keep-alive every request would stay on the
pod its connection reached. The connector instead picks a pod in :meth:`connect`, which aiohttp
calls once per request, and hands out a connection from that pod's own keep-alive pool (aiohttp's
pool, keyed per pod here). The Host header, TLS SNI and certificate verification stay on the
Service name, and ``response.url`` (so redirects and cookies) keeps the Service URL. Requests to
other hosts go through aiohttp's own logic untouched.

What the connector can and cannot retry: it sees a request only until the connection is handed
over, so it retries a connection that could not be made (refused, reset or timed out while
connecting: nothing was sent) on another pod, for any method, under the same
:class:`~kube_balance.RetryPolicy` and budget as the httpx transport. It cannot retry once the
request was sent (a connection lost before the response, a 502/503/504): aiohttp's session does
that itself for idempotent methods on a reused keep-alive connection (and asks the connector for a
new pick), and :class:`~kube_balance.integrations.httpx.BalancedTransport` does it in general.

Needs ``pip install 'kube-balance[aiohttp]'``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import logging
import random as _random
import ssl
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, cast

try:
    import aiohttp
    from aiohttp import ClientResponse
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.connector import Connection
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kube_balance.integrations.aiohttp needs aiohttp: pip install 'kube-balance[aiohttp]'"
    ) from exc

from .. import _errors
from .._affinity import AffinityKey, KeyFunction
from .._balancer import LoadBalancer
from .._cluster import ClusterRoutes, route_table
from .._cluster_options import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_SERVICES,
    DEFAULT_SERVICE_REFRESH,
    ClusterSpec,
    cluster_spec,
)
from .._dispatch import Attempts, Dispatcher, Lease, Verdict, _target
from .._hedge import HedgePolicy, Hedging, RaceSide, race
from .._outcome import Outcome, parse_retry_after
from .._retry import Failure, RetryPolicy
from .._routes import Routes, ServiceSpec, affinity_for
from .._service import DEFAULT_CLUSTER_DOMAIN
from .._validate import check_instance
from ..algorithms import Algorithm, Clock
from ..discovery._source import EndpointSource

__all__ = ["BalancedConnector", "BalancedMiddleware", "NoEndpointsAvailable"]

logger = logging.getLogger("kube_balance")


class NoEndpointsAvailable(aiohttp.ClientConnectionError, _errors.NoEndpointsAvailable):
    """No usable endpoint and no fallback: an ``aiohttp.ClientConnectionError`` and a kube-balance error."""


def _classify(exc: BaseException) -> Verdict:
    """An error while connecting: nothing of the request was sent yet."""
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return Verdict(None, Outcome.ERROR)  # a certificate problem is the same on every pod
    if isinstance(exc, (aiohttp.ClientConnectorError, asyncio.TimeoutError, ConnectionError)):
        return Verdict(Failure.NOT_SENT, Outcome.CONNECT_FAILED)
    return Verdict(None, Outcome.ERROR)


def _response_outcome(exc: BaseException) -> Outcome:
    """An error while sending the request or reading the response headers."""
    if isinstance(exc, asyncio.CancelledError):
        return Outcome.CANCELLED  # the caller gave up: not the pod's fault
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one
        return Outcome.TIMEOUT
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError)):
        return Outcome.RESET
    return Outcome.ERROR


def _explain(exc: Exception, attempts: Attempts) -> BaseException | None:
    """The same aiohttp connection error, its message naming the Service, the pods tried and the
    attempts, or why the request went to the fallback (None: keep ``exc`` as is)."""
    if not isinstance(exc, aiohttp.ClientConnectorError):
        return None
    message = attempts.message(exc)
    return _with_message(exc, message)


_explained: dict[type[BaseException], type[BaseException]] = {}


def _with_message(exc: BaseException, message: str) -> BaseException:
    """A copy of ``exc`` whose ``str()`` is ``message`` (and ``repr()`` shows it), of a subclass of its own class (made once
    per class), so every ``except``/``isinstance`` that caught the original catches it too."""
    cls = type(exc)
    sub = _explained.get(cls)
    if sub is None:
        sub = _explained[cls] = type(
            cls.__name__,
            (cls,),
            {"__str__": _explained_str, "__repr__": _explained_repr, "__module__": cls.__module__},
        )
    new = copy.copy(exc)
    try:
        new.__class__ = sub
    except TypeError:  # a built-in exception (TimeoutError): a new one of the subclass instead
        new = sub(*exc.args)
        new.__dict__.update(exc.__dict__)
    new._kube_balance_message = message  # type: ignore[attr-defined]
    return new


def _explained_str(self: BaseException) -> str:
    return str(getattr(self, "_kube_balance_message", ""))


def _explained_repr(self: BaseException) -> str:
    # What logs, f"{exc!r}" and pytest show: a bare TimeoutError() would name neither Service nor pod.
    return f"{type(self).__name__}({_explained_str(self)!r})"


_Attempt = tuple[ClientRequest, list[Any], aiohttp.ClientTimeout]
"""What ``connect()`` was called with: the request, its traces and its timeout."""


MAX_POD_KEYS = 1024
"""Bound on the cached pod connection keys of one Service (caller's keys x endpoints): past it the
cache starts again (endpoints come and go over a long life)."""


class _Adapter:
    """One attempt is one ``TCPConnector.connect()`` to a pod (see ``_dispatch.Adapter``).

    aiohttp pools connections itself (the pod's address is in the connection key), so there is no
    pool of ours: ``open_pool`` returns None. The pod's connection key is built once per (caller's
    connection key, endpoint) and cached: a request on a pooled connection only looks it up.
    """

    __slots__ = ("_connect", "_keys")
    pooled = False  # aiohttp pools per connection key (the pod's address is in it)

    def __init__(self, connect: Any) -> None:
        self._connect = connect  # aiohttp.TCPConnector.connect bound to the BalancedConnector
        self._keys: dict[Any, dict[str, Any]] = {}  # caller's key -> endpoint key -> pod's key

    def open_pool(self) -> None:
        return None

    async def close_pool(self, pool: None) -> None:
        return None

    def attempt(self, lease: Lease[None], request: _Attempt) -> Coroutine[Any, Any, Connection]:
        # Not a coroutine of its own: aiohttp's connect() is what the dispatcher awaits.
        req, traces, timeout = request
        key = req.connection_key
        keys = self._keys.get(key)
        if keys is None:
            if len(self._keys) >= MAX_POD_KEYS:
                self._keys.clear()
            keys = self._keys[key] = {}
        pod_key = keys.get(lease.key)
        if pod_key is None:
            pod_key = keys[lease.key] = _pod_key(key, lease.host, lease.port)
        connect: Coroutine[Any, Any, Connection] = self._connect(
            _PodRequest(req, lease.host, lease.port, pod_key), traces, timeout
        )
        return connect

    def classify(self, exc: BaseException) -> Verdict:
        return _classify(exc)

    def status(self, result: Connection) -> int:
        return 0  # a connection has no status yet: the response reports it (_reporting)

    def retry_after(self, result: Connection) -> float | None:
        return None

    async def discard(self, result: Connection) -> None:  # pragma: no cover - never asked: status 0
        result.close()

    def explain(self, exc: Exception, attempts: Attempts, request: _Attempt) -> BaseException | None:
        return _explain(exc, attempts)


class _ConnLease(Lease[None]):
    """The lease of one attempt, held until aiohttp gives its connection back (``release`` and
    ``close`` callbacks of the connection), with what the response said: one object per request.

    ``answer`` (the outcome) stays None until the response headers arrive (or fail): a connection given back
    before that broke while the request was being sent (``RESET``). aiohttp releases the
    connection of a short response from inside ``start()``, before the status is ours to read: a
    release while ``starting`` waits for the end of ``start()``. Given back without an answer
    (a failure, or a hedged attempt cancelled), it reports the time until then.
    """

    __slots__ = ("answer", "starting", "pending", "_open")

    def hold(self, open_: set[_ConnLease]) -> None:
        """Mark the lease out with its connection (in ``open_``, the connector's safety net)."""
        self.answer: Outcome | None = None
        self.starting = self.pending = False
        self._open = open_
        open_.add(self)

    def give_back(self, *, leaked: bool = False) -> None:
        """The connection is back (or closed): put() with the outcome, once."""
        if self.starting and not leaked:
            self.pending = True
            return
        self._open.discard(self)
        if self.released:
            return
        if self.elapsed is None:  # no response headers: the time to the failure
            self.elapsed = self._owner.clock() - self.started
        self.released = True
        answer = self.answer
        self._owner._release(self, _RESET if answer is None else answer, leaked)

    def close_out(self) -> None:
        """The connector closes with this connection still out: put() now. A request still
        waiting for its answer was cut by our own close (``CANCELLED``: not the pod's doing, so
        no failure for outlier ejection); a response nobody released is a leak (the safety net)."""
        if self.answer is None:
            self.answer = _CANCELLED
            self.starting = False
            self.give_back()
        else:
            self.give_back(leaked=True)


_RESET = Outcome.RESET
_CANCELLED = Outcome.CANCELLED


def _pod_key(key: Any, host: str, port: int) -> Any:
    """The caller's connection key with the pod's address and no proxy: one aiohttp pool per pod.

    A NamedTuple in recent aiohttp; an attrs class in older ones (3.10.0, the lowest supported).
    """
    fields = {"host": host, "port": port, "proxy": None, "proxy_auth": None, "proxy_headers_hash": None}
    replace = getattr(key, "_replace", None)
    if replace is not None:
        return replace(**fields)
    import attr  # aiohttp 3.9's own dependency

    return attr.evolve(key, **fields)


class _PodRequest:
    """The caller's request as the connector sees it: addressed to one pod (or the fallback).

    Only what ``BaseConnector.connect`` reads is overridden: the pod's address for the socket and
    the pool key, the Service name for TLS SNI and verification, and no proxy (pods are dialled
    directly, as the httpx transport does). Everything else is the caller's request. The pod URL
    is built only when a new connection is opened: a pooled one needs the key alone.
    """

    __slots__ = ("_req", "_host", "_port", "_url", "connection_key")

    def __init__(self, req: ClientRequest, host: str, port: int, connection_key: Any) -> None:
        self._req, self._host, self._port = req, host, port
        self._url: Any = None
        self.connection_key = connection_key  # _pod_key(req.connection_key, host, port), cached

    @property
    def url(self) -> Any:
        if self._url is None:
            self._url = self._req.url.with_host(self._host).with_port(self._port)
        return self._url

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def server_hostname(self) -> str | None:
        # The Service name the caller wrote: SNI and the certificate check stay on it.
        return getattr(self._req, "server_hostname", None) or self._req.url.raw_host

    proxy = None
    proxy_auth = None
    proxy_headers = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._req, name)


class _Route:
    """One Service: its balancer, dispatcher and affinity key reader."""

    __slots__ = ("balancer", "dispatcher", "key", "owns", "open")

    def __init__(
        self,
        balancer: LoadBalancer,
        owns: bool,
        key: AffinityKey | None,
        adapter: _Adapter,
        retry: RetryPolicy | None,
        hedge: HedgePolicy | None = None,
    ) -> None:
        self.balancer, self.owns, self.key = balancer, owns, key
        self.open: set[_ConnLease] = set()  # leases whose connection is still out
        self.dispatcher: Dispatcher[None, _Attempt, Connection] = Dispatcher(
            balancer, adapter, retry=retry, hedge=hedge, lease_type=_ConnLease
        )


def _routes(
    services: ServiceSpec | Sequence[ServiceSpec] | ClusterSpec,
    options: dict[str, Any],
    affinity: AffinityKey | str | KeyFunction | None,
    retry: RetryPolicy | None,
    hedge: HedgePolicy | None,
    connect: Any,
) -> Routes[_Route] | ClusterRoutes[_Route]:
    """The connector's route table (every option of its own checked on the way)."""
    check_instance(
        "BalancedConnector hedge", hedge, (HedgePolicy, type(None)), "expected a HedgePolicy or None"
    )
    check_instance(
        "BalancedConnector retry", retry, (RetryPolicy, type(None)), "expected a RetryPolicy or None"
    )
    return route_table(
        services,
        options,
        lambda balancer, owned: _Route(
            balancer, owned, affinity_for(balancer, affinity), _Adapter(connect), retry, hedge
        ),
    )


_OWN_OPTIONS = ("algorithm", "source", "fallback", "algorithm_options", "rng", "clock")


def check_options(services: ServiceSpec | Sequence[ServiceSpec] | None, options: Mapping[str, Any]) -> None:
    """Refuse now, without an event loop, what ``BalancedConnector(services, **options)`` would
    refuse (``services`` None: ``BalancedConnector.cluster(**options)``), as a
    :class:`~kube_balance.ConfigurationError` naming the option: aiohttp builds a connector only
    inside a running loop, and a FastAPI app declares its clients at import. Options of
    ``aiohttp.TCPConnector`` are checked by name (their values by aiohttp, when it builds it)."""
    rest = dict(options)
    target: ServiceSpec | Sequence[ServiceSpec] | ClusterSpec
    if services is None:
        spec = inspect.signature(BalancedConnector.cluster).parameters
        target = cluster_spec(
            **{k: rest.pop(k) if k in rest else p.default for k, p in spec.items() if k != "options"}
        )
    else:
        target = services
    defaults = inspect.signature(BalancedConnector.__init__).parameters
    own = {k: rest.pop(k) if k in rest else defaults[k].default for k in _OWN_OPTIONS}
    affinity, retry, hedge = rest.pop("affinity", None), rest.pop("retry", None), rest.pop("hedge", None)
    _check_names(rest, cluster=services is None)
    _routes(target, own, affinity, retry, hedge, None)


def _check_names(connector_options: Mapping[str, Any], *, cluster: bool) -> None:
    """Refuse a keyword that is neither the connector's own nor ``aiohttp.TCPConnector``'s, by
    name (aiohttp would raise a bare ``TypeError`` about ``TCPConnector``)."""
    unknown = sorted(set(connector_options) - _tcp_connector_options())
    if unknown:
        own: tuple[str, ...] = (*_OWN_OPTIONS, "affinity", "retry", "hedge")
        if cluster:
            spec = inspect.signature(BalancedConnector.cluster).parameters
            own = (*(k for k in spec if k != "options"), *(o for o in own if o not in ("source", "fallback")))
        raise _errors.ConfigurationError(
            f"BalancedConnector{'.cluster()' if cluster else ''} has no option "
            f"{', '.join(map(repr, unknown))}: it takes its own ({', '.join(own)}) and aiohttp.TCPConnector's"
        )


@functools.cache
def _tcp_connector_options() -> frozenset[str]:
    return frozenset(inspect.signature(aiohttp.TCPConnector.__init__).parameters) - {"self"}


class BalancedConnector(aiohttp.TCPConnector):
    """Balances requests to one or several Kubernetes Services per request.

    ``services`` is ``"name.ns:port"``, a :class:`ServiceRef`, a running :class:`LoadBalancer`
    (which the connector uses and does not close), or a list of them: each Service's hosts are
    balanced by its own balancer, other hosts pass through. ``algorithm``, ``source``,
    ``fallback``, ``algorithm_options``, ``rng`` and ``clock`` configure the balancers the
    connector creates (``source`` only with one Service). ``affinity`` gives hash algorithms their
    key (default: the ``X-Affinity`` header when the algorithm needs a key); ``retry`` is the
    :class:`RetryPolicy` for connection failures. ``hedge`` is a :class:`HedgePolicy` applied by
    :class:`BalancedMiddleware` (the connector alone cannot send a second request: it only
    provides a connection). Every other keyword goes to
    ``aiohttp.TCPConnector``: ``limit`` (whole connector), ``limit_per_host`` (per pod), ``ssl``,
    ``keepalive_timeout``, ``ttl_dns_cache`` (the fallback's DNS name), ``force_close``, ...

    ``put()`` runs exactly once per pick: when the response is released or closed, when the
    request fails, and (a safety net, counted in ``LoadBalancer.status().unclosed_responses``)
    when a response nobody released is garbage-collected. A 5xx response counts as a failure.
    """

    def __init__(
        self,
        services: ServiceSpec | Sequence[ServiceSpec] | ClusterSpec,
        *,
        algorithm: str | Algorithm = "least_request",
        source: EndpointSource | None = None,
        fallback: str | None = "service",
        affinity: AffinityKey | str | KeyFunction | None = None,
        retry: RetryPolicy | None = None,
        hedge: HedgePolicy | None = None,
        algorithm_options: Mapping[str, Any] | None = None,
        rng: _random.Random | None = None,
        clock: Clock | None = None,
        **connector_options: Any,
    ) -> None:
        options = {
            "algorithm": algorithm,
            "source": source,
            "fallback": fallback,
            "algorithm_options": algorithm_options,
            "rng": rng,
            "clock": clock,
        }
        if connector_options:
            _check_names(connector_options, cluster=isinstance(services, ClusterSpec))
        # aiohttp's own connect(), for requests addressed to a pod
        self._routes = _routes(services, options, affinity, retry, hedge, super().connect)
        # A Service host as written: its route without a call (cluster routes resolve instead).
        self._exact: Mapping[str, _Route] = self._routes.exact if isinstance(self._routes, Routes) else {}
        self._unhedged_warned = False  # a hedge= without BalancedMiddleware: said once
        try:
            super().__init__(**connector_options)  # after the checks: aiohttp needs a running loop
        except RuntimeError as exc:
            if "no running event loop" not in str(exc):
                raise
            raise RuntimeError(
                "BalancedConnector needs a running event loop, as aiohttp.TCPConnector does: create "
                "it inside an async function (the one that creates the ClientSession), not at import; "
                "a FastAPI app declares it with BalancedClients().aiohttp(...), built at startup"
            ) from exc

    @classmethod
    def cluster(
        cls,
        *,
        namespaces: Iterable[str] | None = None,
        namespace: str | None = None,
        cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_services: int = DEFAULT_MAX_SERVICES,
        service_refresh: float = DEFAULT_SERVICE_REFRESH,
        api_client: Any = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool | None = None,
        **options: Any,
    ) -> BalancedConnector:
        """A connector for every Service of the cluster: a request whose host names a Service
        (``web``, ``web.shop``, ``web.shop.svc``, ``web.shop.svc.cluster.local``) is balanced across
        its pods, the URL's port being the Service port; other hosts go through aiohttp's own logic.

        The cluster options mean what they mean for ``BalancedTransport.cluster()``; every other
        keyword is ``__init__``'s (``TCPConnector`` options included), but ``source`` and
        ``fallback``. See docs/cluster.md.
        """
        spec = cluster_spec(
            namespaces=namespaces,
            namespace=namespace,
            cluster_domain=cluster_domain,
            idle_timeout=idle_timeout,
            max_services=max_services,
            service_refresh=service_refresh,
            api_client=api_client,
            kubeconfig=kubeconfig,
            context=context,
            in_cluster=in_cluster,
        )
        return cls(spec, **options)

    @property
    def cluster_routes(self) -> ClusterRoutes[_Route] | None:
        """The cluster table (Services watched now, :meth:`ClusterRoutes.sweep`), or None."""
        return self._routes if isinstance(self._routes, ClusterRoutes) else None

    async def _resolve(self, req: ClientRequest) -> _Route | None:
        """The route for ``req``, reading the Service on a cluster connector's first request to it."""
        url = req.url
        return await self._routes.resolve(url.raw_host, url.port, url.scheme)

    @property
    def balancers(self) -> list[LoadBalancer]:
        """The balancers of the Services this connector balances, in the order given."""
        return self._routes.balancers

    def _route(self, req: ClientRequest) -> _Route | None:
        return self._routes.get(req.url.raw_host)

    async def connect(
        self, req: ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        """A connection to the pod the algorithm picks for this request (other hosts: aiohttp's own)."""
        host = req.url.raw_host
        route = self._exact.get(host)  # type: ignore[arg-type]  # None: no route
        if route is None:
            route = self._routes.get(host) if self._routes.static else await self._resolve(req)
            if route is None:
                return await super().connect(req, traces, timeout)
        if self._closed:  # aiohttp's own check, before a pick: a closed connector blames no pod
            raise aiohttp.ClientConnectionError("Connector is closed.")
        key = route.key.from_request(req, req.headers) if route.key is not None else None
        retry: _MiddlewareRetry | None = getattr(req, "_kube_balance_retry", None)
        dispatcher = route.dispatcher
        request = (req, traces, timeout)
        lease: _ConnLease
        try:
            if retry is None:
                if dispatcher.hedging is not None and not self._unhedged_warned:
                    self._warn_unhedged(route, req)
                # Nearly every request: the pick and aiohttp's connect() with no dispatcher
                # frame; send() takes over only if the pick must wait or the attempt fails.
                started = dispatcher.first_attempt(request, key)
                if started is None:
                    conn, lease = await dispatcher.send(  # type: ignore[assignment]
                        request, key=key, method=req.method, replayable=True
                    )
                else:
                    lease, attempt = started  # type: ignore[assignment]
                    try:
                        conn = await attempt
                    except BaseException as exc:
                        conn, lease = await dispatcher.send(  # type: ignore[assignment]
                            request, key=key, method=req.method, replayable=True, first=lease, failed=exc
                        )
            else:
                first, taken = retry.first, retry.taken
                if first is not None:
                    retry.first = None  # the hedge's pick, used once
                conn, lease = await dispatcher.send(  # type: ignore[assignment]
                    request,
                    key=key,
                    method=req.method,
                    replayable=True,  # nothing has been sent yet
                    exclude=retry.tried,
                    retry_slot=retry.slot,
                    first=first,
                    taken=taken,
                )
                retry.slot, retry.endpoint = False, lease.key
                retry.targets.append(_target(lease))
        except _errors.NoEndpointsAvailable as exc:
            raise NoEndpointsAvailable(str(exc)) from exc
        lease.hold(route.open)
        conn.add_callback(lease.give_back)
        conn._kube_balance_lease = lease  # type: ignore[attr-defined]  # read by _reporting
        sub = _response_classes.get(req.response_class)
        req.response_class = sub if sub is not None else _reporting_class(req.response_class)
        return conn

    def _warn_unhedged(self, route: _Route, req: ClientRequest) -> None:
        """Once: a request the policy would hedge came without the middleware, which sends hedges."""
        hedging = route.dispatcher.hedging
        if hedging is not None and hedging.applies(req.method, _hedgeable_body(req)):
            self._unhedged_warned = True
            logger.warning(
                "%s: BalancedConnector(hedge=...) hedges only through BalancedMiddleware: this session "
                "has none, so no request is hedged; pass middlewares=(BalancedMiddleware(connector),) "
                "to aiohttp.ClientSession",
                route.balancer.service,
            )

    async def close(self, *args: Any, **kwargs: Any) -> None:
        """Close every connection, stop the balancers the connector created, leave no task behind."""
        routes = self._routes.routes
        for route in routes:
            # The safety net: a response never released keeps its connection (and so itself:
            # the connection's protocol holds it) alive until here, in aiohttp as without us.
            for lease in list(route.open):
                lease.close_out()
        await super().close(*args, **kwargs)
        for route in routes:
            await route.dispatcher.aclose()
            if route.owns:
                await route.balancer.aclose()
        await self._routes.aclose()

    def __repr__(self) -> str:
        return f"<BalancedConnector {' '.join(repr(b) for b in self.balancers)}>"


_OK = Outcome.OK
_NAMED = (asyncio.TimeoutError, aiohttp.ServerDisconnectedError)
"""Errors while waiting for the response headers whose message names the Service and the pod (the
same class, so ``except`` clauses and aiohttp's own retries still catch them)."""
_response_classes: dict[type[ClientResponse], type[ClientResponse]] = {}


def _reporting_class(cls: type[ClientResponse]) -> type[ClientResponse]:
    """The response class that reports its status and time to headers to the lease, for ``cls``.

    ``response_class`` is the session's public hook for its response type; ours (one subclass per
    user class, made once, and mapped to itself) calls the original ``start()`` and then records
    the outcome.
    """
    sub = cls if getattr(cls, "_kube_balance", False) else _reporting(cls)
    _response_classes[cls] = _response_classes[sub] = sub
    return sub


def _reporting(base: type[ClientResponse]) -> type[ClientResponse]:
    """A subclass of ``base`` whose ``start()`` (which reads the status line and headers) reports
    the outcome: the time to headers, and failed for a 5xx or an error (not for a cancellation)."""
    start = base.start

    async def reporting_start(self: ClientResponse, connection: Connection) -> ClientResponse:
        lease: _ConnLease | None = getattr(connection, "_kube_balance_lease", None)
        if lease is None:
            return await start(self, connection)
        lease.starting = True
        try:
            result = await start(self, connection)
        except BaseException as exc:
            # A cancelled hedged attempt's connection closes at once: give_back() then records
            # the time it waited, as it does for any answer that never came.
            lease.answer = _response_outcome(exc)
            if isinstance(exc, _NAMED):  # a bare TimeoutError() would not say which pod
                owner = cast(Dispatcher[None, _Attempt, Connection], lease._owner)
                raise _with_message(exc, owner.attempts(lease).message(exc)) from exc
            raise
        else:
            status = self.status
            # Lease.headers_received(), inlined: on every response's path.
            lease.elapsed = lease._owner.clock() - lease.started
            lease.status = status
            if status < 429:
                lease.answer = _OK
            else:
                if status == 429 or status == 503:
                    lease.retry_after = parse_retry_after(self.headers.get("Retry-After"))
                lease.answer = Outcome.of_status(status)
        finally:
            lease.starting = False
            if lease.pending:
                lease.give_back()
        return result

    return type(f"Balanced{base.__name__}", (base,), {"start": reporting_start, "_kube_balance": True})


class _MiddlewareRetry:
    """What ``BalancedMiddleware`` tells the connector about the next attempt of one request."""

    __slots__ = ("tried", "slot", "endpoint", "first", "taken", "targets")

    def __init__(self, tried: set[str] | None = None, first: Lease[None] | None = None) -> None:
        self.tried: set[str] = tried or set()  # endpoint keys already tried: the connector avoids them
        self.slot = False  # the next attempt holds a retry-budget slot (released with its lease)
        self.endpoint: str | None = None  # the endpoint the last attempt went to
        self.first = first  # a hedge: the lease its first attempt uses
        # Hedged requests: where their attempts went (the hedge avoids them; see RaceSide).
        self.taken: RaceSide | None = None
        self.targets: list[str] = []  # host:port of every attempt, in order: for the error message


class BalancedMiddleware:
    """aiohttp client middleware (aiohttp >= 3.12) adding the retries a connector cannot do.

    ::

        connector = BalancedConnector("web.shop:http")
        session = aiohttp.ClientSession(connector=connector, middlewares=(BalancedMiddleware(connector),))

    The connector alone retries connections that could not be made. With this middleware, an
    idempotent request whose connection broke after it was sent (``Failure.NO_RESPONSE``), or that
    got a status listed in the policy's ``retry_statuses``, is sent again to *another* pod, under
    the connector's :class:`RetryPolicy` (``max_attempts`` counts every attempt) and retry budget:
    the httpx transport's behaviour. A body that cannot be replayed (a consumed stream) is not
    retried. Requests to hosts the connector does not balance pass through.

    With a :class:`HedgePolicy` on the connector (``hedge=``), the middleware also hedges: an
    idempotent request with no body or a bytes body whose first attempt has no response headers
    after the policy's delay is sent to another pod too (a copy of the request), and the first
    response wins; the other attempt is cancelled. The connector cannot do it alone: aiohttp
    asks it for one connection per attempt and sends the request itself.
    """

    def __init__(self, connector: BalancedConnector) -> None:
        if not isinstance(connector, BalancedConnector):
            raise _errors.ConfigurationError(
                f"BalancedMiddleware needs the session's BalancedConnector, not {connector!r}"
            )
        if not _has_middlewares():
            raise _errors.ConfigurationError(
                f"BalancedMiddleware needs aiohttp >= 3.12 (client middlewares); this is aiohttp "
                f"{aiohttp.__version__}: upgrade it, or use the connector alone"
            )
        self._connector = connector

    async def __call__(self, req: ClientRequest, handler: Any) -> ClientResponse:
        connector = self._connector
        route = connector._route(req) if connector._routes.static else await connector._resolve(req)
        if route is None:
            return cast(ClientResponse, await handler(req))
        hedging = route.dispatcher.hedging
        if hedging is not None and hedging.applies(req.method, _hedgeable_body(req)):
            return await self._hedged(req, handler, route, hedging)
        return await self._send(req, handler, route.dispatcher, _MiddlewareRetry())

    async def _send(
        self, req: ClientRequest, handler: Any, dispatcher: Dispatcher[Any, Any, Any], retry: _MiddlewareRetry
    ) -> ClientResponse:
        """Send ``req`` through the session's handler, retrying on another pod as the policy allows."""
        req._kube_balance_retry = retry  # type: ignore[attr-defined]  # read by connect()
        number = 1
        while True:
            try:
                resp = cast(ClientResponse, await handler(req))
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if isinstance(exc, aiohttp.ClientConnectorError) or not self._again(
                    dispatcher, Failure.NO_RESPONSE, req, retry, number
                ):
                    raise _every_attempt(exc, dispatcher, retry) from exc.__cause__ or exc
                number += 1
                continue
            if resp.status in dispatcher.retry.statuses and self._again(
                dispatcher, Failure.STATUS, req, retry, number
            ):
                resp.release()
                number += 1
                continue
            return resp

    async def _hedged(
        self, req: ClientRequest, handler: Any, route: _Route, hedging: Hedging
    ) -> ClientResponse:
        """:meth:`_send`, raced against a copy of ``req`` sent to another pod after the delay."""
        dispatcher = route.dispatcher
        hedging.budget.deposit()
        retry = _MiddlewareRetry()
        taken, hedged = RaceSide.pair()  # each side's retries avoid the other's pods
        retry.taken = taken

        def hedge() -> Any:
            key = route.key.from_request(req, req.headers) if route.key is not None else None
            lease = dispatcher.hedge_lease(key, taken)
            if lease is None:
                return None
            copy_ = _hedge_copy(req)
            hedge_retry = _MiddlewareRetry(set(taken.keys), lease)
            hedge_retry.taken = hedged
            return self._send(copy_, handler, dispatcher, hedge_retry)

        first = self._send(req, handler, dispatcher, retry)
        try:
            return await race(first, hedge, hedging.delay(), _drop_response, taken.outrun)
        except asyncio.CancelledError as exc:
            # aiohttp's total timeout cancels the request and raises a bare TimeoutError() from
            # this cancellation, outside any middleware: a note on it says what was waited for.
            waited = ", ".join(sorted(taken.keys | hedged.keys)) or "a connection"
            exc.add_note(
                f"kube-balance: the hedged request to {route.balancer.service} was cancelled waiting for {waited}"
            )
            raise

    @staticmethod
    def _again(
        dispatcher: Dispatcher[Any, Any, Any],
        failure: Failure,
        req: ClientRequest,
        retry: _MiddlewareRetry,
        number: int,
    ) -> bool:
        """Whether to send ``req`` once more, on another endpoint (taking a budget slot if so)."""
        replayable = not getattr(req.body, "consumed", False)
        if retry.endpoint is None or not dispatcher.retry.should_retry(
            failure, method=req.method, replayable=replayable, attempt=number
        ):
            return False
        retry.tried.add(retry.endpoint)
        if not dispatcher.has_other(retry.tried):
            return False
        if not dispatcher.budget.try_acquire():
            dispatcher.balancer.counters.retry_budget_exhausted += 1
            return False
        dispatcher.balancer.counters.retries += 1
        retry.slot = True
        return True


def _every_attempt(
    exc: BaseException, dispatcher: Dispatcher[Any, Any, Any], retry: _MiddlewareRetry
) -> BaseException:
    """``exc`` (named after its own attempt by ``_reporting``), its message naming every attempt
    of the request when the middleware retried it on another pod."""
    cause = exc.__cause__
    if len(retry.targets) < 2 or cause is None or not hasattr(exc, "_kube_balance_message"):
        return exc
    attempts = Attempts(str(dispatcher.balancer.service), tuple(retry.targets), None)
    return _with_message(cause, attempts.message(cause))


def _hedgeable_body(req: ClientRequest) -> bool:
    """Whether ``req``'s body may be sent twice at once: none, or bytes (a stream may not)."""
    body = req.body
    return body == b"" or isinstance(body, aiohttp.payload.BytesPayload)


def _hedge_copy(req: ClientRequest) -> ClientRequest:
    """A copy of ``req`` for a hedge: aiohttp keeps per-send state on the request (its writer,
    its response, headers it completes), so two attempts at once need two requests. A shallow
    copy shares the immutable parts and the bytes body; the headers are its own. Upload progress
    (``upload_tracker``) follows the first attempt only."""
    hedge = copy.copy(req)
    hedge.headers = req.headers.copy()
    hedge._upload_tracker = None
    return hedge


async def _drop_response(resp: ClientResponse) -> None:
    """Close a hedged request's losing response that arrived anyway; its put() says CANCELLED
    (SLOW for a first attempt the hedge outran)."""
    lease: _ConnLease | None = getattr(resp.connection, "_kube_balance_lease", None)
    if lease is not None:
        lease.answer = Outcome.CANCELLED
    resp.close()


def _has_middlewares() -> bool:
    return "middlewares" in inspect.signature(aiohttp.ClientSession.__init__).parameters
