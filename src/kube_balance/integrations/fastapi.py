"""FastAPI: balanced clients started with the app, handed to handlers as a dependency.

::

    from typing import Annotated

    import httpx
    from fastapi import Depends, FastAPI
    from kube_balance.integrations.fastapi import BalancedClients

    clients = BalancedClients()
    web = clients.httpx("web.shop:http", forward_affinity="X-User")  # a dependency
    app = FastAPI(lifespan=clients.lifespan())  # or clients.lifespan(your_own_lifespan)

    @app.get("/items")
    async def items(client: Annotated[httpx.AsyncClient, Depends(web)]):
        return (await client.get("/items")).json()  # base URL: http://web.shop

    anywhere = clients.httpx_cluster(forward_affinity="X-User")  # every Service, by its URL

    @app.get("/cart")
    async def cart(client: Annotated[httpx.AsyncClient, Depends(anywhere)]):
        return (await client.get("http://cart.shop/v1")).json()

Each declared client is created once per app when the app starts (its balancer starts and the
startup waits, bounded, for the first endpoints), shared by every request, and closed when the app
stops. ``forward_affinity`` (a header name or a callable on the incoming request) copies a key
from the incoming request into the outgoing one's affinity header, so ``ring_hash`` keeps a user
on one pod across a chain of services. ``balanced_client()`` and ``balanced_lifespan`` do the same
on a module-wide registry. A cluster-mode client (:meth:`BalancedClients.httpx_cluster`,
:meth:`BalancedClients.aiohttp_cluster`) balances any URL whose host names a Service; its
Services start on their first request, so the app's startup waits for none. Needs
``pip install 'kube-balance[fastapi]'`` (``[aiohttp]`` too for aiohttp clients).
"""

import asyncio
import contextlib
import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, cast

try:
    from starlette.requests import Request
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kube_balance.integrations.fastapi needs FastAPI: pip install 'kube-balance[fastapi]'"
    ) from exc

from .._affinity import DEFAULT_HEADER
from .._balancer import LoadBalancer
from .._errors import ConfigurationError, NoEndpointsAvailable
from .._service import ServiceRef

__all__ = ["BalancedClients", "balanced_client", "balanced_cluster_client", "balanced_lifespan"]

logger = logging.getLogger("kube_balance")

DEFAULT_STARTUP_TIMEOUT = 5.0
"""Seconds the app's startup waits for each Service's first endpoints (then the fallback serves):
the balancer's own startup wait."""

Forward = str | Callable[[Request], "str | None"]
Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]

_incoming_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kube_balance_affinity", default=None
)


