"""Endpoints from DNS: periodic A/AAAA resolution of a headless Service's name.

For clients outside the cluster API or without RBAC to read EndpointSlices. A headless Service
(``clusterIP: None``) resolves to one address per ready pod; a normal Service resolves to its one
ClusterIP, which still works but balances per connection again. DNS knows nothing of pod
conditions, so every address is ready.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable

from .._endpoint import Endpoint, EndpointSet
from .._errors import ConfigurationError, DiscoveryUnavailable
from .._service import ServiceRef
from .._validate import check_callable, check_number, invalid
from ._source import SourceSink
from .kubernetes._merge import AddressFamily, effective_family, normalize_family

logger = logging.getLogger("kube_balance.discovery")

Resolver = Callable[[str, int], Awaitable[Iterable[str]]]
INTERVAL = 5.0  # seconds; CoreDNS's kubernetes plugin answers with a 5 s TTL by default


async def getaddrinfo_resolver(host: str, port: int) -> list[str]:
    """Resolve with the event loop's ``getaddrinfo`` (the system resolver, in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class DnsSource:
    """Resolves ``host`` every ``interval`` seconds and pushes a snapshot when the answer changes.

    ``service`` is a :class:`ServiceRef` (its cluster DNS name is resolved) or a host name.
    ``port`` is required unless the reference carries a port number (DNS A/AAAA records cannot
    resolve a port name). A failed lookup is reported to ``sink.on_error`` and the last answer
    keeps serving. ``resolver`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        service: ServiceRef | str,
        port: int | None = None,
        *,
        interval: float = INTERVAL,
        address_family: AddressFamily = "auto",
        resolver: Resolver | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if not isinstance(service, (ServiceRef, str)) or not service:
            raise invalid("DnsSource service", service, "expected a ServiceRef or a host name")
        if isinstance(service, ServiceRef):
            self.host = service.host
            if port is None and isinstance(service.port, int):
                port = service.port
        else:
            self.host = service
        if port is None:
            raise ConfigurationError(
                f"DnsSource for {service!s} needs a port number (DNS cannot resolve a port name)"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError(f"DnsSource port {port!r} is not in 1..65535")
        interval = check_number("DnsSource interval", interval, low=0, low_inclusive=False, unit="seconds")
        if resolver is not None:
            check_callable(
                "DnsSource resolver", resolver, "an async callable (host, port) -> addresses, or None"
            )
        check_callable("DnsSource sleep", sleep, "an async callable taking seconds (asyncio.sleep)")
        self.port, self.interval = port, interval
        self.family = normalize_family(address_family)
        self._resolve = resolver or getaddrinfo_resolver
        self._sleep = sleep
        self.last_error: DiscoveryUnavailable | None = None

    def _snapshot(self, addresses: Iterable[str]) -> EndpointSet:
        eps = []
        for address in dict.fromkeys(addresses):
            try:
                eps.append(Endpoint(address, self.port))
            except ConfigurationError:  # e.g. a scoped link-local address: skip it, keep the rest
                logger.warning("DNS answer for %s: skipping address %r", self.host, address)
        family = effective_family((ep.family for ep in eps), self.family)  # the Kubernetes source's rule
        chosen = [ep for ep in eps if not family or ep.family == family]
        return EndpointSet(tuple(sorted(chosen, key=lambda ep: ep.key)))

    async def resolve_once(self) -> EndpointSet:
        """One lookup; raises :class:`DiscoveryUnavailable` when it fails or answers nothing."""
        try:
            addresses = list(await self._resolve(self.host, self.port))
            snapshot = self._snapshot(addresses)
        except Exception as exc:  # socket.gaierror, or anything an injected resolver raises
            raise DiscoveryUnavailable(f"DNS lookup of {self.host} failed: {exc}") from exc
        if not snapshot.endpoints:
            raise DiscoveryUnavailable(f"DNS lookup of {self.host} returned no usable address")
        return snapshot

    async def run(self, sink: SourceSink) -> None:
        """Resolve, push on change, sleep ``interval``; until cancelled. Never raises otherwise."""
        last: EndpointSet | None = None
        while True:
            try:
                snapshot = await self.resolve_once()
            except DiscoveryUnavailable as exc:
                self.last_error = exc
                logger.warning("%s; keeping the last answer", exc)
                sink.on_error(exc)
            else:
                self.last_error = None
                if last is None or snapshot.endpoints != last.endpoints:
                    last = snapshot
                    sink.on_endpoints(snapshot)
            await self._sleep(self.interval)

    def __repr__(self) -> str:
        return f"DnsSource({self.host!r}, {self.port})"
