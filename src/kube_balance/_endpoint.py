"""The endpoint model: one pod address and port, and a whole snapshot of a Service's endpoints."""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ._errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend address and port, with the metadata Kubernetes publishes about it.

    ``key`` (``10.0.0.1:8080``, ``[fd00::1]:8080``) identifies the endpoint: algorithms keep
    their per-endpoint load under it, so an endpoint whose conditions change keeps its load.
    Conditions follow Kubernetes' nil defaults: ready and serving default to true,
    terminating to false.
    """

    address: str
    port: int
    zone: str | None = None
    node_name: str | None = None
    hostname: str | None = None
    pod_name: str | None = None
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    weight: int = 1
    zone_hints: frozenset[str] = frozenset()
    node_hints: frozenset[str] = frozenset()
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            raise ConfigurationError(
                f"endpoint address {self.address!r} is not an IPv4 or IPv6 address"
            ) from None
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigurationError(f"endpoint port {self.port!r} for {self.address} is not in 1..65535")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 0:
            raise ConfigurationError(f"endpoint weight {self.weight!r} for {self.address} is not an int >= 0")
        # Normalise so "FD00::1" and "fd00:0::1" are the same endpoint.
        object.__setattr__(self, "address", str(ip))
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        object.__setattr__(self, "key", f"{host}:{self.port}")

    @property
    def family(self) -> int:
        """4 or 6."""
        return 6 if ":" in self.address else 4

    @property
    def host(self) -> str:
        """The address as it goes in a URL authority: IPv6 in brackets."""
        return f"[{self.address}]" if ":" in self.address else self.address

    @classmethod
    def parse(cls, text: str, **metadata: object) -> Endpoint:
        """Build an endpoint from ``host:port`` (``[v6]:port`` for IPv6)."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigurationError(f"endpoint {text!r} is not of the form address:port or [v6address]:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ConfigurationError(
                f"endpoint {text!r}: an IPv6 address needs brackets, as in [fd00::1]:8080"
            )
        return cls(host, int(port), **metadata)  # type: ignore[arg-type]


_key = operator.attrgetter("key")


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """An immutable snapshot of all endpoints of one Service, as a source last saw them.

    ``resource_version`` is the opaque version of the snapshot when it came from the
    Kubernetes API (never do arithmetic on it).
    """

    endpoints: tuple[Endpoint, ...] = ()
    resource_version: str | None = None

    def __post_init__(self) -> None:
        # The common case (no duplicates) is checked at C speed: snapshots of large Services are
        # rebuilt on every slice update, so this must not cost a Python loop per endpoint.
        if len(set(map(_key, self.endpoints))) != len(self.endpoints):
            seen: dict[str, Endpoint] = {}
            for ep in self.endpoints:
                seen.setdefault(ep.key, ep)
            object.__setattr__(self, "endpoints", tuple(seen.values()))

    @classmethod
    def of(cls, endpoints: Iterable[Endpoint | str], resource_version: str | None = None) -> EndpointSet:
        """Build a set from endpoints or ``host:port`` strings; duplicates by key are dropped."""
        eps = tuple(e if isinstance(e, Endpoint) else Endpoint.parse(e) for e in endpoints)
        return cls(eps, resource_version)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self.endpoints)

    def __len__(self) -> int:
        return len(self.endpoints)

    def __contains__(self, item: object) -> bool:
        key = item.key if isinstance(item, Endpoint) else item
        return any(ep.key == key for ep in self.endpoints)

    @property
    def keys(self) -> frozenset[str]:
        """The endpoint keys in this snapshot."""
        return frozenset(ep.key for ep in self.endpoints)

    def ready(self) -> tuple[Endpoint, ...]:
        """Endpoints whose ready condition is true."""
        return tuple(ep for ep in self.endpoints if ep.ready)

    def serving_terminating(self) -> tuple[Endpoint, ...]:
        """Endpoints that are terminating but still serving (used when none is ready)."""
        return tuple(ep for ep in self.endpoints if ep.serving and ep.terminating)

    def counts(self) -> dict[str, int]:
        """Endpoint counts by condition, for status and ``repr``."""
        return {
            "total": len(self.endpoints),
            "ready": sum(ep.ready for ep in self.endpoints),
            "serving_terminating": sum(ep.serving and ep.terminating for ep in self.endpoints),
            "not_ready": sum(not ep.ready and not (ep.serving and ep.terminating) for ep in self.endpoints),
        }