class BalancedClient:
    """One declared client: a FastAPI dependency returning the app's shared client for a Service
    (``service`` None: a cluster-mode client, for every Service)."""

    def __init__(
        self,
        owner: "BalancedClients",
        service: str | ServiceRef | None,
        kind: Literal["httpx", "aiohttp"],
        forward_affinity: Forward | None,
        options: Mapping[str, Any],
        client_options: Mapping[str, Any],
    ) -> None:
        if forward_affinity is not None and not (
            isinstance(forward_affinity, str) or callable(forward_affinity)
        ):
            raise ConfigurationError(
                f"forward_affinity must be a header name or a callable on the incoming request, "
                f"not {forward_affinity!r}"
            )
        if not isinstance(client_options, Mapping):
            raise ConfigurationError(
                f"client_options must be a mapping of {_CLIENT[kind]} options, not {client_options!r}"
            )
        self._owner = owner
        self.service = service if isinstance(service, (ServiceRef, type(None))) else ServiceRef.parse(service)
        self.kind = kind
        self.forward = forward_affinity
        self.options = dict(options)
        self.client_options = dict(client_options)
        _check_client_options(kind, self.client_options)
        affinity = self.options.get("affinity")
        self.header = affinity if isinstance(affinity, str) else DEFAULT_HEADER
        # A wrong option fails here, at declaration, not at the app's startup.
        if kind == "httpx":
            _check_transport_options(self.service is None, self.options)
            self._transport()  # nothing started: the lifespan builds the one it uses
        else:  # aiohttp builds a connector only in a running loop: its options are checked
            from .aiohttp import check_options

            check_options(self.service, self.options)

    async def __call__(self, request: Request) -> Any:
        """The dependency: the app's client for this Service (and the incoming key, to forward)."""
        clients = getattr(request.app.state, "kube_balance_clients", None)
        if clients is None or self not in clients:
            raise RuntimeError(
                f"the balanced client for {self._what()} is not started: create the app with "
                "FastAPI(lifespan=clients.lifespan()) (or balanced_lifespan) so it starts with the app"
            )
        if self.forward is not None:
            key = (
                request.headers.get(self.forward) if isinstance(self.forward, str) else self.forward(request)
            )
            _incoming_key.set(key or None)
        return clients[self]

    def _what(self) -> str:
        return str(self.service) if self.service is not None else "every Service (cluster mode)"

    def _base_url(self) -> dict[str, str]:
        """``base_url``: the Service's (``http://name.ns``); none for a cluster client."""
        if self.service is None:
            return {}
        scheme = self.service.scheme or "http"
        return {"base_url": f"{scheme}://{self.service.name}.{self.service.namespace}"}

    def build(self) -> tuple[Any, list[LoadBalancer]]:
        """Create the client (inside the app's event loop) and the balancers to wait for."""
        if self.kind == "httpx":
            return self._build_httpx()
        return self._build_aiohttp()

    def _build_httpx(self) -> tuple[Any, list[LoadBalancer]]:
        import httpx

        transport = self._transport()
        hooks: dict[str, list[Any]] = {"request": [self._httpx_hook]} if self.forward is not None else {}
        options = {**self._base_url(), "event_hooks": hooks, **self.client_options}
        return httpx.AsyncClient(transport=transport, **options), transport.balancers

    def _transport(self) -> Any:
        from .httpx import BalancedTransport

        if self.service is None:
            return BalancedTransport.cluster(**self.options)
        return BalancedTransport(self.service, **self.options)

    async def _httpx_hook(self, request: Any) -> None:
        key = _incoming_key.get()
        if key and self.header not in request.headers:
            request.headers[self.header] = key

    def _build_aiohttp(self) -> tuple[Any, list[LoadBalancer]]:
        import aiohttp

        from .aiohttp import BalancedConnector, BalancedMiddleware

        if self.service is None:
            connector = BalancedConnector.cluster(**self.options)
        else:
            connector = BalancedConnector(self.service, **self.options)
        client_options = dict(self.client_options)  # a copy: the app may start again (tests)
        traces = list(client_options.pop("trace_configs", None) or [])
        if self.forward is not None:
            trace = aiohttp.TraceConfig()
            # cast: aiohttp's typing of its signals changed across the supported versions
            cast(Any, trace.on_request_start).append(self._aiohttp_hook)
            traces.append(trace)
        if _needs_middleware(self.options):
            # Status retries, retries of dropped requests and hedges are the middleware's: asked
            # for, they are on (innermost: the caller's middlewares wrap every attempt).
            client_options["middlewares"] = (
                *client_options.get("middlewares", ()),
                BalancedMiddleware(connector),
            )
        options = {**self._base_url(), "trace_configs": traces, **client_options}
        return aiohttp.ClientSession(connector=connector, **options), connector.balancers

    async def _aiohttp_hook(self, session: Any, ctx: Any, params: Any) -> None:
        key = _incoming_key.get()
        if key and self.header not in params.headers:
            params.headers[self.header] = key  # the request is built from this very mapping

    def __repr__(self) -> str:
        return f"<BalancedClient {self._what()} {self.kind}>"


