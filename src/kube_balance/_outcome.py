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


class Outcome(enum.IntEnum):
    """How one attempt on one endpoint ended; ``label`` is its name for status and metrics.

    An ``IntEnum`` so that counting one (a list indexed by it, on every request's path) costs no
    Python-level ``__hash__``, as a plain ``Enum`` member's would. Values start at 1, so that no
    member is falsy.
    """

    OK = 1
    """A response below 500 (other than a 429)."""
    CONNECT_FAILED = 2
    """No connection: refused, reset or timed out while connecting. Nothing was sent."""
    RESET = 3
    """The connection broke after the request may have been sent, before the response ended."""
    TIMEOUT = 4
    """No (complete) response in time."""
    SERVER_ERROR = 5
    """A 5xx response."""
    OVERLOADED = 6
    """A 429 (the endpoint asks for less traffic, not to be ejected)."""
    CANCELLED = 7
    """The caller gave up: says nothing about the endpoint."""
    LOCAL = 8
    """Our own side failed (a full local pool, a request the client refused to send)."""
    ERROR = 9
    """Any other failure the endpoint caused (a protocol error, a TLS failure)."""
    SLOW = 10
    """Outrun by a hedge: a second attempt, sent to another endpoint when this one had no answer
    after the hedge delay, answered first, and this one was cancelled. Not a failure (the endpoint
    may yet have answered), but evidence that it is slow now (Envoy's router records a hedged
    first attempt as a timeout for outlier detection). The 429 penalty steers traffic away for a
    while (``OverloadPenalty(slow_time=)``)."""

    @property
    def label(self) -> str:
        """``ok``, ``connect_failed``, ``server_error``, ...: the name used in status and metrics."""
        return self.name.lower()

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


_NOT_FAILED = frozenset({Outcome.OK, Outcome.CANCELLED, Outcome.LOCAL, Outcome.SLOW})
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
