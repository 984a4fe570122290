"""``LoadBalancer``: one Service's endpoint source, endpoint policy, algorithm and fallback.

The balancer is the :class:`~kube_balance.discovery.SourceSink` of its source: each snapshot
goes through the :class:`~kube_balance._policy.EndpointPolicy`, and ``algorithm.update()`` runs
only when the eligible endpoints changed. ``get()``/``put()`` pass straight through to the
algorithm (synchronous, no lock). Listeners registered with :meth:`LoadBalancer.add_listener`
(the dispatch core's pool lifecycle) hear about every change of the eligible set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from ._endpoint import Endpoint, EndpointSet
from ._errors import ConfigurationError, DiscoveryError, NoEndpointsAvailable
from ._policy import EndpointPolicy
from ._service import ServiceRef
from .algorithms import Algorithm, Clock, create

if TYPE_CHECKING:  # importing kube_balance.discovery loads the Kubernetes client: only when used
    from .discovery._source import EndpointSource

__all__ = ["BalancerStatus", "FallbackTarget", "LoadBalancer"]

logger = logging.getLogger("kube_balance")

DEFAULT_ALGORITHM = "least_request"
STARTUP_TIMEOUT = 5.0
"""Seconds the first request waits for the source's first snapshot or error (then the fallback
serves): long enough for an API list round trip, short enough that a dead API is not a hang."""

Listener = Callable[[tuple[Endpoint, ...]], None]


class FallbackTarget(NamedTuple):
    """Where a request goes when no endpoint is usable: the Service's DNS name and port."""

    host: str
    port: int


@dataclass(frozen=True)
class BalancerStatus:
    """A point-in-time snapshot of a balancer, for logs, health pages and ``repr``."""

    service: str
    algorithm: str
    running: bool
    counts: Mapping[str, int]
    eligible: int
    resource_version: str | None
    last_error: DiscoveryError | None
    fallback: str
    unclosed_responses: int


