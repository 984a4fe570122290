"""The Service-DNS fallback (the seed's ``FallbackService``): where requests go with no usable endpoint.

The Service's cluster DNS name still works through its ClusterIP (kube-proxy balances per
connection there), so a client whose endpoint list is empty, or whose API access is broken, keeps
working, only without per-request balancing. A named port is resolved once from the Service
object through the source's ``service_port()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NamedTuple

from ._errors import ConfigurationError, DiscoveryError, NoEndpointsAvailable
from ._service import ServiceRef

NoEndpoints = Callable[[str], NoEndpointsAvailable]


class FallbackTarget(NamedTuple):
    """Where a request goes when no endpoint is usable: the Service's DNS name and port."""

    host: str
    port: int


class Fallback:
    """``"service"`` (default: the Service DNS name), ``"none"``/None, or an explicit ``"host:port"``."""

    def __init__(self, spec: str | None, service: ServiceRef, source: object) -> None:
        self._service = service
        self._source = source
        self._fixed: FallbackTarget | None = None
        self._enabled = True
        if spec is None or spec == "none":
            self._enabled = False
        elif spec != "service":
            host, sep, port = spec.rpartition(":") if isinstance(spec, str) else ("", "", "")
            if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
                raise ConfigurationError(f"fallback must be 'service', 'none' or 'host:port', not {spec!r}")
            self._fixed = FallbackTarget(host.strip("[]"), int(port))
        self._port: int | None = service.port if isinstance(service.port, int) else None
        self._lock: asyncio.Lock | None = None

    def describe(self) -> str:
        """``service``, ``none`` or ``host:port``, for status and repr."""
        if not self._enabled:
            return "none"
        return f"{self._fixed.host}:{self._fixed.port}" if self._fixed else "service"

    async def target(self, no_endpoints: NoEndpoints) -> FallbackTarget:
        """The fallback target; raises what ``no_endpoints(why)`` builds when there is none."""
        if not self._enabled:
            raise no_endpoints("no usable endpoint and fallback='none'")
        if self._fixed is not None:
            return self._fixed
        if self._port is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._port is None:
                    self._port = await self._resolve_port(no_endpoints)
        return FallbackTarget(self._service.host, self._port)

    async def _resolve_port(self, no_endpoints: NoEndpoints) -> int:
        port = self._service.port
        resolve = getattr(self._source, "service_port", None)
        if resolve is None:
            raise no_endpoints(
                f"no usable endpoint, and the fallback cannot resolve the named port {port!r}: "
                f"{type(self._source).__name__} has no service_port(); use a numeric port or fallback='host:port'"
            )
        try:
            return int(await resolve())
        except Exception as exc:
            # A DiscoveryError from the source already names the missing RBAC rule.
            hint = (
                ""
                if isinstance(exc, DiscoveryError)
                else f"; reading it needs RBAC 'get' on services in namespace {self._service.namespace!r}"
            )
            raise no_endpoints(
                f"no usable endpoint, and the fallback could not resolve the named port "
                f"{port!r} from the Service object ({exc}){hint}"
            ) from exc
