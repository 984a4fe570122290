"""``BalancedTransport``: an httpx transport that balances every request across a Service's pods.

::

    client = httpx.AsyncClient(transport=BalancedTransport("web.shop:http"))
    await client.get("http://web.shop/items")

Requests whose host is the Service (``web.shop``, ``web.shop.svc``, ``web.shop.svc.cluster.local``)
are sent to a pod's IP and port through that pod's own connection pool; the Host header, TLS SNI
and certificate verification stay on the Service name, and ``response.url`` (so redirects and
cookies) keeps the Service URL. The URL's port is not used: the pod port comes from the endpoints.
Other hosts pass through to a plain ``httpx.AsyncHTTPTransport`` with the same options.

Needs ``pip install kube-balance[httpx]`` (``[http2]`` for ``http2=True``).
"""

from __future__ import annotations

import random as _random
import re
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("kube_balance.integrations.httpx needs httpx: pip install kube-balance[httpx]") from exc

from .. import _errors
from .._affinity import AffinityKey, KeyFunction
from .._balancer import LoadBalancer
from .._dispatch import Dispatcher, Lease, Verdict
from .._retry import Failure, RetryPolicy
from .._service import ServiceRef
from .._validate import check_bool, check_callable, check_instance, check_int, check_optional_str, invalid
from ..algorithms import Algorithm, Clock

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
        return Verdict(Failure.NOT_SENT)
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return Verdict(Failure.NO_RESPONSE)
    return Verdict(None, endpoint_at_fault=not isinstance(exc, _LOCAL_ERRORS))


class _LeasedStream(httpx.AsyncByteStream):
    """The response body; closing it (or, as a safety net, losing it) releases the lease once."""

    __slots__ = ("_inner", "_lease", "_failed")

    def __init__(self, inner: httpx.AsyncByteStream, lease: Lease[Any], failed: bool) -> None:
        self._inner = inner
        self._lease = lease
        self._failed = failed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception:
            self._failed = True
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._lease.release(self._failed)

    def __del__(self) -> None:
        # Safety net for a response nobody closed: put() still runs (scheduled on the loop when
        # the response is garbage-collected, as a finalizer may run in any thread or in the
        # middle of the dispatcher's bookkeeping) and LoadBalancer.status().unclosed_responses
        # counts it. The httpx connection under it is not ours to close from here: it stays
        # checked out of the pod's pool until httpcore's own stream is collected too.
        lease = getattr(self, "_lease", None)
        if lease is not None and not lease.released:
            lease.release_from_finalizer(self._failed)


async def _discard(response: httpx.Response) -> None:
    await response.aclose()