class LoadBalancer:
    """Balances requests to one Kubernetes Service across its endpoints.

    ``service`` is ``"name.ns:port"`` or a :class:`ServiceRef`. ``algorithm`` is a name from
    :func:`kube_balance.algorithms.available` (default ``least_request``), created with ``rng``,
    ``clock`` and ``algorithm_options``, or an :class:`Algorithm` object. ``source`` defaults to a
    :class:`~kube_balance.discovery.KubernetesSource` watching the Service's EndpointSlices.
    ``fallback`` is ``"service"`` (default: the Service DNS name, as the seed's FallbackService),
    ``"none"`` (raise :class:`NoEndpointsAvailable`) or an explicit ``"host:port"``.

    Use it as an async context manager, or let the first :meth:`get` inside a running loop
    start it; :meth:`aclose` stops the watcher.
    """

    def __init__(
        self,
        service: str | ServiceRef,
        *,
        algorithm: str | Algorithm = DEFAULT_ALGORITHM,
        source: EndpointSource | None = None,
        policy: EndpointPolicy | None = None,
        fallback: str | None = "service",
        algorithm_options: Mapping[str, Any] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        rng: _random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.service = service if isinstance(service, ServiceRef) else ServiceRef.parse(service)
        if isinstance(algorithm, str):
            algorithm = create(algorithm, rng=rng, clock=clock, **dict(algorithm_options or {}))
        elif not isinstance(algorithm, Algorithm):
            raise ConfigurationError(f"algorithm must be a name or an Algorithm, not {algorithm!r}")
        elif algorithm_options:
            raise ConfigurationError("algorithm_options only apply to an algorithm given by name")
        self.algorithm: Algorithm = algorithm
        self.source: EndpointSource = source if source is not None else _kubernetes_source(self.service)
        self.policy = policy if policy is not None else EndpointPolicy()
        self._fallback = _parse_fallback(fallback)
        if startup_timeout < 0:
            raise ConfigurationError(f"startup_timeout must be >= 0, not {startup_timeout!r}")
        self.startup_timeout = startup_timeout
        self._snapshot = EndpointSet()
        self._eligible: tuple[Endpoint, ...] = ()
        self._last_error: DiscoveryError | None = None
        self._first_event: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self._service_port: int | None = self.service.port if isinstance(self.service.port, int) else None
        self._port_lock: asyncio.Lock | None = None
        self.unclosed_responses = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher coroutine in the running loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        loop = asyncio.get_running_loop()
        self._first_event = asyncio.Event()
        self._changed = asyncio.Event()
        self._task = loop.create_task(self._watch(), name=f"kube-balance watch {self.service}")

    async def _watch(self) -> None:
        try:
            await self.source.run(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the contract says run() never raises; keep serving if it does
            logger.exception("endpoint source for %s stopped", self.service)
            error = DiscoveryError(f"endpoint source for {self.service} stopped: {exc!r}")
            error.__cause__ = exc
            self.on_error(error)

    async def aclose(self) -> None:
        """Stop the watcher and wait for it (the last snapshot stays for late ``put()`` calls)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> LoadBalancer:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        """Whether the watcher coroutine is running."""
        return self._task is not None and not self._task.done()

    @property
    def started(self) -> bool:
        """Running, and the source has delivered its first snapshot or error."""
        first = self._first_event
        return first is not None and first.is_set() and self.running

    async def ensure_started(self) -> None:
        """Start if needed, then wait (at most ``startup_timeout``) for the first snapshot or error."""
        if not self.running:
            self.start()
        first = self._first_event
        if first is not None and not first.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(first.wait(), self.startup_timeout)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until at least one endpoint is eligible for traffic.

        Raises :class:`NoEndpointsAvailable` (naming the Service and the last discovery error)
        when ``timeout`` seconds pass first.
        """
        if not self.running:
            self.start()
        try:
            await asyncio.wait_for(self._until_eligible(), timeout)
        except asyncio.TimeoutError:
            raise self.no_endpoints(f"no eligible endpoint after {timeout} s") from None

    async def _until_eligible(self) -> None:
        while not self._eligible:
            assert self._changed is not None
            self._changed.clear()
            await self._changed.wait()

    # -- SourceSink -----------------------------------------------------------------------
    def on_endpoints(self, snapshot: EndpointSet) -> None:
        """Take a new snapshot from the source (synchronous; called by the source)."""
        self._snapshot = snapshot
        self.refresh()
        if self._first_event is not None:
            self._first_event.set()

    def on_error(self, error: DiscoveryError) -> None:
        """Record a discovery failure; the last good snapshot keeps serving."""
        self._last_error = error
        logger.warning("discovery for %s failed: %s", self.service, error)
        if self._first_event is not None:
            self._first_event.set()

    def refresh(self) -> None:
        """Re-run the policy on the last snapshot; update the algorithm if the result changed."""
        eligible = self.policy.select(self._snapshot)
        if eligible == self._eligible:
            return
        self._eligible = eligible
        self.algorithm.update(eligible)
        for listener in tuple(self._listeners):
            listener(eligible)
        if self._changed is not None:
            self._changed.set()

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(eligible)`` on every change of the eligible set; returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- balancing ------------------------------------------------------------------------
    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        """Pick an endpoint (starting the watcher on first use in a running loop); pair with put()."""
        if self._task is None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to start yet
                self.start()
        return self.algorithm.get(key)

    def put(self, endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        """Release an endpoint returned by :meth:`get` (exactly once per get)."""
        self.algorithm.put(endpoint, elapsed, failed)

    @property
    def eligible(self) -> tuple[Endpoint, ...]:
        """The endpoints the policy currently lets receive traffic."""
        return self._eligible

    @property
    def snapshot(self) -> EndpointSet:
        """The last snapshot the source delivered."""
        return self._snapshot

    @property
    def last_error(self) -> DiscoveryError | None:
        """The last discovery error, if any (kept after a later success, for diagnosis)."""
        return self._last_error

    def no_endpoints(self, why: str = "no usable endpoint") -> NoEndpointsAvailable:
        """A :class:`NoEndpointsAvailable` naming the Service, the counts and the last error."""
        counts = self._snapshot.counts()
        msg = f"service {self.service}: {why} ({_fmt_counts(counts)})"
        if self._last_error is not None:
            msg += f"; last discovery error: {self._last_error}"
        return NoEndpointsAvailable(msg)

    async def fallback_target(self) -> FallbackTarget:
        """Where to send a request when no endpoint is usable; raises NoEndpointsAvailable if nowhere.

        For ``fallback="service"`` a named port is resolved once from the Service object through
        the source's ``service_port()`` (KubernetesSource has it).
        """
        mode = self._fallback
        if isinstance(mode, FallbackTarget):
            return mode
        if mode is None:
            raise self.no_endpoints("no usable endpoint and fallback='none'")
        if self._service_port is None:
            self._port_lock = self._port_lock or asyncio.Lock()
            async with self._port_lock:
                if self._service_port is None:
                    self._service_port = await self._resolve_port()
        return FallbackTarget(self.service.host, self._service_port)

    async def _resolve_port(self) -> int:
        resolve = getattr(self.source, "service_port", None)
        if resolve is None:
            raise self.no_endpoints(
                f"no usable endpoint, and the fallback cannot resolve the named port {self.service.port!r}: "
                f"{type(self.source).__name__} has no service_port(); use a numeric port or fallback='host:port'"
            )
        try:
            return int(await resolve())
        except Exception as exc:
            # A DiscoveryError from the source already names the missing RBAC rule.
            hint = (
                ""
                if isinstance(exc, DiscoveryError)
                else (f"; reading it needs RBAC 'get' on services in namespace {self.service.namespace!r}")
            )
            raise self.no_endpoints(
                f"no usable endpoint, and the fallback could not resolve the named port "
                f"{self.service.port!r} from the Service object ({exc}){hint}"
            ) from exc

    # -- introspection --------------------------------------------------------------------
    def status(self) -> BalancerStatus:
        """A snapshot of endpoints by condition, eligibility, resourceVersion and the last error."""
        mode = self._fallback
        fallback = (
            "none"
            if mode is None
            else f"{mode.host}:{mode.port}"
            if isinstance(mode, FallbackTarget)
            else "service"
        )
        return BalancerStatus(
            service=str(self.service),
            algorithm=getattr(self.algorithm, "name", type(self.algorithm).__name__),
            running=self.running,
            counts=self._snapshot.counts(),
            eligible=len(self._eligible),
            resource_version=self._snapshot.resource_version,
            last_error=self._last_error,
            fallback=fallback,
            unclosed_responses=self.unclosed_responses,
        )

    def __repr__(self) -> str:
        s = self.status()
        err = f" last_error={s.last_error!s:.80}" if s.last_error is not None else ""
        return (
            f"<LoadBalancer {s.service} algorithm={s.algorithm} {'running' if s.running else 'stopped'} "
            f"{_fmt_counts(s.counts)} eligible={s.eligible} rv={s.resource_version}{err}>"
        )


def _fmt_counts(counts: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items())


def _parse_fallback(fallback: str | None) -> FallbackTarget | str | None:
    if fallback is None or fallback == "none":
        return None
    if fallback == "service":
        return "service"
    if isinstance(fallback, str):
        host, sep, port = fallback.rpartition(":")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return FallbackTarget(host.strip("[]"), int(port))
    raise ConfigurationError(f"fallback must be 'service', 'none' or 'host:port', not {fallback!r}")


def _kubernetes_source(service: ServiceRef) -> EndpointSource:
    try:
        from .discovery import KubernetesSource
    except ImportError as exc:  # pragma: no cover - the core dependency is missing
        raise ConfigurationError(
            f"the default Kubernetes source is unavailable ({exc}); pass source="
        ) from exc
    source: EndpointSource = KubernetesSource(service)
    return source