class BalancedClients:
    """The balanced clients an app declares; :meth:`lifespan` starts and closes them with the app.

    ``startup_timeout`` bounds the startup wait for each Service's first endpoints (default 5 s);
    a Service with none by then is logged, and its requests go to the fallback until it has.
    """

    def __init__(self, *, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        if (
            isinstance(startup_timeout, bool)
            or not isinstance(startup_timeout, (int, float))
            or startup_timeout < 0
        ):
            raise ConfigurationError(
                f"startup_timeout must be a number of seconds >= 0, not {startup_timeout!r}"
            )
        self.startup_timeout = float(startup_timeout)
        self._declared: list[BalancedClient] = []

    def httpx(
        self,
        service: str | ServiceRef,
        *,
        forward_affinity: Forward | None = None,
        client_options: Mapping[str, Any] | None = None,
        **transport_options: Any,
    ) -> BalancedClient:
        """Declare an ``httpx.AsyncClient`` over a :class:`BalancedTransport`; returns its dependency.

        ``transport_options`` go to ``BalancedTransport`` (``algorithm=``, ``retry=``, ...);
        ``client_options`` to ``httpx.AsyncClient`` (``timeout=``, ...; ``base_url`` defaults to
        the Service, ``http://name.ns``).
        """
        return self._declare(service, "httpx", forward_affinity, transport_options, client_options)

    def aiohttp(
        self,
        service: str | ServiceRef,
        *,
        forward_affinity: Forward | None = None,
        client_options: Mapping[str, Any] | None = None,
        **connector_options: Any,
    ) -> BalancedClient:
        """Declare an ``aiohttp.ClientSession`` over a :class:`BalancedConnector`; returns its dependency."""
        return self._declare(service, "aiohttp", forward_affinity, connector_options, client_options)

    def httpx_cluster(
        self,
        *,
        forward_affinity: Forward | None = None,
        client_options: Mapping[str, Any] | None = None,
        **transport_options: Any,
    ) -> BalancedClient:
        """Declare an ``httpx.AsyncClient`` over ``BalancedTransport.cluster()``, for every Service
        (a URL whose host names a Service is balanced; others pass through); returns its dependency.

        ``transport_options`` go to ``BalancedTransport.cluster`` (``namespaces=``,
        ``idle_timeout=``, ``algorithm=``, ...); ``client_options`` to ``httpx.AsyncClient`` (no
        ``base_url`` by default: the URLs name the Services). Its Services start on their first
        request, so the app's startup waits for none; it is closed at shutdown.
        """
        return self._declare(None, "httpx", forward_affinity, transport_options, client_options)

    def aiohttp_cluster(
        self,
        *,
        forward_affinity: Forward | None = None,
        client_options: Mapping[str, Any] | None = None,
        **connector_options: Any,
    ) -> BalancedClient:
        """Declare an ``aiohttp.ClientSession`` over ``BalancedConnector.cluster()``; returns its dependency."""
        return self._declare(None, "aiohttp", forward_affinity, connector_options, client_options)

    def _declare(
        self,
        service: str | ServiceRef | None,
        kind: Literal["httpx", "aiohttp"],
        forward: Forward | None,
        options: Mapping[str, Any],
        client_options: Mapping[str, Any] | None,
    ) -> BalancedClient:
        client = BalancedClient(self, service, kind, forward, options, client_options or {})
        self._declared.append(client)
        return client

    def lifespan(self, app_lifespan: Lifespan | None = None) -> Lifespan:
        """A lifespan for ``FastAPI(lifespan=...)``: starts the clients, then runs ``app_lifespan``."""

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            async with contextlib.AsyncExitStack() as stack:
                started = await self._start(stack)
                clients = getattr(app.state, "kube_balance_clients", None)
                if clients is None:
                    clients = app.state.kube_balance_clients = {}
                clients.update(started)
                stack.callback(lambda: [clients.pop(c, None) for c in started])
                if app_lifespan is None:
                    yield None
                else:
                    async with app_lifespan(app) as state:
                        yield state

        return lifespan

    async def _start(self, stack: contextlib.AsyncExitStack) -> dict[BalancedClient, Any]:
        started: dict[BalancedClient, Any] = {}
        waits: list[Awaitable[None]] = []
        for declared in self._declared:
            client, balancers = declared.build()
            stack.push_async_callback(_closer(client))
            started[declared] = client
            waits.extend(self._wait_ready(b) for b in balancers)
        await asyncio.gather(*waits)  # concurrently: the startup waits at most startup_timeout
        return started

    async def _wait_ready(self, balancer: LoadBalancer) -> None:
        try:
            await balancer.wait_ready(self.startup_timeout)
        except NoEndpointsAvailable as exc:
            logger.warning("starting without endpoints (requests go to the fallback): %s", exc)

    def __repr__(self) -> str:
        return f"<BalancedClients {self._declared!r}>"


_CLIENT = {"httpx": "httpx.AsyncClient", "aiohttp": "aiohttp.ClientSession"}
_BUILT = {"httpx": "transport", "aiohttp": "connector"}  # what the declaration builds itself


def _parameters(function: Any) -> list[str]:
    return [
        name
        for name, p in inspect.signature(function).parameters.items()
        if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]


def _needs_middleware(options: Mapping[str, Any]) -> bool:
    """Whether an aiohttp declaration asks for what only ``BalancedMiddleware`` does (``hedge=``,
    ``retry=``) on an aiohttp that has client middlewares (3.12; before, the connector says once
    that it cannot hedge)."""
    from .aiohttp import _has_middlewares

    return (options.get("hedge") is not None or options.get("retry") is not None) and _has_middlewares()


def _takes_any(function: Any) -> bool:
    """Whether ``function`` has a ``**kwargs`` (then no name is unknown to it)."""
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(function).parameters.values()
    )


