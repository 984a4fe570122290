"""``KubernetesSource``: a Service's endpoints from its EndpointSlices, pushed as snapshots."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from ..._backoff import Backoff, Sleep
from ..._endpoint import EndpointSet
from ..._errors import ConfigurationError, DiscoveryError
from ..._service import ServiceRef, client_namespace
from ..._validate import check_callable, check_int, check_number, check_rng, invalid
from .._source import SourceSink
from ._config import ClientConfig
from ._incremental import SliceMerger
from ._merge import SERVICE_NAME_LABEL, AddressFamily, has_port, normalize_family, port_choices
from ._service_port import ambiguous_port, resolve_service_port, slice_port
from ._shared import subscribe
from ._watcher import PAGE_SIZE, WATCH_TIMEOUT, SliceWatch, WatchStats

logger = logging.getLogger("kube_balance.discovery")


class _Subscription:
    """One source's view of a (possibly shared) watch: its own port, family and merged set."""

    def __init__(self, merger: SliceMerger, sink: SourceSink, service: ServiceRef) -> None:
        self.merger, self.sink, self.service = merger, sink, service
        self.pushed = False
        self.port_choices: tuple[str, ...] = ()  # a port-less reference's choices, once reported

    def on_change(self, watch: SliceWatch, changed: set[str] | None) -> None:
        if changed is None:
            self.merger.reset(watch.slices.values())
        else:
            for name in changed:
                obj = watch.slices.get(name)
                if obj is None:
                    self.merger.remove(name)
                else:
                    self.merger.upsert(obj)
        # Push only a set that changed: a relist or an event that changes nothing pushes nothing
        # (no flap); the first snapshot is pushed even when empty, so the balancer knows.
        if self.merger.take_changed() or not self.pushed:
            self.pushed = True
            self.sink.on_endpoints(EndpointSet(self.merger.endpoints(), watch.resource_version))
        if self.merger.port is None:
            self._check_port_choices()

    def _check_port_choices(self) -> None:
        """A reference without a port and slices with several: report it (once per set of choices)."""
        choices = self.merger.port_choices()
        if choices and choices != self.port_choices:
            error = ambiguous_port(
                self.service,
                choices,
                f"the EndpointSlices of {self.service.namespace}/{self.service.name} carry several ports",
            )
            self.sink.on_error(error)  # the sink logs it
        self.port_choices = choices

    def on_error(self, error: DiscoveryError) -> None:
        self.sink.on_error(error)


