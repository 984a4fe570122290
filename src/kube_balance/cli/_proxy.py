"""``kube-balance proxy``: an HTTP reverse proxy in front of one Service, balanced per request.

All balancing is the aiohttp :class:`~kube_balance.integrations.aiohttp.BalancedConnector`'s;
this module only forwards: it streams request and response bodies both ways (bounded memory: each
side's flow control holds the other back), removes hop-by-hop headers and adds
``X-Forwarded-For/-Proto/-Host`` (RFC 9110 section 7.6.1), and sends ``Host`` as the Service
name. Errors before the response starts get a status and a one-line reason: 400 (an affinity
algorithm without a key), 503 (no endpoint and no fallback), 502 (no connection to any pod after
retries, or the pod broke the connection), 504 (no response in ``--timeout``).

A client that disconnects cancels its request to the pod. SIGTERM stops accepting connections,
lets in-flight requests finish for up to ``--grace`` seconds (responses then close their
connection), and exits 0. SIGUSR1 prints, on stdout, how
many requests each affinity key sent to each endpoint (as the seed's proxy; those that got no
response counted apart) and the balancer's status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import dataclasses
import json
import logging
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping

from .._balancer import LoadBalancer
from .._errors import AffinityKeyRequired, ConfigurationError
from .._fallback import fallback_target
from .._service import ServiceRef
from ..algorithms import KEYLESS
from ..integrations.aiohttp import BalancedConnector, NoEndpointsAvailable
from ._common import service_ref, setup_logging

logger = logging.getLogger("kube_balance.proxy")

T = TypeVar("T")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
"""RFC 9110 section 7.6.1 and RFC 9112: meaningful for one connection only, never forwarded."""

MAX_KEYS = 10_000
"""Distinct affinity keys counted for SIGUSR1; later keys count under ``(other)`` (bounded memory)."""

CHUNK = 64 * 1024

_endpoint: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kube_balance_proxy_endpoint", default=None
)


class _Connector(BalancedConnector):
    """Notes which endpoint the connector picked, for the per-key counts (same task, so a contextvar)."""

    async def connect(self, req: Any, traces: Any, timeout: aiohttp.ClientTimeout) -> Any:
        conn = await super().connect(req, traces, timeout)
        lease = getattr(conn, "_kube_balance_lease", None)
        _endpoint.set(lease.endpoint.key if lease is not None else "fallback")
        return conn


def _forwarded_headers(request: web.BaseRequest) -> CIMultiDict[str]:
    """The request's end-to-end headers plus X-Forwarded-*; Host goes (the client sets the Service)."""
    drop = HOP_BY_HOP | {"host", "expect"} | _connection_tokens(request.headers)
    headers: CIMultiDict[str] = CIMultiDict(
        (k, v) for k, v in request.headers.items() if k.lower() not in drop
    )
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme
    if request.host:
        headers["X-Forwarded-Host"] = request.host
    return headers


def _connection_tokens(headers: MultiMapping[str]) -> set[str]:
    """Header names listed in Connection: hop-by-hop too (RFC 9110 section 7.6.1)."""
    return {t.strip().lower() for v in headers.getall("Connection", ()) for t in v.split(",") if t.strip()}


