"""The Service-DNS fallback (the seed's ``FallbackService``): where requests go with no usable endpoint.

The Service's cluster DNS name still works through its ClusterIP (kube-proxy balances per
connection there), so a client whose endpoint list is empty, or whose API access is broken, keeps
working, only without per-request balancing. The DNS name needs the Service's own port: a numeric
reference is it; a named port (or a reference without a port: the Service's only port) is read
once from the Service object through the source's ``service_port()``.

That read happens once, not per request: concurrent requests share the read in progress; no
request waits for it longer than it is allowed to (the balancer's startup wait, or less); a failure
is reported to the balancer at once (``status().last_error``) and remembered, and the read is
tried again only after a jittered backoff (the watcher's), on the first request after it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from ._backoff import Backoff
from ._errors import (
    ConfigurationError,
    DiscoveryAuthError,
    DiscoveryError,
    DiscoveryUnavailable,
    NoEndpointsAvailable,
)
from ._service import ServiceRef

NoEndpoints = Callable[[str], NoEndpointsAvailable]
OnError = Callable[[DiscoveryError], None]

_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_ALLOWED = (
    "allowed: 'service' (default: the Service's DNS name), 'none' or None (raise NoEndpointsAvailable), "
    "or 'host:port' without a scheme, e.g. 'web.shop.svc.cluster.local:80', '10.0.0.1:8080', '[fd00::1]:8080'"
)


class FallbackTarget(NamedTuple):
    """Where a request goes when no endpoint is usable: the fallback's host and port."""

    host: str
    port: int


def parse_fallback(spec: object) -> FallbackTarget | None:
    """``"service"`` -> None (the Service DNS name), ``"host:port"`` -> that target; else ConfigurationError."""
    try:
        return fallback_target(spec)
    except ValueError as exc:
        raise ConfigurationError(f"fallback={spec!r}: {exc}; {_ALLOWED}") from None


def fallback_target(spec: object) -> FallbackTarget | None:
    """:func:`parse_fallback` without the keyword's wording: ``ValueError`` saying what is wrong
    (the command line words the rest itself)."""
    if spec == "service":
        return None
    if not isinstance(spec, str):
        raise ValueError(f"a {type(spec).__name__} is not a fallback")
    if "://" in spec:
        raise ValueError("a URL is not a fallback: give host:port (the scheme comes from the request)")
    host, sep, port = spec.rpartition(":")
    if not sep or not host:
        raise ValueError("host:port expected")
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"port {port!r} is not a number in 1..65535 (ASCII digits)")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host} is not an IPv6 address") from None
        return FallbackTarget(host[1:-1], int(port))
    if ":" in host:
        raise ValueError("an IPv6 address needs brackets: '[fd00::1]:8080'")
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_HOSTNAME.match(label) for label in labels):
        raise ValueError(
            f"host {host!r} is not an IP address or a DNS name (ASCII letters, digits, '-', '.')"
        )
    return FallbackTarget(host, int(port))