class KubernetesSource:
    """Watches one Service's EndpointSlices (``discovery.k8s.io/v1``) and pushes full snapshots.

    Credentials come from ``api_client``, else ``kubeconfig``/``context``, else in-cluster (see
    :class:`ClientConfig`). Sources for the same Service on the same API server in one event loop
    share one watch. ``address_family`` is ``"auto"`` (IPv4 if the Service has any), 4, 6 or 0
    (both). ``watch_timeout`` is the range ``timeoutSeconds`` is drawn from (300-600 s, as
    client-go); ``request_timeout`` overrides the per-request deadline (default: list 60 s, watch
    ``timeoutSeconds`` + 30 s). ``clock``, ``rng`` and ``sleep`` drive the backoff in tests.
    """

    def __init__(
        self,
        service: ServiceRef | str,
        *,
        api_client: Any = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool | None = None,
        address_family: AddressFamily = "auto",
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        watch_timeout: tuple[int, int] = WATCH_TIMEOUT,
        request_timeout: float | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if isinstance(service, ServiceRef):
            self.service = service
        else:  # a bare name: the namespace of the configuration this source was given, if any
            given = kubeconfig is not None or context is not None
            namespace = client_namespace(kubeconfig, context) if given else None
            self.service = ServiceRef.parse(service, default_namespace=namespace)
        self.address_family = address_family
        normalize_family(address_family)  # fail fast on a bad value
        check_callable("KubernetesSource clock", clock, "a callable returning monotonic seconds")
        check_rng("KubernetesSource rng", rng)
        check_callable("KubernetesSource sleep", sleep, "an async callable taking seconds (asyncio.sleep)")
        watch_timeout = _check_watch_timeout(watch_timeout)
        if request_timeout is not None:
            check_number(
                "KubernetesSource request_timeout",
                request_timeout,
                low=0,
                low_inclusive=False,
                unit="seconds",
            )
        check_int("KubernetesSource page_size", page_size, low=1)
        self._config_args: dict[str, Any] = {
            "api_client": api_client,
            "kubeconfig": kubeconfig,
            "context": context,
            "in_cluster": in_cluster,
        }
        ClientConfig(**self._config_args)  # validate the combination now, not in the task
        self._clock, self._rng, self._sleep = clock, rng or random.Random(), sleep
        self._watch_timeout, self._request_timeout, self._page_size = (
            watch_timeout,
            request_timeout,
            page_size,
        )
        self._watch: SliceWatch | None = None
        self._slice_port: str | int | None = None  # what the merge looks for in the slices' ports
        self._error: DiscoveryError | None = None
        self._host: str | None = None  # the API server URL, once the config has loaded

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the watch has reached (``None`` before the first list)."""
        return self._watch.resource_version if self._watch is not None else None

    @property
    def last_error(self) -> DiscoveryError | None:
        """The current discovery error, ``None`` while healthy."""
        return self._watch.last_error if self._watch is not None else self._error

    @property
    def watch(self) -> SliceWatch | None:
        """The (possibly shared) watch this source reads, once it runs: slices, resourceVersion."""
        return self._watch

    @property
    def watch_stats(self) -> WatchStats | None:
        """The watch's counters (lists, watches, events, errors by kind), read by metrics."""
        return self._watch.stats if self._watch is not None else None

    def _backoff(self) -> Backoff:
        return Backoff(rng=self._rng, clock=self._clock, sleep=self._sleep)

    async def _connect(self, backoff: Backoff, sink: SourceSink) -> ClientConfig:
        """Build the client config, retrying (with backoff) until it loads."""
        while True:
            try:
                config = ClientConfig(**self._config_args)
                await config.client()
                self._error = None
                return config
            except (DiscoveryError, ConfigurationError) as exc:  # e.g. the kubeconfig was removed
                error = exc if isinstance(exc, DiscoveryError) else DiscoveryError(str(exc))
                self._error = error
                logger.warning("%s", error)
                sink.on_error(error)
                await backoff.wait()

    async def run(self, sink: SourceSink) -> None:
        """Push snapshots to ``sink`` until cancelled; errors go to ``sink.on_error``."""
        backoff = self._backoff()
        config = await self._connect(backoff, sink)
        self._host = config.host
        ref = self.service
        try:
            port = await slice_port(await config.client(), ref, self._request_timeout)
        except BaseException:  # cancelled before the watch took the client over
            await config.aclose()
            raise
        self._slice_port = port
        merger = SliceMerger(port, address_family=self.address_family, service=ref.name)

        def factory() -> SliceWatch:
            return SliceWatch(
                config,
                ref.namespace,
                ref.name,
                rng=self._rng,
                clock=self._clock,
                backoff=backoff,
                watch_timeout=self._watch_timeout,
                request_timeout=self._request_timeout,
                page_size=self._page_size,
            )

        # Only identical credentials and watch options share a watch; the clock, rng and sleep
        # of the first subscriber drive it.
        key = (
            config.host,
            ref.namespace,
            ref.name,
            config.identity,
            self._watch_timeout,
            self._request_timeout,
            self._page_size,
        )
        async with subscribe(key, _Subscription(merger, sink, ref), factory) as watch:
            self._watch = watch  # kept after we leave, so resource_version and last_error stay readable
            if watch.config is not config:  # joined a running watch: ours is not needed
                await config.aclose()
            await asyncio.Event().wait()  # the shared watch pushes; we only keep our seat

    def explain_empty(self, waited: float | None) -> str | None:
        """Why there is no endpoint at all, for :class:`NoEndpointsAvailable`: the list found no
        slice (a Service that does not exist, or a typo), or the API has not answered for
        ``waited`` seconds (None: the source did answer, or reported an error of its own)."""
        ref, watch = self.service, self._watch
        if watch is not None and watch.synced:
            if watch.slices:
                return self._explain_port(watch)  # else the counts say which conditions endpoints have
            what = (
                f"no Endpoints object named {ref.name}"
                if watch.legacy
                else f"no EndpointSlice labelled {SERVICE_NAME_LABEL}={ref.name}"
            )
            return f"{what} in namespace {ref.namespace} at {watch.config.host}: does the Service exist?"
        if waited is not None:
            return (
                f"the API at {self._host or 'the configured API server'} has not answered for {waited:.1f} s "
                f"(listing EndpointSlices {SERVICE_NAME_LABEL}={ref.name} in namespace {ref.namespace})"
            )
        return None

    def _explain_port(self, watch: SliceWatch) -> str | None:
        """The slices exist but none carries the reference's port (a typo in ``web.shop:grpc``)."""
        want, slices = self._slice_port, watch.slices.values()
        if want is None or any(has_port(s, want) for s in slices):
            return None
        ports = sorted({c for s in slices for c in port_choices(s.get("ports"))})
        ref = self.service
        example = next((p.partition("=")[0] for p in ports if p.partition("=")[0]), None)
        hint = f", e.g. '{ref.name}.{ref.namespace}:{example}'" if example else ""
        return (
            f"the EndpointSlices of {ref.namespace}/{ref.name} have no TCP port {want!r} "
            f"(their ports, name=number: {', '.join(ports) or 'none'}); name one of them in the reference{hint}"
        )

    async def service_port(self) -> int:
        """The Service's port for this reference (name or number), read from the Service object.

        Used by the DNS fallback. A 403 raises :class:`DiscoveryAuthError` naming the missing
        RBAC rule (``services``, ``get``); other failures raise :class:`DiscoveryError`.
        """
        config = ClientConfig(**self._config_args)
        try:
            client = await config.client()
            return await resolve_service_port(client, self.service, self._request_timeout)
        finally:
            await config.aclose()

    async def node_zone(self, node_name: str) -> str | None:
        """The zone label of Node ``node_name``, read with this source's credentials (for
        zone-aware routing). A 403 raises :class:`DiscoveryAuthError` naming the missing rule."""
        from ._node import node_zone

        config = ClientConfig(**self._config_args)
        try:
            return await node_zone(await config.client(), node_name, self._request_timeout)
        finally:
            await config.aclose()

    def __repr__(self) -> str:
        return f"KubernetesSource({str(self.service)!r}, resource_version={self.resource_version!r})"


def _check_watch_timeout(value: Any) -> tuple[int, int]:
    """``(low, high)`` whole seconds, ``1 <= low <= high``: the range ``timeoutSeconds`` is drawn from."""
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
        or not 1 <= value[0] <= value[1]
    ):
        raise invalid(
            "KubernetesSource watch_timeout",
            value,
            f"expected a (low, high) tuple of whole seconds with 1 <= low <= high, as the default {WATCH_TIMEOUT}",
        )
    return value