class Proxy:
    """The request handler and its bookkeeping (in-flight count, per-key counts, draining)."""

    def __init__(
        self, balancer: LoadBalancer, session: aiohttp.ClientSession, args: argparse.Namespace
    ) -> None:
        self.balancer, self.session = balancer, session
        ref: ServiceRef = balancer.service
        self.base = f"{ref.scheme or 'http'}://{ref.host}"
        self.affinity_header: str = args.affinity_header
        self.requires_key = bool(getattr(balancer.algorithm, "requires_key", False))
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(args.timeout, 10.0), sock_read=args.timeout
        )
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.draining = False
        self.keys: Counter[tuple[str, str]] = Counter()  # requests sent, by (key, endpoint)
        self.failed: Counter[tuple[str, str]] = Counter()  # of which no response came back

    def _count(self, key: str | None, endpoint: str, *, failed: bool = False) -> None:
        k = key if key is not None else "(none)"
        if (k, endpoint) not in self.keys and len(self.keys) >= MAX_KEYS:
            k = "(other)"
        self.keys[(k, endpoint)] += 1
        if failed:
            self.failed[(k, endpoint)] += 1

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.inflight += 1
        self.idle.clear()
        try:
            return await self._forward(request)
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.set()

    async def _forward(self, request: web.BaseRequest) -> web.StreamResponse:
        key = request.headers.get(self.affinity_header) or None
        if self.requires_key and key is None:
            return self._error(
                400,
                f"algorithm {self.balancer.algorithm.name} needs an affinity key: set the {self.affinity_header} header",
            )
        if request.headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
            # Answered here (the header is hop-by-hop for us): a client waiting for it, as curl
            # does before a large upload, would otherwise stall for its own timeout first.
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        _endpoint.set(None)
        try:
            upstream = await self.session.request(
                request.method,
                self.base + request.rel_url.raw_path_qs,
                headers=_forwarded_headers(request),
                data=request.content if request.body_exists else None,
                allow_redirects=False,
                timeout=self.timeout,
                skip_auto_headers=("Content-Type", "User-Agent", "Accept", "Accept-Encoding"),
            )
        except AffinityKeyRequired as exc:
            return self._error(400, str(exc).splitlines()[0])
        except NoEndpointsAvailable as exc:
            return self._error(503, f"no endpoint available: {exc}")
        except TimeoutError as exc:  # the connector's error names the pod it waited for
            self._count_failed(key)
            return self._error(
                504, f"no response from {self.balancer.service} within {self.timeout.sock_read} s: {exc}"
            )
        except aiohttp.ClientError as exc:
            self._count_failed(key)
            return self._error(502, f"upstream {self.balancer.service} failed: {exc}")
        except asyncio.CancelledError:  # the client hung up (or the drain ended): no response
            self._count_failed(key)
            raise
        self._count(key, _endpoint.get() or "?")
        async with upstream:
            return await self._relay(request, upstream)

    def _count_failed(self, key: str | None) -> None:
        """A request that got no response: counted against the pod it went to, if it got one."""
        endpoint = _endpoint.get()
        if endpoint is not None:
            self._count(key, endpoint, failed=True)

    async def _relay(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        drop = HOP_BY_HOP | _connection_tokens(upstream.headers)
        headers: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in upstream.headers.items() if k.lower() not in drop
        )
        length = upstream.content_length
        if length is not None and length <= CHUNK:
            # A small body in one write with the headers: two small writes would let Nagle's
            # algorithm and the peer's delayed ACK add milliseconds to every response.
            try:
                body = await upstream.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                return self._error(502, f"upstream {self.balancer.service} broke mid-response: {exc!r}")
            small = web.Response(status=upstream.status, reason=upstream.reason, headers=headers, body=body)
            if self.draining:
                small.force_close()
            return small
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        if self.draining:
            response.force_close()
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Headers are gone already: all we can do is cut the client's connection too.
            logger.warning("upstream %s broke mid-response: %r", self.balancer.service, exc)
            response.force_close()
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    def _error(self, status: int, why: str) -> web.Response:
        logger.info("%d: %s", status, why)
        response = web.Response(status=status, text=why.replace("\n", " ") + "\n")
        if self.draining:
            response.force_close()
        return response

    def report(self) -> str:
        """SIGUSR1's text: per key and endpoint request counts, then the balancer status (JSON)."""
        lines = ["kube-balance proxy: requests per affinity key and endpoint"]
        for (key, endpoint), n in sorted(self.keys.items()):
            failed = self.failed[(key, endpoint)]
            lines.append(
                f"  {key} -> {endpoint}: {n}" + (f" ({failed} without a response)" if failed else "")
            )
        status = dataclasses.asdict(self.balancer.status())
        status["last_error"] = str(status["last_error"]) if status["last_error"] is not None else None
        lines.append("status: " + json.dumps(status, sort_keys=True, default=str))
        return "\n".join(lines)


async def _metrics_server(balancer: LoadBalancer, host: str, port: int) -> tuple[web.AppRunner, int]:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from .. import metrics

    registry = CollectorRegistry()
    metrics.register(balancer, registry=registry)

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, _port(site)


def _port(site: web.TCPSite) -> int:
    server: Any = site._server  # an asyncio.Server once started
    return int(server.sockets[0].getsockname()[1])