class BalancedTransport(httpx.AsyncBaseTransport):
    """Balances requests to one Kubernetes Service per request, across per-pod connection pools.

    ``service`` is ``"name.ns:port"``, a :class:`ServiceRef` or a running :class:`LoadBalancer`
    (then ``algorithm``, ``source``, ``fallback``, ``algorithm_options`` and ``rng`` belong to it:
    passing them here too raises :class:`~kube_balance.ConfigurationError`; the transport does not
    close it). ``clock`` times each attempt to its response headers (the ``elapsed``
    given to ``put()``; default ``time.perf_counter``) and, for a balancer of its own, is the
    balancer's clock too. ``affinity`` gives hash algorithms their key: a header name, a
    callable on the request, or an ``AffinityKey`` (default: the ``X-Affinity`` header when the
    algorithm needs a key). ``retry`` is the :class:`RetryPolicy` for retries on another pod
    (default: 3 attempts; connection failures for any method, a connection lost before the
    response for idempotent ones). ``verify``, ``cert``, ``trust_env``, ``http1``, ``http2``,
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
        service: str | ServiceRef | LoadBalancer,
        *,
        algorithm: str | Algorithm = "least_request",
        source: EndpointSource | None = None,
        fallback: str | None = "service",
        affinity: AffinityKey | str | KeyFunction | None = None,
        retry: RetryPolicy | None = None,
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
        if isinstance(service, LoadBalancer):
            # The balancer was built with its own algorithm, source, fallback and rng: a different
            # value here would be silently ignored, so it is refused instead.
            ignored = {
                "algorithm": algorithm != "least_request",
                "source": source is not None,
                "fallback": fallback != "service",
                "algorithm_options": algorithm_options is not None,
                "rng": rng is not None,
            }
            if any(ignored.values()):
                names = ", ".join(name for name, given in ignored.items() if given)
                raise _errors.ConfigurationError(
                    f"BalancedTransport was given a LoadBalancer and {names}: these belong to the "
                    "LoadBalancer; pass them to LoadBalancer(...) instead, or pass the service name here"
                )
            self.balancer, self._owns_balancer = service, False
        else:
            self.balancer = LoadBalancer(
                service,
                algorithm=algorithm,
                source=source,
                fallback=fallback,
                algorithm_options=algorithm_options,
                rng=rng,
                clock=clock,
            )
            self._owns_balancer = True
        self._hosts = self.balancer.service.hosts
        key = AffinityKey.parse(affinity)
        if key is None and getattr(self.balancer.algorithm, "requires_key", False):
            key = AffinityKey()  # the seed's X-Affinity header
        self._key = key
        self._ssl_args = (verify, cert, trust_env)
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
        self._passthrough: httpx.AsyncHTTPTransport | None = None
        self.dispatcher: Dispatcher[httpx.AsyncHTTPTransport] = Dispatcher(
            self.balancer, open_pool=self._open_pool, close_pool=_close_pool, retry=retry, clock=clock
        )

    def _open_pool(self) -> httpx.AsyncHTTPTransport:
        if self._ssl is None:  # built once: loading CA certificates costs milliseconds
            self._ssl = httpx.create_ssl_context(*self._ssl_args)
        return httpx.AsyncHTTPTransport(verify=self._ssl, **self._pool_options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to a pod of the Service (or pass it through for other hosts)."""
        url = request.url
        if url.host not in self._hosts:
            if self._passthrough is None:
                self._passthrough = self._open_pool()
            return await self._passthrough.handle_async_request(request)
        extensions = request.extensions
        if url.scheme == "https" and "sni_hostname" not in extensions:
            extensions = {**extensions, "sni_hostname": url.host}

        async def attempt(lease: Lease[httpx.AsyncHTTPTransport]) -> httpx.Response:
            # A shallow copy: same headers (Host stays the Service host), same body stream;
            # the caller's request object keeps the Service URL for response.url and redirects.
            pod = object.__new__(httpx.Request)  # not copy.copy(): pickling support drops the stream
            pod.__dict__.update(request.__dict__)
            pod.url = _with_address(url, lease.host, lease.port)
            pod.extensions = extensions
            return await lease.pool.handle_async_request(pod)

        try:
            response, lease = await self.dispatcher.send(
                attempt,
                key=self._key.from_request(request, request.headers) if self._key is not None else None,
                method=request.method,
                replayable=isinstance(request.stream, httpx.ByteStream),
                classify=_classify,
                status=_status,
                discard=_discard,
            )
        except _errors.NoEndpointsAvailable as exc:
            raise NoEndpointsAvailable(str(exc), request=request) from exc
        response.stream = _LeasedStream(
            response.stream,  # type: ignore[arg-type]
            lease,
            response.status_code >= 500,
        )
        return response

    async def __aenter__(self) -> BalancedTransport:
        await self.balancer.ensure_started()
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
        await self.dispatcher.aclose()
        if self._passthrough is not None:
            await self._passthrough.aclose()
        if self._owns_balancer:
            await self.balancer.aclose()

    def __repr__(self) -> str:
        return f"<BalancedTransport {self.balancer!r} {self.dispatcher!r}>"


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
    check_optional_str("BalancedTransport local_address", local_address, "a local IP address")
    if clock is not None:
        check_callable("BalancedTransport clock", clock, "a callable returning monotonic seconds, or None")


def _with_address(url: httpx.URL, host: str, port: int) -> httpx.URL:
    """``url`` sent to ``host:port``. For an IPv4 address, skip ``copy_with``'s re-parse and
    validation (16 us, on every request) by replacing the two fields of httpx's parsed form."""
    ref = getattr(url, "_uri_reference", None)
    if ref is not None and hasattr(ref, "_replace") and _IPV4.fullmatch(host):
        new = object.__new__(httpx.URL)
        new._uri_reference = ref._replace(host=host, port=port)
        return new
    return url.copy_with(host=host, port=port)


def _status(response: httpx.Response) -> int:
    return response.status_code


async def _close_pool(pool: httpx.AsyncHTTPTransport) -> None:
    await pool.aclose()  # the dispatcher runs it in a task of its own, shielded
