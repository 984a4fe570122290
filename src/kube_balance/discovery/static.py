"""A fixed or updatable list of endpoints: for tests, local development and non-Kubernetes backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .._endpoint import Endpoint, EndpointSet
from .._validate import invalid
from ._source import SourceSink


class StaticSource:
    """Serves the endpoints it is given; :meth:`set` replaces them while running.

    >>> StaticSource(["10.0.0.1:8080", "10.0.0.2:8080"])
    StaticSource(['10.0.0.1:8080', '10.0.0.2:8080'])
    """

    def __init__(self, endpoints: Iterable[Endpoint | str] = ()) -> None:
        self._snapshot = _endpoint_set(endpoints)
        self._sinks: list[SourceSink] = []

    @property
    def snapshot(self) -> EndpointSet:
        """The current endpoint set."""
        return self._snapshot

    def set(self, endpoints: Iterable[Endpoint | str]) -> None:
        """Replace the endpoint set; running sinks receive the new snapshot at once."""
        self._snapshot = _endpoint_set(endpoints)
        for sink in self._sinks:
            sink.on_endpoints(self._snapshot)

    async def run(self, sink: SourceSink) -> None:
        """Push the current snapshot, then every later :meth:`set`, until cancelled."""
        self._sinks.append(sink)
        try:
            sink.on_endpoints(self._snapshot)
            await asyncio.Event().wait()  # nothing to poll: set() pushes directly
        finally:
            self._sinks.remove(sink)

    def __repr__(self) -> str:
        return f"StaticSource({[ep.key for ep in self._snapshot]!r})"


def _endpoint_set(endpoints: object) -> EndpointSet:
    """The set of ``endpoints``: a list (or any iterable but a string) of Endpoints or "host:port"."""
    allowed = 'expected a list of Endpoint objects or "address:port" strings, e.g. ["10.0.0.1:8080"]'
    if isinstance(endpoints, (str, bytes)) or not isinstance(endpoints, Iterable):
        raise invalid("StaticSource endpoints", endpoints, allowed)
    items = list(endpoints)
    for item in items:
        if not isinstance(item, (Endpoint, str)):
            raise invalid(
                "StaticSource endpoints", endpoints, f"{item!r} is not an Endpoint or a str; {allowed}"
            )
    return EndpointSet.of(items)