class Fallback:
    """``"service"`` (default: the Service DNS name), ``"none"``/None, or an explicit ``"host:port"``.

    ``on_error`` receives a failure to read the Service's port (the balancer's ``on_error``);
    ``rng`` and ``clock`` drive the backoff between reads.
    """

    def __init__(
        self,
        spec: str | None,
        service: ServiceRef,
        source: object,
        *,
        on_error: OnError | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._service = service
        self._source = source
        self._enabled = not (spec is None or spec == "none")
        self._fixed = parse_fallback(spec) if self._enabled else None
        self._port: int | None = service.port if isinstance(service.port, int) else None
        self._on_error = on_error
        self._clock = clock if clock is not None else time.monotonic
        self._backoff = Backoff(rng=rng, clock=self._clock)
        self._task: asyncio.Task[int] | None = None  # the read in progress
        self._deadline = 0.0  # loop time after which nobody waits for that read any more
        self._reported_slow = False  # the read in progress was reported as not answering
        self._error: BaseException | None = None  # the last read's failure, until one succeeds
        self._retry_at = 0.0  # clock time before which the failure is not retried
        self.reads = 0  # reads of the Service object started, for status and tests

    def describe(self) -> str:
        """``service``, ``none`` or ``host:port``, for status and repr."""
        if not self._enabled:
            return "none"
        return f"{self._fixed.host}:{self._fixed.port}" if self._fixed else "service"

    async def target(self, no_endpoints: NoEndpoints, wait: float) -> FallbackTarget:
        """The fallback target; raises what ``no_endpoints(why)`` builds when there is none.

        ``wait`` bounds how long this call waits for the Service port to be read.
        """
        if not self._enabled:
            raise no_endpoints("no usable endpoint and fallback='none'")
        if self._fixed is not None:
            return self._fixed
        if self._port is None:
            await self._resolve(no_endpoints, wait)
            assert self._port is not None
        return FallbackTarget(self._service.host, self._port)

    async def _resolve(self, no_endpoints: NoEndpoints, wait: float) -> None:
        if getattr(self._source, "service_port", None) is None:  # nothing to retry: say how to fix it
            port = self._service.port
            what = f"the named port {port!r}" if port is not None else "the Service's only port"
            raise no_endpoints(
                f"no usable endpoint, and the fallback cannot resolve {what}: {type(self._source).__name__} "
                "has no service_port(); use a numeric port in the service reference, or fallback='host:port'"
            )
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None:
            if self._error is not None and self._clock() < self._retry_at:
                raise no_endpoints(self._explain(self._error)) from self._error
            self.reads += 1
            task = self._task = loop.create_task(
                self._read(), name=f"kube-balance fallback port {self._service}"
            )
            task.add_done_callback(self._settle)
            self._deadline = loop.time() + wait
            self._reported_slow = False
        remaining = min(wait, self._deadline - loop.time())
        if remaining > 0 and not task.done():
            # asyncio.wait never cancels the task: a waiter that gives up (or is cancelled)
            # leaves the read running for the others.
            await asyncio.wait({task}, timeout=remaining)
        if task.done():
            self._settle(task)
            if self._port is not None:
                return
            if self._error is None:  # cancelled: the balancer is closing
                raise no_endpoints(
                    "no usable endpoint, and the balancer closed while reading the Service port"
                )
            raise no_endpoints(self._explain(self._error)) from self._error
        slow = DiscoveryUnavailable(
            f"fallback for {self._service}: reading the Service {self._service.namespace}/{self._service.name} "
            f"for its {self._port_words()} got no answer within {wait:g} s (still trying)"
        )
        if not self._reported_slow:
            self._reported_slow = True
            self._report(slow)
        raise no_endpoints(f"no usable endpoint, and {slow}")

    async def _read(self) -> int:
        return int(await self._source.service_port())  # type: ignore[attr-defined]

    def _settle(self, task: asyncio.Task[int]) -> None:
        """Record the outcome of a finished read (idempotent: the callback and a waiter both call it)."""
        if task is not self._task:
            return
        self._task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            self._port, self._error = task.result(), None
            self._backoff.reset()
            return
        self._error = exc
        self._retry_at = self._clock() + self._backoff.next_delay()
        self._report(self._as_discovery_error(exc))

    def _report(self, error: DiscoveryError) -> None:
        if self._on_error is not None:
            self._on_error(error)

    def _port_words(self) -> str:
        port = self._service.port
        return "only port" if port is None else f"port {port!r}"

    def _hint(self, exc: BaseException) -> str:
        # A DiscoveryError from the source already names the missing RBAC rule.
        if isinstance(exc, (DiscoveryError, ConfigurationError)):
            return ""
        return f"; reading it needs RBAC 'get' on services in namespace {self._service.namespace!r}"

    def _as_discovery_error(self, exc: BaseException) -> DiscoveryError:
        kind: type[DiscoveryError] = DiscoveryError
        if isinstance(exc, DiscoveryAuthError):
            kind = DiscoveryAuthError
        elif isinstance(exc, DiscoveryUnavailable):
            kind = DiscoveryUnavailable
        error = kind(
            f"fallback for {self._service}: cannot read the {self._port_words()} of the Service "
            f"{self._service.namespace}/{self._service.name}: {exc}{self._hint(exc)}"
        )
        error.__cause__ = exc
        return error

    def _explain(self, exc: BaseException) -> str:
        retry_in = max(0.0, self._retry_at - self._clock())
        return f"no usable endpoint, and {self._as_discovery_error(exc)}; next read in {retry_in:.1f} s"

    async def aclose(self) -> None:
        """Cancel a read in progress (the balancer is closing)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