def _check_client_options(kind: Literal["httpx", "aiohttp"], options: Mapping[str, Any]) -> None:
    """Refuse, at declaration, a ``client_options`` name the client class does not take (it would
    be a ``TypeError`` at the app's startup) and the one the declaration builds itself."""
    built = _BUILT[kind]
    if built in options:
        raise ConfigurationError(
            f"client_options cannot set {built!r}: the balanced client builds its own; give its "
            f"options as keywords of the declaration (algorithm=..., retry=..., ...)"
        )
    if kind == "httpx":
        import httpx

        cls: Any = httpx.AsyncClient
    else:
        import aiohttp

        cls = aiohttp.ClientSession
    if _takes_any(cls.__init__):
        return
    taken = [name for name in _parameters(cls.__init__) if name != built]
    unknown = sorted(set(options) - set(taken))
    if unknown:
        raise ConfigurationError(
            f"client_options has no option {', '.join(map(repr, unknown))}: {_CLIENT[kind]} takes "
            f"{', '.join(taken)}"
        )


def _check_transport_options(cluster: bool, options: Mapping[str, Any]) -> None:
    """Refuse, by name, a keyword ``BalancedTransport`` (or ``.cluster()``) does not take (Python
    would say ``TypeError``)."""
    from .httpx import BalancedTransport

    taken = _parameters(BalancedTransport.__init__)[1:]  # after the Service
    if cluster:
        taken = [*_parameters(BalancedTransport.cluster), *taken]
    unknown = sorted(set(options) - set(taken))
    if unknown:
        raise ConfigurationError(
            f"BalancedTransport{'.cluster()' if cluster else ''} has no option "
            f"{', '.join(map(repr, unknown))}: it takes {', '.join(taken)}"
        )


def _closer(client: Any) -> Callable[[], Awaitable[Any]]:
    return client.aclose if hasattr(client, "aclose") else client.close  # type: ignore[no-any-return]


_default = BalancedClients()


def balanced_client(
    service: str | ServiceRef,
    *,
    kind: Literal["httpx", "aiohttp"] = "httpx",
    forward_affinity: Forward | None = None,
    client_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> BalancedClient:
    """Declare a client on the module-wide registry (started by :data:`balanced_lifespan`)."""
    if kind not in ("httpx", "aiohttp"):
        raise ConfigurationError(f"kind must be 'httpx' or 'aiohttp', not {kind!r}")
    return _default._declare(service, kind, forward_affinity, options, client_options)


def balanced_cluster_client(
    *,
    kind: Literal["httpx", "aiohttp"] = "httpx",
    forward_affinity: Forward | None = None,
    client_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> BalancedClient:
    """Declare a cluster-mode client (every Service) on the module-wide registry."""
    if kind not in ("httpx", "aiohttp"):
        raise ConfigurationError(f"kind must be 'httpx' or 'aiohttp', not {kind!r}")
    return _default._declare(None, kind, forward_affinity, options, client_options)


def balanced_lifespan(app: Any) -> contextlib.AbstractAsyncContextManager[Any]:
    """``FastAPI(lifespan=balanced_lifespan)``: starts the clients declared with :func:`balanced_client`."""
    return _default.lifespan()(app)