def _check_args(args: argparse.Namespace) -> None:
    """Options argparse cannot check alone: finite durations, --load-factor's algorithms, the
    package --metrics-listen needs."""
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ConfigurationError(f"--timeout {args.timeout}: expected a finite number of seconds > 0")
    if not (math.isfinite(args.grace) and args.grace >= 0):
        raise ConfigurationError(f"--grace {args.grace}: expected a finite number of seconds >= 0")
    if args.metrics_listen is not None:
        try:
            import prometheus_client  # noqa: F401  # else a traceback once the proxy had started
        except ImportError:
            raise ConfigurationError(
                "--metrics-listen needs prometheus-client: pip install 'kube-balance[prometheus]'"
            ) from None
    if args.fallback not in ("none", "service"):
        try:
            fallback_target(args.fallback)
        except ValueError as problem:  # in the command's words, not the keyword's (None, ...)
            raise ConfigurationError(
                f"--fallback {args.fallback}: {problem}; expected none (answer 503), service (the "
                "Service's DNS name) or HOST:PORT without a scheme, e.g. 10.0.0.1:8080 or [fd00::1]:8080"
            ) from None
    if args.load_factor is not None and not (math.isfinite(args.load_factor) and args.load_factor > 1.0):
        raise ConfigurationError(
            f"--load-factor {args.load_factor:g}: expected a finite number > 1.0, e.g. 1.25 (an endpoint "
            "takes at most 1.25 x the mean in-flight load); leave it out for no bound"
        )
    if args.load_factor is not None and args.algorithm in KEYLESS:
        raise ConfigurationError(
            f"--load-factor {args.load_factor}: bounded loads are for --algorithm ring_hash or maglev, "
            f"not {args.algorithm}"
        )


async def _listen(start: Awaitable[T], option: str, host: str, port: int) -> T:
    """``start`` (a server binding ``host:port``); a bind failure names ``option``, not a traceback."""
    try:
        return await start
    except OSError as exc:  # in use, not an address of this host, a name that does not resolve
        raise ConfigurationError(f"{option} {host}:{port}: cannot listen there: {exc}") from exc


def _balancer(args: argparse.Namespace, ref: ServiceRef) -> LoadBalancer:
    from ..discovery import KubernetesSource

    options = {"load_factor": args.load_factor} if args.load_factor is not None else None
    source = KubernetesSource(ref, kubeconfig=args.kubeconfig, context=args.context)
    fallback = None if args.fallback == "none" else args.fallback
    return LoadBalancer(
        ref, algorithm=args.algorithm, source=source, fallback=fallback, algorithm_options=options
    )


async def serve(args: argparse.Namespace) -> int:
    """Run the proxy until SIGTERM (or SIGINT); returns the exit status."""
    setup_logging(args.log_level)
    _check_args(args)
    balancer = _balancer(args, service_ref(args))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with balancer:
        connector = _Connector(balancer, affinity=args.affinity_header)
        session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        proxy = Proxy(balancer, session, args)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: print(proxy.report(), flush=True))
        metrics_runner = server = None
        try:
            # A client that hangs up cancels its request to the pod (aiohttp's default since 3.9
            # lets it run on to --timeout, holding the pod's in-flight count and the drain).
            web_server = web.Server(proxy.handle, access_log=None, handler_cancellation=True)
            host, port = args.listen
            server = await _listen(loop.create_server(web_server, host, port), "--listen", host, port)
            bound = server.sockets[0].getsockname()[1]
            if args.metrics_listen is not None:
                metrics = _metrics_server(balancer, *args.metrics_listen)
                metrics_runner, mport = await _listen(metrics, "--metrics-listen", *args.metrics_listen)
            print(f"kube-balance proxy: {balancer.service} on http://{host}:{bound}", flush=True)
            if metrics_runner is not None:
                print(
                    f"kube-balance proxy: metrics on http://{args.metrics_listen[0]}:{mport}/metrics",
                    flush=True,
                )
            await stop.wait()
            started = time.monotonic()
            proxy.draining = True
            server.close()  # stop accepting; open connections stay until their requests end
            try:
                await asyncio.wait_for(proxy.idle.wait(), args.grace)
            except TimeoutError:
                logger.warning(
                    "grace period of %s s over with %d requests in flight", args.grace, proxy.inflight
                )
            await web_server.shutdown(0.1)  # close idle keep-alive connections
            print(
                f"kube-balance proxy: stopped after {time.monotonic() - started:.1f} s of drain, "
                f"{proxy.inflight} requests cut",
                flush=True,
            )
        finally:
            if server is not None:
                server.close()  # already closed after a signal; not yet after a failed start
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            await session.close()
    return 0


def run(args: argparse.Namespace) -> int:
    """The ``proxy`` subcommand."""
    try:
        return asyncio.run(serve(args))
    except ConfigurationError as exc:
        print(f"kube-balance proxy: {exc}", file=sys.stderr)
        return 2
