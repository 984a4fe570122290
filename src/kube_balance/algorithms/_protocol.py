"""The ``Algorithm`` protocol: what the LoadBalancer and the integrations need of an algorithm.

Kept apart from ``_base`` because the algorithm modules are compiled with mypyc for release wheels,
and a runtime-checkable Protocol must stay an interpreted class.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Protocol, runtime_checkable

from .._endpoint import Endpoint


@runtime_checkable
class Algorithm(Protocol):
    """What the LoadBalancer and the integrations need of a balancing algorithm."""

    name: ClassVar[str]
    requires_key: ClassVar[bool]

    def get(self, key: str | bytes | None = None) -> Endpoint | None:
        """Pick the endpoint for the next request, or None when there is none."""
        ...

    def put(self, endpoint: Endpoint, elapsed: float | None = None, failed: bool = False) -> None:
        """Release an endpoint returned by ``get()``; ``elapsed`` in seconds, ``failed`` on error."""
        ...

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the endpoint set; per-endpoint state of endpoints that stay is kept."""
        ...

    def inflight(self, endpoint: Endpoint | str) -> int:
        """Requests currently outstanding on an endpoint (by endpoint or key)."""
        ...

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The endpoints currently eligible for ``get()``."""
        ...
