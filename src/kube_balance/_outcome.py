"""What happened to one request on one endpoint: the single vocabulary every observer shares.

Every pick is matched by exactly one ``LoadBalancer.put()``, and its :class:`Outcome` says how the
attempt ended. Integrations classify their client's errors into it once; the algorithm (through
``failed``), the balancer's counters, outlier ejection and metrics all read the same value, so a
"connection refused" means the same thing to each of them.

``local_origin`` follows Envoy's outlier detection: failures seen on the connection itself
(refused, reset, timed out) rather than answered by the server.
"""

from __future__ import annotations

import enum

__all__ = ["Outcome", "parse_retry_after"]

MAX_RETRY_AFTER = 300.0
"""Seconds: a longer Retry-After is capped (a pod asking for a day off is not taken at its word)."""


class Outcome(enum.Enum):
    """How one attempt on one endpoint ended."""

    OK = "ok"
    """A response below 500 (other than a 429)."""
    CONNECT_FAILED = "connect_failed"
    """No connection: refused, reset or timed out while connecting. Nothing was sent."""
    RESET = "reset"
    """The connection broke after the request may have been sent, before the response ended."""
    TIMEOUT = "timeout"
    """No (complete) response in time."""
    SERVER_ERROR = "server_error"
    """A 5xx response."""
    OVERLOADED = "overloaded"
    """A 429 (the endpoint asks for less traffic, not to be ejected)."""
    CANCELLED = "cancelled"
    """The caller gave up: says nothing about the endpoint."""
    LOCAL = "local"
    """Our own side failed (a full local pool, a request the client refused to send)."""
    ERROR = "error"
    """Any other failure the endpoint caused (a protocol error, a TLS failure)."""

    @property
    def failed(self) -> bool:
        """Whether the endpoint failed the request (what ``Algorithm.put(failed=)`` is told)."""
        return self not in _NOT_FAILED

    @property
    def local_origin(self) -> bool:
        """Whether the failure was seen on the connection rather than answered by the endpoint."""
        return self in _LOCAL_ORIGIN

    @classmethod
    def of_status(cls, status: int) -> Outcome:
        """The outcome of a response with ``status``."""
        if status >= 500:
            return cls.SERVER_ERROR
        if status == 429:
            return cls.OVERLOADED
        return cls.OK


_NOT_FAILED = frozenset({Outcome.OK, Outcome.CANCELLED, Outcome.LOCAL})
_LOCAL_ORIGIN = frozenset({Outcome.CONNECT_FAILED, Outcome.RESET, Outcome.TIMEOUT})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header's delta-seconds form, capped at ``MAX_RETRY_AFTER``;
    None when absent or not a non-negative number (an HTTP date is not worth a clock read here)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not seconds >= 0:  # negative or NaN
        return None
    return min(seconds, MAX_RETRY_AFTER)
