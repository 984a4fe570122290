"""``BalancedTransport``: an httpx transport that balances every request across a Service's pods.

::

    client = httpx.AsyncClient(transport=BalancedTransport("web.shop:http"))
    await client.get("http://web.shop/items")

Requests whose host names the Service (``web.shop``, ``web.shop.svc``, ``web.shop.svc.cluster.local``,
with or without a trailing dot, and a bare ``web`` from the Service's own namespace: see
:attr:`ServiceRef.hosts <kube_balance.ServiceRef.hosts>`) are sent to a pod's IP and port through
that pod's own connection pool; the Host header, TLS SNI
and certificate verification stay on the Service name, and ``response.url`` (so redirects and
cookies) keeps the Service URL. The URL's port is not used: the pod port comes from the endpoints.
Other hosts pass through to a plain ``httpx.AsyncHTTPTransport`` with the same options.

Needs ``pip install 'kube-balance[httpx]'`` (``[http2]`` for ``http2=True``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random as _random
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kube_balance.integrations.httpx needs httpx: pip install 'kube-balance[httpx]'"
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
from .._dispatch import Attempts, Dispatcher, Lease, Verdict
from .._hedge import HedgePolicy
from .._outcome import Outcome, parse_retry_after
from .._retry import Failure, RetryPolicy
from .._routes import Routes, ServiceSpec, affinity_for
from .._service import DEFAULT_CLUSTER_DOMAIN
from .._validate import check_bool, check_callable, check_instance, check_int, check_optional_str, invalid
from ..algorithms import Algorithm, Clock
from ._httpcore_orphans import reclaim

if TYPE_CHECKING:  # kube_balance.discovery loads on first use, not with the transport
    from ..discovery._source import EndpointSource

__all__ = ["BalancedTransport", "NoEndpointsAvailable"]

_SocketOption = Any  # httpx's SOCKET_OPTION union, private in httpx
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")  # Endpoint already validated the address


class NoEndpointsAvailable(httpx.ConnectError, _errors.NoEndpointsAvailable):
    """No usable endpoint and no fallback: an ``httpx.ConnectError`` and a kube-balance error."""


_LOCAL_ERRORS = (httpx.PoolTimeout, httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.StreamError)
"""Failures on our side, not the pod's: a full pool of our own (``PoolTimeout``), a request httpx
refuses to send, a request body already consumed. ``put()`` does not charge the pod for them."""


def _classify(exc: BaseException) -> Verdict:
    # ConnectError/ConnectTimeout: no connection, so nothing was sent. Read/Write/RemoteProtocol
    # errors before the response headers: the connection broke, the request may have been seen.
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return Verdict(Failure.NOT_SENT, Outcome.CONNECT_FAILED)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return Verdict(Failure.NO_RESPONSE, Outcome.RESET)
    if isinstance(exc, _LOCAL_ERRORS):
        return Verdict(None, Outcome.LOCAL)
    if isinstance(exc, httpx.TimeoutException):
        return Verdict(None, Outcome.TIMEOUT)
    return Verdict(None, Outcome.ERROR)


class _LeasedStream(httpx.AsyncByteStream):
    """The response body; closing it (or, as a safety net, losing it) releases the lease once."""

    __slots__ = ("_inner", "_lease", "_outcome")

    def __init__(self, inner: httpx.AsyncByteStream, lease: Lease[Any]) -> None:
        self._inner = inner
        self._lease = lease
        self._outcome: Outcome | None = None  # None: the status decides

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except asyncio.CancelledError:
            self._outcome = Outcome.CANCELLED
            raise
        except Exception as exc:
            self._outcome = _classify(exc).outcome
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._lease.release(self._outcome)

    def __del__(self) -> None:
        # Safety net for a response nobody closed: put() still runs (scheduled on the loop when
        # the response is garbage-collected, as a finalizer may run in any thread or in the
        # middle of the dispatcher's bookkeeping) and LoadBalancer.status().unclosed_responses
        # counts it. The httpx connection under it is not ours to close from here: it stays
        # checked out of the pod's pool until httpcore's own stream is collected too.
        lease = getattr(self, "_lease", None)
        if lease is not None and not lease.released:
            lease.release_from_finalizer(self._outcome)


class BalancedTransport(httpx.AsyncBaseTransport):
    """Balances requests to Kubernetes Services per request, across per-pod connection pools.

    ``service`` is ``"name.ns:port"``, a :class:`ServiceRef` or a running :class:`LoadBalancer`
    (then ``algorithm``, ``source``, ``fallback``, ``algorithm_options`` and ``rng`` belong to it:
    passing them here too raises :class:`~kube_balance.ConfigurationError`; the transport does not
    close it), or a list of them: each Service's hosts are balanced by its own balancer
    (``balancers``; ``balancer`` and ``dispatcher`` are the first Service's), other hosts pass
    through. ``clock`` times each attempt to its response headers (the ``elapsed``
    given to ``put()``; default ``time.perf_counter``) and, for a balancer of its own, is the
    balancer's clock too. ``affinity`` gives hash algorithms their key: a header name, a
    callable on the request, or an ``AffinityKey`` (default: the ``X-Affinity`` header when the
    algorithm needs a key). ``retry`` is the :class:`RetryPolicy` for retries on another pod
    (default: 3 attempts; connection failures for any method, a connection lost before the
    response for idempotent ones). ``hedge`` is a :class:`HedgePolicy`: idempotent requests whose
    first attempt has not answered after its delay are sent to a second pod too, the first
    answer wins (default None: no hedging). ``verify``, ``cert``, ``trust_env``, ``http1``, ``http2``,
    ``limits`` (per pod; httpx's defaults, 100 connections / 20 keep-alive), ``retries`` (httpx's
    connect retries on the same pod), ``socket_options`` and ``local_address`` mean what they
    mean for ``httpx.AsyncHTTPTransport``.

    A response must be closed (``client.get()`` does it; ``client.stream()`` does it on exit) to
    release its pod; one that is garbage-collected unclosed is released then (on the next loop
    turn), and counted in ``LoadBalancer.status().unclosed_responses``. Until it is collected its
    HTTP connection stays checked out of the pod's pool (httpx's own behaviour for an unclosed
    stream), so leaking responses can exhaust ``limits``. A hash algorithm asked without a key raises
    :class:`~kube_balance.AffinityKeyRequired` (a configuration error, not an httpx error).
    """

    def __init__(
        self,
        service: ServiceSpec | Sequence[ServiceSpec] | ClusterSpec,
        *,
        algorithm: str | Algorithm = "least_request",
        source: EndpointSource | None = None,
        fallback: str | None = "service",
        affinity: AffinityKey | str | KeyFunction | None = None,
        retry: RetryPolicy | None = None,
        hedge: HedgePolicy | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),  # noqa: B008
        retries: int = 0,
        socket_options: Iterable[_SocketOption] | None = None,
        local_address: str | None = None,
        algorithm_options: Mapping[str, Any] | None = None,
        rng: _random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        check_instance(
            "BalancedTransport hedge", hedge, (HedgePolicy, type(None)), "expected a HedgePolicy or None"
        )
        _check_transport_options(
            retry=retry,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=limits,
            retries=retries,
            socket_options=socket_options,
            local_address=local_address,
            clock=clock,
        )
        options = {
            "algorithm": algorithm,
            "source": source,
            "fallback": fallback,
            "algorithm_options": algorithm_options,
            "rng": rng,
            "clock": clock,
        }
        self._routes: Routes[_Route] | ClusterRoutes[_Route] = route_table(
            service,
            options,
            lambda balancer, owned: _Route(
                balancer,
                owned,
                affinity_for(balancer, affinity),
                Dispatcher(balancer, _Adapter(self._open_pool), retry=retry, clock=clock, hedge=hedge),
            ),
        )
        # By keyword, as httpx's own transport calls it: the positional order changed in 0.28
        # (0.27 is ``create_ssl_context(cert, verify, trust_env, http2)``), and a positional
        # call put ``verify`` in ``cert`` and ``cert`` (None) in ``verify``: a context verifying nothing.
        self._ssl_args: dict[str, Any] = {"verify": verify, "trust_env": trust_env}
        self._cert = _check_cert(cert)
        self._ssl: ssl.SSLContext | None = None
        self._pool_options: dict[str, Any] = {
            "http1": http1,
            "http2": http2,
            "limits": limits,
            "retries": retries,
            "socket_options": socket_options,
            "local_address": local_address,
            "trust_env": trust_env,
        }
        self._passthrough: httpx.AsyncBaseTransport | None = None

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
        passthrough: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> BalancedTransport:
        """A transport for every Service of the cluster: a request whose host names a Service
        (``web``, ``web.shop``, ``web.shop.svc``, ``web.shop.svc.cluster.local``) is balanced across
        its pods, the URL's port being the Service port; other hosts pass through.

        ``namespaces`` restricts the Services balanced (others pass through, unread);
        ``namespace`` is the one a bare ``web`` means (default: the client's own);
        ``idle_timeout`` (seconds, default 600) stops an unused Service's watch; ``max_services``
        (default 100) caps the Services watched at once; ``service_refresh`` (seconds, default 30)
        is how long a read of a Service object holds before a request reads it again (in the
        background), so a changed port or type is seen. ``api_client``, ``kubeconfig``,
        ``context`` and ``in_cluster`` say how to reach the API (as for ``KubernetesSource``).
        ``passthrough`` is the transport for other hosts (default: an ``httpx.AsyncHTTPTransport``
        with this transport's options; closed with it). Every other keyword is ``__init__``'s,
        but ``source`` and ``fallback``. See docs/cluster.md.
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
        check_instance(
            "BalancedTransport passthrough",
            passthrough,
            (httpx.AsyncBaseTransport, type(None)),
            "expected an httpx.AsyncBaseTransport or None",
        )
        transport = cls(spec, **options)
        transport._passthrough = passthrough
        return transport

    @property
    def cluster_routes(self) -> ClusterRoutes[_Route] | None:
        """The cluster table (Services watched now, :meth:`ClusterRoutes.sweep`), or None."""
        return self._routes if isinstance(self._routes, ClusterRoutes) else None

    @property
    def balancer(self) -> LoadBalancer:
        """The (first) Service's balancer."""
        return self._first_route().balancer

    @property
    def dispatcher(self) -> Dispatcher[httpx.AsyncHTTPTransport, _Attempt, httpx.Response]:
        """The (first) Service's dispatcher: its per-pod pools, retries and budget."""
        return self._first_route().dispatcher

    def _first_route(self) -> _Route:
        routes = self._routes.routes
        if not routes:  # a cluster transport before its first request to a Service
            raise LookupError(
                "this cluster transport has no Service yet: a Service gets its balancer on its first "
                "request; .balancers lists the Services in use"
            )
        return routes[0]

    @property
    def balancers(self) -> list[LoadBalancer]:
        """Every Service's balancer, in the order given."""
        return self._routes.balancers

    def _open_pool(self) -> httpx.AsyncHTTPTransport:
        if self._ssl is None:  # built once: loading CA certificates costs milliseconds
            self._ssl = self._ssl_context()
        return httpx.AsyncHTTPTransport(verify=self._ssl, **self._pool_options)

    def _ssl_context(self) -> ssl.SSLContext:
        """The pods' SSL context; a CA bundle or certificate that cannot be loaded is named
        (a bare ``FileNotFoundError`` or ``SSLError`` from the first request says neither)."""
        verify = self._ssl_args["verify"]
        try:
            context = httpx.create_ssl_context(**self._ssl_args)
        except (OSError, ssl.SSLError) as exc:
            raise invalid(
                "BalancedTransport verify", verify, f"cannot load it as a CA bundle: {exc}"
            ) from exc
        if self._cert is not None:  # ourselves: httpx >= 0.28 drops cert when verify is a path
            try:
                context.load_cert_chain(*self._cert)
            except (OSError, ssl.SSLError) as exc:
                raise invalid(
                    "BalancedTransport cert", self._cert, f"cannot load the certificate chain: {exc}"
                ) from exc
        return context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to a pod of the Service (or pass it through for other hosts)."""
        url = request.url
        routes = self._routes
        route = (
            routes.get(url.host) if routes.static else await routes.resolve(url.host, url.port, url.scheme)
        )
        if route is None:
            if self._passthrough is None:
                self._passthrough = self._open_pool()
            return await self._passthrough.handle_async_request(request)
        extensions = request.extensions
        if url.scheme == "https" and "sni_hostname" not in extensions:
            extensions = {**extensions, "sni_hostname": url.host}
        timeout = extensions.get("timeout")
        hedging = route.dispatcher.hedging
        if hedging is not None and hedging.applies(
            request.method, isinstance(request.stream, httpx.ByteStream)
        ):
            return await self._send_hedged(route, request, extensions)
        try:
            response, lease = await route.dispatcher.send(
                (request, extensions),
                key=route.key.from_request(request, request.headers, request.headers.raw)
                if route.key is not None
                else None,
                method=request.method,
                replayable=isinstance(request.stream, httpx.ByteStream),
                wait=timeout.get("connect") if isinstance(timeout, Mapping) else None,
            )
        except _errors.NoEndpointsAvailable as exc:
            raise NoEndpointsAvailable(str(exc), request=request) from exc
        response.stream = _LeasedStream(response.stream, lease)  # type: ignore[arg-type]
        return response

    async def _send_hedged(
        self, route: _Route, request: httpx.Request, extensions: Mapping[str, Any]
    ) -> httpx.Response:
        """:meth:`handle_async_request` for a request the route's ``HedgePolicy`` may hedge."""
        timeout = extensions.get("timeout")
        try:
            response, lease = await route.dispatcher.send_hedged(
                (request, extensions),
                key=route.key.from_request(request, request.headers, request.headers.raw)
                if route.key is not None
                else None,
                method=request.method,
                replayable=True,
                wait=timeout.get("connect") if isinstance(timeout, Mapping) else None,
            )
        except _errors.NoEndpointsAvailable as exc:
            raise NoEndpointsAvailable(str(exc), request=request) from exc
        response.stream = _LeasedStream(response.stream, lease)  # type: ignore[arg-type]
        return response

    async def __aenter__(self) -> BalancedTransport:
        for balancer in self.balancers:
            await balancer.ensure_started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pod's pool and the pass-through pool; stop the balancer if it is ours."""
        for route in self._routes.routes:
            await route.dispatcher.aclose()
        if self._passthrough is not None:
            await self._passthrough.aclose()
        for route in self._routes.routes:
            if route.owned:
                await route.balancer.aclose()
        await self._routes.aclose()

    def __repr__(self) -> str:
        routes = " ".join(f"{r.balancer!r} {r.dispatcher!r}" for r in self._routes.routes)
        return f"<BalancedTransport {routes}>"


def _check_cert(cert: Any) -> tuple[str, ...] | None:
    """``cert`` as ``load_cert_chain`` arguments: a file, (certfile, keyfile), (certfile, keyfile, password)."""
    if cert is None:
        return None
    if isinstance(cert, str):
        return (cert,)
    if isinstance(cert, tuple) and len(cert) in (2, 3) and all(isinstance(c, str) or c is None for c in cert):
        return cert
    raise _errors.ConfigurationError(
        f"cert={cert!r} is not a client certificate: pass a file path, (certfile, keyfile) or "
        "(certfile, keyfile, password)"
    )


def _public_copy(
    request: httpx.Request, host: str, port: int, extensions: Mapping[str, Any]
) -> httpx.Request:
    """``request`` sent to ``host:port``, through httpx's public API (re-parses the URL)."""
    return httpx.Request(
        request.method,
        request.url.copy_with(host=host, port=port),
        headers=request.headers,
        stream=request.stream,
        extensions=dict(extensions),
    )


def _fast_copy(request: httpx.Request, host: str, port: int, extensions: Mapping[str, Any]) -> httpx.Request:
    """:func:`_public_copy` for an IPv4 ``host`` through httpx internals: a shallow copy of the
    request (not ``copy.copy()``: its pickling support drops the stream) and the URL's parsed
    form with its host and port replaced, skipping ``copy_with``'s re-parse and validation.

    Measured (benchmarks/bench_request_copy.py): about a tenth of the public path's time, whose
    re-parse is about a tenth of plain httpx's client CPU per request. :data:`FAST_COPY` says
    whether this httpx still has the shape it relies on; tests fail loudly when it does not.
    """
    pod = object.__new__(httpx.Request)
    pod.__dict__.update(request.__dict__)
    url = object.__new__(httpx.URL)
    url._uri_reference = request.url._uri_reference._replace(host=host, port=port)
    pod.url = url
    pod.extensions = extensions  # type: ignore[assignment]
    return pod


def _fast_copy_works() -> bool:
    """Whether :func:`_fast_copy` gives what :func:`_public_copy` gives, on this httpx."""
    try:
        request = httpx.Request("POST", "https://u:p@web.shop/a%20b?q=1#f", headers={"X": "1"}, content=b"x")
        fast = _fast_copy(request, "10.1.2.3", 8443, {"sni_hostname": "web.shop"})
        public = _public_copy(request, "10.1.2.3", 8443, {"sni_hostname": "web.shop"})
        return (
            fast.url == public.url
            and str(fast.url) == str(public.url)
            and (fast.url.netloc, fast.url.raw_path) == (public.url.netloc, public.url.raw_path)
            and (fast.method, list(fast.headers.raw)) == (public.method, list(public.headers.raw))
            and fast.stream is request.stream is public.stream
            and fast.extensions == public.extensions
        )
    except Exception:  # any change of shape: use the public path
        return False


FAST_COPY = _fast_copy_works()
"""Whether requests to IPv4 pods are copied through httpx internals (see :func:`_fast_copy`)."""


def _explain(exc: Exception, attempts: Attempts, request: httpx.Request) -> BaseException | None:
    """The same httpx error, with a message naming what was tried (None: keep ``exc`` as is)."""
    if not isinstance(exc, httpx.RequestError) or isinstance(exc, _errors.NoEndpointsAvailable):
        return None
    message = attempts.message(exc)
    try:
        return type(exc)(message, request=request)
    except TypeError:  # a subclass with another constructor: keep the original
        return None


def _check_transport_options(
    *,
    retry: object,
    verify: object,
    cert: object,
    trust_env: object,
    http1: object,
    http2: object,
    limits: object,
    retries: object,
    socket_options: object,
    local_address: object,
    clock: object,
) -> None:
    """Refuse a wrong option now, with its name, rather than at the first request from httpx."""
    check_instance(
        "BalancedTransport retry", retry, (RetryPolicy, type(None)), "expected a RetryPolicy or None"
    )
    check_instance(
        "BalancedTransport verify",
        verify,
        (ssl.SSLContext, str, bool),
        "expected True, False, a CA bundle path or an ssl.SSLContext",
    )
    if cert is not None and not (
        isinstance(cert, str)
        or (
            isinstance(cert, tuple)
            and 2 <= len(cert) <= 3
            and all(isinstance(c, (str, type(None))) for c in cert)
        )
    ):
        raise invalid(
            "BalancedTransport cert",
            cert,
            "expected a certificate file path, a (cert file, key file[, password]) tuple, or None",
        )
    check_bool("BalancedTransport trust_env", trust_env)
    check_bool("BalancedTransport http1", http1)
    check_bool("BalancedTransport http2", http2)
    if not (http1 or http2):
        raise _errors.ConfigurationError("BalancedTransport needs http1=True or http2=True (both are False)")
    if http2:
        try:  # what httpx.AsyncHTTPTransport checks, at each pod's first request here
            import h2  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "BalancedTransport(http2=True) needs the h2 package: pip install 'kube-balance[http2]'"
            ) from exc
    check_instance("BalancedTransport limits", limits, httpx.Limits, "expected an httpx.Limits")
    check_int("BalancedTransport retries", retries, low=0)
    if socket_options is not None and (
        isinstance(socket_options, (str, bytes)) or not isinstance(socket_options, Iterable)
    ):
        raise invalid(
            "BalancedTransport socket_options",
            socket_options,
            "expected a list of socket option tuples, or None",
        )
    _check_paths(verify, cert)
    check_optional_str("BalancedTransport local_address", local_address, "a local IP address")
    if isinstance(local_address, str) and not _is_ip(local_address):
        # httpx binds each pod connection to it: a host name or typo would fail every connection,
        # charged to the pods (retries, ejections) instead of to this option.
        raise invalid("BalancedTransport local_address", local_address, "expected a local IP address or None")
    if clock is not None:
        check_callable("BalancedTransport clock", clock, "a callable returning monotonic seconds, or None")


def _check_paths(verify: object, cert: object) -> None:
    """A CA bundle or certificate path that does not exist fails now, named, not at the first request."""
    if isinstance(verify, str) and not os.path.exists(verify):
        raise invalid(
            "BalancedTransport verify",
            verify,
            "no such file or directory; expected True, False, an existing CA bundle path or an ssl.SSLContext",
        )
    files = (cert,) if isinstance(cert, str) else cert[:2] if isinstance(cert, tuple) else ()
    for path in files:
        if isinstance(path, str) and not os.path.isfile(path):
            raise invalid("BalancedTransport cert", cert, f"no such file: {path!r}")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class _Route(NamedTuple):
    """One Service: its balancer (``owned``: closed with the transport), key reader, dispatcher."""

    balancer: LoadBalancer
    owned: bool
    key: AffinityKey | None
    dispatcher: Dispatcher[httpx.AsyncHTTPTransport, tuple[httpx.Request, Mapping[str, Any]], httpx.Response]


_Attempt = tuple[httpx.Request, Mapping[str, Any]]
"""The caller's request and the extensions every attempt sends it with (SNI on the Service name)."""


class _Adapter:
    """What one attempt, its errors and its response mean for httpx (see ``_dispatch.Adapter``)."""

    __slots__ = ("open_pool",)
    pooled = True  # a connection pool (httpx transport) per endpoint

    def __init__(self, open_pool: Callable[[], httpx.AsyncHTTPTransport]) -> None:
        self.open_pool = open_pool

    async def close_pool(self, pool: httpx.AsyncHTTPTransport) -> None:
        await pool.aclose()  # the dispatcher runs it in a task of its own, shielded

    async def attempt(self, lease: Lease[httpx.AsyncHTTPTransport], request: _Attempt) -> httpx.Response:
        caller, extensions = request
        # A copy sent to the pod: same headers (Host stays the Service host), same body stream;
        # the caller's request keeps the Service URL for response.url and redirects.
        if FAST_COPY and _IPV4.fullmatch(lease.host):
            pod = _fast_copy(caller, lease.host, lease.port, extensions)
        else:  # IPv6 pods, the fallback's DNS name, or an httpx whose internals changed
            pod = _public_copy(caller, lease.host, lease.port, extensions)
        try:
            return await lease.pool.handle_async_request(pod)
        except BaseException:
            await reclaim(lease.pool)  # a slot httpcore may have lost to this failure
            raise

    def classify(self, exc: BaseException) -> Verdict:
        return _classify(exc)

    def status(self, result: httpx.Response) -> int:
        return result.status_code

    def retry_after(self, result: httpx.Response) -> float | None:
        return parse_retry_after(result.headers.get("retry-after"))

    async def discard(self, result: httpx.Response) -> None:
        await result.aclose()

    def explain(self, exc: Exception, attempts: Attempts, request: _Attempt) -> BaseException | None:
        return _explain(exc, attempts, request[0])
