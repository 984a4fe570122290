"""``LoadBalancer``: one Service's endpoint source, endpoint policy, algorithm and fallback.

The balancer is the :class:`~kube_balance.discovery.SourceSink` of its source: each snapshot
goes through the :class:`~kube_balance._policy.EndpointPolicy`, and ``algorithm.update()`` runs
only when the eligible endpoints changed. Listeners registered with
:meth:`LoadBalancer.add_listener` (the dispatch core's pool lifecycle) hear about every change of
the eligible set.

It is also the one place where request outcomes are observed (as grpc-go's ``PickResult.Done``):
every pick goes through :meth:`LoadBalancer.get` and every outcome through
:meth:`LoadBalancer.put`, which tells the algorithm, counts it, and tells the observers registered
with :meth:`LoadBalancer.add_observer` (outlier ejection, penalties, metrics). Both stay
synchronous and lock-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as _random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._backoff import Backoff
from ._endpoint import Endpoint, EndpointSet
from ._errors import ConfigurationError, DiscoveryError, NoEndpointsAvailable
from ._fallback import Fallback, FallbackTarget
from ._health import Ejection
from ._outcome import Outcome
from ._policy import EndpointPolicy
from ._redact import describe_error, format_exception
from ._service import ServiceRef
from ._subset import Subset, SubsetStatus
from ._validate import check_callable, check_instance, check_mapping, check_number, check_rng, invalid
from ._zones import ZoneAware, ZoneStatus
from .algorithms import Algorithm, Clock, available, create

if TYPE_CHECKING:  # importing kube_balance.discovery loads the Kubernetes client: only when used
    from .discovery._source import EndpointSource

__all__ = ["BalancerStatus", "FallbackTarget", "LoadBalancer"]

logger = logging.getLogger("kube_balance")

DEFAULT_ALGORITHM = "least_request"
STARTUP_TIMEOUT = 5.0
"""Seconds the first request waits for the source's first snapshot or error (then the fallback
serves): long enough for an API list round trip, short enough that a dead API is not a hang."""

Listener = Callable[[tuple[Endpoint, ...]], None]
Observer = Callable[[Endpoint, "float | None", Outcome, "int | None", "float | None"], None]
"""``observer(endpoint, elapsed, outcome, status, retry_after)``, called on every ``put()``."""


_OK, _SERVER_ERROR = Outcome.OK, Outcome.SERVER_ERROR
_FAILED = (False, *(o.failed for o in Outcome))  # indexed by Outcome (from 1)


class Counters:
    """The balancer's running counts, written on the request path by plain integer increments
    (no lock: one event loop) and read by ``status()`` and metrics at scrape time."""

    __slots__ = (
        "outcomes",
        "retries",
        "retry_budget_exhausted",
        "fallback_requests",
        "unclosed_responses",
        "source_restarts",
        "hedges",
        "hedge_budget_exhausted",
    )

    def __init__(self) -> None:
        self.outcomes: list[int] = [0] * (len(Outcome) + 1)  # indexed by Outcome (an IntEnum from 1)
        self.retries = 0  # attempts sent again on another endpoint
        self.retry_budget_exhausted = 0  # retries the budget refused
        self.fallback_requests = 0  # attempts sent to the fallback target
        self.unclosed_responses = 0  # leases released by a safety net
        self.source_restarts = 0  # times the endpoint source was restarted after it stopped
        self.hedges = 0  # second attempts sent because the first was slow (HedgePolicy)
        self.hedge_budget_exhausted = 0  # hedges the hedge budget refused


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
    inflight: int = 0
    """Requests in flight on the endpoints (removed ones still draining included)."""
    requests: int = 0
    """Requests completed (each attempt on an endpoint counts once; the fallback's are apart)."""
    outcomes: Mapping[str, int] = field(default_factory=dict)
    """Completed requests by :class:`Outcome` label (``ok``, ``connect_failed``, ``server_error``...)."""
    retries: int = 0
    retry_budget_exhausted: int = 0
    fallback_requests: int = 0
    overflowed: int = 0
    """Requests a bounded-load hash algorithm moved off their full first-choice endpoint."""
    source_restarts: int = 0
    zone: ZoneStatus | None = None
    """The zone filter's state (zone, how local endpoints are chosen, spill), if the policy has one."""
    ejected: Mapping[str, Ejection] = field(default_factory=dict)
    """Endpoints ejected by outlier detection, by key: why, since and until when (the balancer's clock)."""
    panic: bool = False
    """Fewer endpoints healthy than the panic threshold: traffic goes to all of them."""
    slow_start: Mapping[str, float] = field(default_factory=dict)
    """Endpoints still ramping up, by key, with their current weight factor (0..1)."""
    penalized: Mapping[str, float] = field(default_factory=dict)
    """Endpoints under a 429 penalty, by key, with when it ends (the balancer's clock)."""
    hedges: int = 0
    """Hedges sent: second attempts on another endpoint because the first was slow to answer."""
    hedge_budget_exhausted: int = 0
    """Hedges the hedge budget refused."""
    subset: SubsetStatus | None = None
    """The subset filter's state (size, the client's rank and count, where they came from), if
    the policy has one."""


class LoadBalancer:
    """Balances requests to one Kubernetes Service across its endpoints.

    ``service`` is ``"name.ns:port"`` or a :class:`ServiceRef`. ``algorithm`` is a name from
    :func:`kube_balance.algorithms.available` (default ``least_request``), created with ``rng``,
    ``clock`` and ``algorithm_options``, or an :class:`Algorithm` object. ``source`` defaults to a
    :class:`~kube_balance.discovery.KubernetesSource` watching the Service's EndpointSlices.
    ``fallback`` is ``"service"`` (default: the Service DNS name, as the seed's FallbackService),
    ``"none"`` (raise :class:`NoEndpointsAvailable`) or an explicit ``"host:port"`` (a DNS name,
    an IPv4 address or a bracketed IPv6 one; checked here). The Service port the DNS fallback
    needs is read once; no request waits for it longer than ``startup_timeout``.
    ``policy`` decides which endpoints get traffic: :meth:`EndpointPolicy.default` (readiness,
    outlier ejection under a panic threshold, the 429 penalty) unless given; its steps observe
    every ``put()`` and use ``clock`` and ``rng`` too.

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
        if isinstance(service, ServiceRef):
            self.service = service
        else:  # a bare name takes its source's namespace (a KubernetesSource given a kubeconfig)
            ref = getattr(source, "service", None)
            namespace = ref.namespace if isinstance(ref, ServiceRef) else None
            self.service = ServiceRef.parse(service, default_namespace=namespace)
        # Every option is checked before anything is built, so a bad one never half-starts a source.
        check_rng("LoadBalancer rng", rng)
        if clock is not None:
            check_callable("LoadBalancer clock", clock, "a callable returning monotonic seconds, or None")
        if algorithm_options is not None:
            check_mapping("LoadBalancer algorithm_options", algorithm_options, forbidden=("rng", "clock"))
        if source is not None and not callable(getattr(source, "run", None)):
            raise invalid(
                "LoadBalancer source",
                source,
                "expected an endpoint source (KubernetesSource, StaticSource, DnsSource or any object "
                "with async run(sink)), or None for the Service's EndpointSlices",
            )
        check_instance(
            "LoadBalancer policy", policy, (EndpointPolicy, type(None)), "expected an EndpointPolicy or None"
        )
        startup_timeout = check_number("LoadBalancer startup_timeout", startup_timeout, low=0, unit="seconds")
        if isinstance(algorithm, str):
            algorithm = create(algorithm, rng=rng, clock=clock, **dict(algorithm_options or {}))
        elif not isinstance(algorithm, Algorithm):
            raise invalid(
                "LoadBalancer algorithm",
                algorithm,
                f"expected a name ({', '.join(available())}) or an Algorithm",
            )
        elif algorithm_options:
            raise ConfigurationError("algorithm_options only apply to an algorithm given by name")
        self.algorithm: Algorithm = algorithm
        self.clock: Clock = clock if clock is not None else time.monotonic
        self.rng = rng if rng is not None else _random.Random()  # the policy's steps (jitter)
        self.source: EndpointSource = source if source is not None else _kubernetes_source(self.service)
        self.policy = policy if policy is not None else EndpointPolicy()
        self._fallback = Fallback(
            fallback, self.service, self.source, on_error=self.on_error, rng=rng, clock=clock
        )
        self.startup_timeout = startup_timeout
        self._snapshot = EndpointSet()
        self._eligible: tuple[Endpoint, ...] = ()
        self._last_error: DiscoveryError | None = None
        # Created once: an Event binds to a loop only when first awaited (Python >= 3.10), and
        # waiters must survive a restart of the watcher.
        self._first_event = asyncio.Event()  # the source delivered a snapshot or an error
        self._changed = asyncio.Event()  # the eligible set changed
        self._startup_done = False  # the first request's startup wait is over (for this run)
        self._closed = False  # aclose() ran: lazy paths must not start a watcher nobody closes
        self._task: asyncio.Task[None] | None = None
        # started, kept up to date at each change of the three fields it reads (_closed,
        # _startup_done, the task ending): a plain attribute read on every request's path.
        self.started = False
        self._started_at: float | None = None  # loop time of the last start(), for "not answered for N s"
        self._restart_backoff = Backoff(rng=rng)
        self._listeners: list[Listener] = []
        self._observers: tuple[Observer, ...] = ()  # called on every put()
        self._ok_observers: tuple[Observer, ...] = ()  # called on an OK put(): less the quiet ones
        self._quiet: list[Observer] = []  # observers with nothing to do for an OK outcome now
        self._factors: dict[str, float] = {}  # the policy's weight factors the algorithm has
        self.counters = Counters()
        self._outcome_counts = self.counters.outcomes  # the same list, one attribute read less
        self.policy.bind(self)  # ejection, 429 penalty, slow start, zones: observers of put()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the watcher coroutine in the running loop (idempotent; also after :meth:`aclose`)."""
        if self._task is not None and not self._task.done():
            return
        loop = asyncio.get_running_loop()
        self._closed = False
        self._startup_done = False
        self._first_event.clear()
        self._started_at = loop.time()
        self._task = task = loop.create_task(self._watch(), name=f"kube-balance watch {self.service}")
        task.add_done_callback(self._task_done)
        self._update_started()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._update_started()

    def _update_started(self) -> None:
        """Whether a request can go ahead without :meth:`ensure_started` (``started``): the
        startup wait of this run is over (first snapshot or error, or ``startup_timeout``
        passed) and the watcher runs, or the balancer was closed (it then serves its last
        snapshot)."""
        task = self._task
        self.started = self._closed or (self._startup_done and task is not None and not task.done())

    async def _watch(self) -> None:
        """Run the source; if it ever returns or raises (its contract says it does not), restart it
        after a backoff (0.8 s doubling to 30 s, as the watcher's own retries), so a broken source
        never turns into a restart per request."""
        while True:
            try:
                await self.source.run(self)
                error = DiscoveryError(f"endpoint source for {self.service} stopped")
                logger.warning("%s; restarting it", error)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Redacted text, no chained exception: a source's error may carry credentials.
                logger.error("endpoint source for %s failed:\n%s", self.service, format_exception(exc))
                error = DiscoveryError(f"endpoint source for {self.service} failed: {describe_error(exc)}")
            self.on_error(error)
            await self._restart_backoff.wait()
            self.counters.source_restarts += 1

    async def aclose(self) -> None:
        """Stop the watcher and wait for it (the last snapshot stays for late ``put()`` calls).

        After this, :meth:`get` keeps serving the last snapshot but never restarts the watcher;
        :meth:`start` (or ``async with``) does. A cancellation of the caller is not swallowed.
        """
        self._closed = True
        self.started = True  # closed: serves its last snapshot, never waits
        await self._fallback.aclose()
        await self.policy.aclose()
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task})  # returns when the task is done; raises if *we* are cancelled

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

    async def ensure_started(self) -> None:
        """Start if needed, then wait (once per run, at most ``startup_timeout``) for the first
        snapshot or error; later requests never wait again."""
        if self._closed:
            return
        if not self.running:
            self.start()
        if not self._startup_done:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._first_event.wait(), self.startup_timeout)
            self._startup_done = True
            self._update_started()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until at least one endpoint is eligible for traffic.

        Raises :class:`NoEndpointsAvailable` (naming the Service and the last discovery error)
        when ``timeout`` seconds pass first. That wait was the startup's: requests no longer wait
        ``startup_timeout`` again for a first answer (they go to the fallback at once), as after
        :meth:`ensure_started` (a FastAPI app's bounded startup wait, then its first request).
        """
        if not self.running and not self._closed:
            self.start()
        try:
            await asyncio.wait_for(self._until_eligible(), timeout)
        except TimeoutError:
            self._startup_done = True
            self._update_started()
            raise self.no_endpoints(f"no eligible endpoint after {timeout} s") from None

    async def _until_eligible(self) -> None:
        while not self._eligible:
            self._changed.clear()
            await self._changed.wait()

    # -- SourceSink -----------------------------------------------------------------------
    def on_endpoints(self, snapshot: EndpointSet) -> None:
        """Take a new snapshot from the source (synchronous; called by the source)."""
        self._snapshot = snapshot
        self._restart_backoff.reset()
        self.refresh()
        self._first_event.set()

    def on_error(self, error: DiscoveryError) -> None:
        """Record a discovery failure; the last good snapshot keeps serving.

        Not logged here (only at debug level): the source that failed logs it once, with what
        it knows (API server, resource, retry); a shared watch would otherwise log it once per
        balancer, and twice each.
        """
        self._last_error = error
        logger.debug("discovery for %s failed: %s", self.service, error)
        self._first_event.set()

    def refresh(self) -> None:
        """Re-run the policy on the last snapshot; update the algorithm if the result changed.

        If the algorithm refuses the update (say, a fixed Maglev table too small for the new
        set), the previous set keeps serving, the refusal is recorded as a discovery error, and
        the next snapshot tries again.
        """
        eligible = self.policy.select(self._snapshot)
        factors = self.policy.weight_factors()
        if eligible == self._eligible:
            if factors != self._factors:
                self._set_factors(factors)
            return
        try:
            self.algorithm.update(eligible)
        except Exception as exc:
            error = DiscoveryError(f"service {self.service}: the algorithm refused the update: {exc}")
            error.__cause__ = exc
            logger.warning("%s", error)
            self.on_error(error)
            return
        if factors or self._factors:  # new slots start at factor 1
            self._set_factors(factors)
        self._eligible = eligible
        for listener in tuple(self._listeners):
            listener(eligible)
        self._changed.set()

    def _set_factors(self, factors: dict[str, float]) -> None:
        """Hand slow start's weight factors to an algorithm that takes them (see SlowStart)."""
        self._factors = factors
        set_factors = getattr(self.algorithm, "set_weight_factors", None)
        if set_factors is not None:
            set_factors(factors)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(eligible)`` on every change of the eligible set; returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- balancing ------------------------------------------------------------------------
    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        """Pick an endpoint (starting the watcher on first use in a running loop); pair with put()."""
        if self._task is None and not self._closed and asyncio._get_running_loop() is not None:
            self.start()  # outside a running loop there is nothing to start yet: one cheap check
        return self.algorithm.get(key)

    def put(
        self,
        endpoint: Endpoint,
        elapsed: float | None = None,
        failed: bool = False,
        outcome: Outcome | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Release an endpoint returned by :meth:`get` (exactly once per get) with what happened.

        ``outcome`` says how the request ended (default: ``SERVER_ERROR`` if ``failed`` else
        ``OK``); ``failed`` given alongside is ignored in favour of ``outcome.failed``. ``status``
        and ``retry_after`` (seconds) are the response's, when there was one. The algorithm,
        the counters and every observer see it.
        """
        # On every request's path: a table lookup rather than Outcome.failed's set test, and the
        # counts list read once (benchmarks/bench_algorithms.py measures what this adds).
        if outcome is None:
            outcome = _SERVER_ERROR if failed else _OK
        self.algorithm.put(endpoint, elapsed, _FAILED[outcome])
        self._outcome_counts[outcome] += 1
        for observer in self._ok_observers if outcome is _OK else self._observers:
            observer(endpoint, elapsed, outcome, status, retry_after)

    def get_untried(self, tried: Collection[str]) -> Endpoint | None:
        """The eligible endpoint not in ``tried`` (keys) with the fewest requests in flight, picked
        as by :meth:`get` (pair it with :meth:`put`); None if there is none or the algorithm cannot
        take a direct pick. A retry's last resort when the algorithm keeps picking tried endpoints
        (a loaded live pod loses every two-choice comparison against idle dead ones)."""
        take = getattr(self.algorithm, "take", None)
        untried = [ep for ep in self._eligible if ep.key not in tried]
        if take is None or not untried:
            return None
        start = self.rng.randrange(len(untried))  # ties go to a random one, not the first listed
        best = min(untried[start:] + untried[:start], key=self.algorithm.inflight)
        endpoint: Endpoint | None = take(best)
        return endpoint

    def unget(self, endpoint: Endpoint) -> None:
        """Give back a pick that was never used (no request was sent): nothing is observed."""
        self.algorithm.put(endpoint, None, False)

    def add_observer(self, observer: Observer, *, quiet: bool = False) -> Callable[[], None]:
        """Call ``observer(endpoint, elapsed, outcome, status, retry_after)`` on every ``put()``;
        returns a remover. Observers run on the request path: they must be quick and not raise.

        ``quiet=True``: the observer has nothing to do for an ``OK`` outcome for now, and is not
        called for one until it says otherwise with :meth:`set_quiet` (a health step whose state
        is clean: nothing ejected, no failure counted; most requests then call no step at all).
        """
        self._observers = (*self._observers, observer)
        self.set_quiet(observer, quiet)

        def remove() -> None:
            self._observers = tuple(o for o in self._observers if o is not observer)
            self.set_quiet(observer, False)

        return remove

    def set_quiet(self, observer: Observer, quiet: bool) -> None:
        """Whether ``observer`` (one added, or equal to it) is left out of ``OK`` outcomes from now
        on (see :meth:`add_observer`); every other outcome reaches it regardless."""
        others = [o for o in self._quiet if o != observer]  # a list: an observer may be unhashable
        self._quiet = [*others, observer] if quiet else others
        self._ok_observers = tuple(o for o in self._observers if o not in self._quiet)

    @property
    def unclosed_responses(self) -> int:
        """Responses released by a safety net because nobody closed them."""
        return self.counters.unclosed_responses

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
        hint = self._empty_hint() if not self._snapshot.endpoints else None
        if hint:
            msg += f"; {hint}"
        if self._last_error is not None and str(self._last_error) not in why:
            msg += f"; last discovery error: {self._last_error}"
        return NoEndpointsAvailable(msg)

    def _empty_hint(self) -> str | None:
        """Why the set is empty, when the source can tell (no such Service, an API that is silent)."""
        waited = None
        if self._started_at is not None and not self._first_event.is_set() and self.running:
            with contextlib.suppress(RuntimeError):  # no running loop: no elapsed time to report
                waited = asyncio.get_running_loop().time() - self._started_at
        explain = getattr(self.source, "explain_empty", None)
        if callable(explain):
            hint = explain(waited)
            if hint is None or isinstance(hint, str):
                return hint
        if waited is not None:
            return f"the endpoint source has sent nothing in {waited:.1f} s"
        return None

    async def fallback_target(self, timeout: float | None = None) -> FallbackTarget:
        """Where to send a request when no endpoint is usable; raises NoEndpointsAvailable if nowhere.

        The Service port for the DNS fallback is read once (shared by concurrent calls, retried
        with backoff after a failure); this call waits for it at most ``startup_timeout``, or
        ``timeout`` when shorter.
        """
        wait = self.startup_timeout if timeout is None else min(timeout, self.startup_timeout)
        return await self._fallback.target(self.no_endpoints, wait)

    def fallback_reason(self) -> str:
        """Why requests go to the fallback now: the Service, its endpoint counts, the last discovery error."""
        return str(self.no_endpoints("no usable endpoint"))

    # -- introspection --------------------------------------------------------------------
    def status(self) -> BalancerStatus:
        """A snapshot of endpoints by condition, eligibility, resourceVersion, the last error and
        every counter (requests by outcome, retries, fallback use, unclosed responses...)."""
        c = self.counters
        health = self.policy.report()
        total_inflight = getattr(self.algorithm, "total_inflight", None)
        return BalancerStatus(
            service=str(self.service),
            algorithm=getattr(self.algorithm, "name", type(self.algorithm).__name__),
            running=self.running,
            counts=self._snapshot.counts(),
            eligible=len(self._eligible),
            resource_version=self._snapshot.resource_version,
            last_error=self._last_error,
            fallback=self._fallback.describe(),
            unclosed_responses=c.unclosed_responses,
            inflight=int(total_inflight()) if callable(total_inflight) else 0,
            requests=sum(c.outcomes),
            outcomes={o.label: c.outcomes[o] for o in Outcome if c.outcomes[o]},
            retries=c.retries,
            retry_budget_exhausted=c.retry_budget_exhausted,
            fallback_requests=c.fallback_requests,
            overflowed=int(getattr(self.algorithm, "overflowed", 0)),
            source_restarts=c.source_restarts,
            zone=self.status_zone(),
            ejected=health.ejected,
            panic=health.panic,
            slow_start=health.slow_start,
            penalized=health.penalized,
            hedges=c.hedges,
            hedge_budget_exhausted=c.hedge_budget_exhausted,
            subset=self.status_subset(),
        )

    def status_zone(self) -> ZoneStatus | None:
        """The zone filter's state, if the policy has one (also in ``status().zone``)."""
        return next((f.status() for f in self.policy.filters if isinstance(f, ZoneAware)), None)

    def status_subset(self) -> SubsetStatus | None:
        """The subset filter's state, if the policy has one (also in ``status().subset``)."""
        return next((f.status() for f in self.policy.filters if isinstance(f, Subset)), None)

    def __repr__(self) -> str:
        s = self.status()
        err = f" last_error={s.last_error!s:.80}" if s.last_error is not None else ""
        return (
            f"<LoadBalancer {s.service} algorithm={s.algorithm} {'running' if s.running else 'stopped'} "
            f"{_fmt_counts(s.counts)} eligible={s.eligible} rv={s.resource_version}{err}>"
        )


def _fmt_counts(counts: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in counts.items())


def _kubernetes_source(service: ServiceRef) -> EndpointSource:
    try:
        from .discovery import KubernetesSource
    except ImportError as exc:  # pragma: no cover - the core dependency is missing
        raise ConfigurationError(
            f"the default Kubernetes source is unavailable ({exc}); pass source="
        ) from exc
    source: EndpointSource = KubernetesSource(service)
    return source
