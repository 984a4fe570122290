"""The endpoint source contract: a coroutine that pushes full snapshots of one Service.

A source owns no policy: it turns what it sees (API objects, a static list, DNS answers) into
:class:`~kube_balance.EndpointSet` snapshots and hands each complete snapshot to its sink. The
LoadBalancer diffs consecutive snapshots and decides which endpoints get traffic.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._endpoint import EndpointSet
from .._errors import DiscoveryError


class SourceSink(Protocol):
    """Receives what a source learns; both callbacks are synchronous and must not block."""

    def on_endpoints(self, snapshot: EndpointSet) -> None:
        """A new complete snapshot of the Service's endpoints (replaces the previous one)."""
        ...

    def on_error(self, error: DiscoveryError) -> None:
        """The source failed; it keeps retrying, and the last good snapshot keeps serving.

        The source logs the failure itself (once); the sink only records it.
        """
        ...


@runtime_checkable
class EndpointSource(Protocol):
    """Discovers one Service's endpoints and pushes snapshots until cancelled.

    A source may also offer ``explain_empty(waited: float | None) -> str | None``: why it has
    found no endpoint at all (no such Service, an API silent for ``waited`` seconds), which
    :class:`~kube_balance.NoEndpointsAvailable` then quotes.
    """

    async def run(self, sink: SourceSink) -> None:
        """Push snapshots to ``sink`` until cancelled; errors go to ``sink.on_error``, never raise."""
        ...
