"""A SourceSink that records what an endpoint source pushes, for tests of sources."""

from __future__ import annotations

from .._endpoint import EndpointSet
from .._errors import DiscoveryError


class RecordingSink:
    """Keeps every snapshot and error a source pushes, in order.

    >>> sink = RecordingSink()
    >>> sink.on_endpoints(EndpointSet.of(["10.0.0.1:80"]))
    >>> [ep.key for ep in sink.latest]
    ['10.0.0.1:80']
    """

    def __init__(self) -> None:
        self.snapshots: list[EndpointSet] = []
        self.errors: list[DiscoveryError] = []

    def on_endpoints(self, snapshot: EndpointSet) -> None:
        self.snapshots.append(snapshot)

    def on_error(self, error: DiscoveryError) -> None:
        self.errors.append(error)

    @property
    def latest(self) -> EndpointSet | None:
        """The last snapshot pushed, or None before the first."""
        return self.snapshots[-1] if self.snapshots else None
