"""Scripted faults for :class:`FakeApiServer`: one frozen :class:`Fault` class, built by classmethods.

A fault is queued with ``server.inject(fault)``. Each incoming request is checked against the
queued faults in injection order; the first that matches (``on`` request kind and ``path``
substring) is applied to that request and its ``count`` goes down by one; at zero it is gone.
Faults apply before authentication, as a proxy or a failing apiserver would.

``on`` is one of ``"list"``, ``"watch"``, ``"get"`` (one named object), ``"discovery"``
(``/api``, ``/apis``, ``/version``...), ``"api"`` (list, watch or get: the default, so a
discovery probe does not use up a fault meant for the watch) or ``"any"``.

Stream faults act after ``after_events`` lines of a watch stream (every line counts, bookmarks
included); on a list they cut the JSON body in half instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .._errors import ConfigurationError

__all__ = ["Fault", "FaultAction", "FaultQueue", "RequestKind"]

FaultAction = Literal[
    "drop_before_headers",
    "drop_mid_stream",
    "drop_mid_line",
    "end_stream",
    "stall",
    "gone_in_stream",
    "http_error",
    "raw_response",
    "malformed_line",
    "restart",
]
RequestKind = Literal["list", "watch", "get", "discovery", "api", "any"]
_KINDS = ("list", "watch", "get", "discovery", "api", "any")

_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted misbehaviour; build it with a classmethod (``Fault.http_error(503)``...)."""

    action: FaultAction
    on: RequestKind = "api"
    path: str | None = None
    count: int = 1
    after_events: int = 0
    status: int = 0
    retry_after: int | None = None
    body: str | None = None
    content_type: str = "application/json"
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.on not in _KINDS:
            raise ConfigurationError(f"Fault.on must be one of {_KINDS}, got {self.on!r}")
        if self.count < 1 or self.after_events < 0:
            raise ConfigurationError(f"Fault needs count >= 1 and after_events >= 0: {self!r}")

    def matches(self, kind: str, path: str) -> bool:
        """Does this fault apply to a request of ``kind`` (list/watch/get/discovery) at ``path``?"""
        if self.path is not None and self.path not in path:
            return False
        if self.on == "any" or self.on == kind:
            return True
        return self.on == "api" and kind in ("list", "watch", "get")

    # -- connection faults ---------------------------------------------------------------------
    @classmethod
    def drop_before_headers(
        cls, *, on: RequestKind = "api", path: str | None = None, count: int = 1
    ) -> Fault:
        """Close the TCP connection before any response byte (client sees a disconnect).

        aiohttp 3.10 and later, hence kubernetes_asyncio, retry an idempotent request once after
        such a drop (RFC 9112 section 9.3.1.1), so there ``count=2`` is what makes a GET fail for
        the caller; aiohttp 3.9 does not retry.
        """
        return cls("drop_before_headers", on, path, count)

    @classmethod
    def drop_mid_stream(
        cls, after_events: int = 0, *, on: RequestKind = "watch", path: str | None = None, count: int = 1
    ) -> Fault:
        """Abort the connection after ``after_events`` complete lines (no final chunk: a payload error)."""
        return cls("drop_mid_stream", on, path, count, after_events)

    @classmethod
    def drop_mid_line(
        cls, after_events: int = 0, *, on: RequestKind = "watch", path: str | None = None, count: int = 1
    ) -> Fault:
        """Write the first half of the next line after ``after_events`` lines, then abort."""
        return cls("drop_mid_line", on, path, count, after_events)

    @classmethod
    def end_stream(
        cls, after_events: int = 0, *, on: RequestKind = "watch", path: str | None = None, count: int = 1
    ) -> Fault:
        """End the watch cleanly (final chunk) after ``after_events`` lines, as a load balancer's idle cut."""
        return cls("end_stream", on, path, count, after_events)

    @classmethod
    def stall(
        cls, seconds: float | None = None, *, on: RequestKind = "api", path: str | None = None, count: int = 1
    ) -> Fault:
        """Send the headers, then nothing for ``seconds`` (``None``: until the server stops), then go on."""
        return cls("stall", on, path, count, seconds=seconds)

    @classmethod
    def restart(cls, *, on: RequestKind = "api", path: str | None = None, count: int = 1) -> Fault:
        """Restart the server when the request arrives (the request itself is dropped)."""
        return cls("restart", on, path, count)

    # -- protocol faults -----------------------------------------------------------------------
    @classmethod
    def gone_in_stream(
        cls, after_events: int = 0, *, on: RequestKind = "watch", path: str | None = None, count: int = 1
    ) -> Fault:
        """After ``after_events`` lines send an ``ERROR`` event with a 410 Expired Status, then end."""
        return cls("gone_in_stream", on, path, count, after_events)

    @classmethod
    def gone(cls, *, on: RequestKind = "watch", path: str | None = None, count: int = 1) -> Fault:
        """Answer HTTP 410 Gone (reason Expired) with a Status body instead of starting the watch."""
        return cls("http_error", on, path, count, status=410)

    @classmethod
    def malformed_line(
        cls,
        line: str = "this is not json",
        after_events: int = 0,
        *,
        on: RequestKind = "watch",
        path: str | None = None,
        count: int = 1,
    ) -> Fault:
        """Insert ``line`` (e.g. not JSON, or ``{"object": {}}`` without ``type``) into the stream."""
        return cls("malformed_line", on, path, count, after_events, body=line)

    @classmethod
    def http_error(
        cls,
        status: int,
        *,
        retry_after: int | None = None,
        on: RequestKind = "api",
        path: str | None = None,
        count: int = 1,
    ) -> Fault:
        """Answer ``status`` (500, 503, 504, 429, 410...) with the apiserver's Status JSON body.

        ``retry_after`` adds a ``Retry-After`` header and ``details.retryAfterSeconds``.
        """
        if not 400 <= status <= 599:
            raise ConfigurationError(f"Fault.http_error wants a 4xx/5xx status, got {status}")
        return cls("http_error", on, path, count, status=status, retry_after=retry_after)

    @classmethod
    def too_many_requests(
        cls, retry_after: int = 1, *, on: RequestKind = "api", path: str | None = None, count: int = 1
    ) -> Fault:
        """HTTP 429 with ``Retry-After: N``, as API Priority and Fairness throttling sends."""
        return cls.http_error(429, retry_after=retry_after, on=on, path=path, count=count)

    @classmethod
    def raw_response(
        cls,
        status: int = 502,
        body: str = _BAD_GATEWAY_HTML,
        content_type: str = "text/html",
        *,
        on: RequestKind = "api",
        path: str | None = None,
        count: int = 1,
    ) -> Fault:
        """A non-Status body, by default nginx's HTML 502 page from a proxy in front of the apiserver."""
        return cls("raw_response", on, path, count, status=status, body=body, content_type=content_type)


class FaultQueue:
    """Injected faults in order, each with the number of requests it still applies to."""

    def __init__(self) -> None:
        self._queue: list[list[Any]] = []  # [fault, uses left]

    def add(self, fault: Fault) -> None:
        self._queue.append([fault, fault.count])

    def clear(self) -> None:
        self._queue.clear()

    def pending(self) -> list[Fault]:
        return [entry[0] for entry in self._queue]

    def take(self, kind: str, path: str) -> Fault | None:
        """The first fault matching a request of ``kind`` at ``path``, used up by one."""
        for entry in self._queue:
            fault: Fault = entry[0]
            if fault.matches(kind, path):
                entry[1] -= 1
                if entry[1] == 0:
                    self._queue.remove(entry)
                return fault
        return None
