"""Retries on another pod: when a retry is safe, how many attempts, and the budget that caps them.

What is safe to retry, by what the failed attempt may have done on the server:

- ``Failure.NOT_SENT``: the connection was never established (refused, reset or timed out while
  connecting). Nothing reached the server, so any method is retried.
- ``Failure.NO_RESPONSE``: the connection broke after the request may have been written but
  before any response byte (the keep-alive race with a server closing an idle connection, a pod
  killed mid-request). Retried for idempotent methods only, as RFC 9110 section 9.2.2 allows.
- ``Failure.STATUS``: an answer with a status listed in ``retry_statuses`` (``True``: 502, 503
  and 504; any error status 400-599 may be listed, 429 included). Retried for idempotent methods
  only, on another pod (off by default: the server did see the request).

A request whose body cannot be replayed (a streaming upload) is retried only for ``NOT_SENT``.

The :class:`RetryBudget` is Envoy's ``retry_budget``: retries in flight may not exceed
``max(min_concurrency, percent * active requests)``, 20% and 3 by default (Envoy's defaults,
the same ratio as Finagle's ``RetryBudget``). A retry holds its slot until its response is
closed. The budget caps the retries that repeat work a server may already have done
(``NO_RESPONSE``, ``STATUS``): those are what turn an overloaded pod into a retry storm.
``NOT_SENT`` retries move a request that no server saw, adding no work anywhere, so by default
they are bounded by ``max_attempts`` only: a pod killed under load (still listed until discovery
catches up) draws about 1/n of all requests, more than any budget of 20% allows when n < 5.
``budget_not_sent=True`` charges them to the budget too, as Envoy does.

Beyond Envoy: since a ``NOT_SENT`` retry is safe and free for the servers, it is not held to
``max_attempts`` but to ``max_not_sent_attempts`` (8): a request whose attempts keep being
refused tries every untried eligible endpoint, up to 8 attempts in all, so with 3 pods of 4
refusing connections (and only one of them ejected, outlier ejection's 10% cap) requests still
reach the good one. Each retry goes to an endpoint not tried yet; when none is left the request
fails. ``max_attempts=1`` still disables every retry.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._errors import ConfigurationError
from ._validate import check_bool, check_int, check_number

__all__ = ["DEFAULT_MAX_ATTEMPTS", "IDEMPOTENT_METHODS", "Failure", "RetryBudget", "RetryPolicy"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""RFC 9110 section 9.2.2."""

DEFAULT_MAX_ATTEMPTS = 3
"""One try and two retries: a request survives two dead pods in a row during a rollout
(Envoy's default is one retry, gRPC's retry policy allows up to 5 attempts)."""

DEFAULT_MAX_NOT_SENT_ATTEMPTS = 8
"""Attempts allowed while the last one sent nothing (refused connections): our choice, beyond
Envoy, bounded by the untried eligible endpoints too."""

DEFAULT_RETRY_STATUSES = frozenset({502, 503, 504})
"""Envoy's ``retriable-status-codes`` / ``gateway-error`` set."""


class Failure(enum.Enum):
    """How an attempt failed, as far as retry safety is concerned."""

    NOT_SENT = "not_sent"
    NO_RESPONSE = "no_response"
    STATUS = "status"


class RetryBudget:
    """Caps retries in flight at ``max(min_concurrency, percent * active)`` (Envoy ``retry_budget``).

    ``active`` counts requests in flight, retries included; the caller reports them with
    :meth:`request_started` / :meth:`request_finished`, and holds a retry slot from
    :meth:`try_acquire` until that retry attempt finishes (:meth:`release`).
    """

    def __init__(self, percent: float = 0.2, min_concurrency: int = 3) -> None:
        percent = check_number("RetryBudget percent", percent, low=0.0, high=1.0)
        check_int("RetryBudget min_concurrency", min_concurrency, low=0)
        self.percent = percent
        self.min_concurrency = min_concurrency
        self.active = 0
        self.retries = 0
        self.exhausted = 0  # retries refused by the budget, for status and tests

    def limit(self) -> int:
        """How many retries may be in flight right now."""
        return max(self.min_concurrency, int(self.percent * self.active))

    def request_started(self) -> None:
        """A request (first try or retry) is now in flight."""
        self.active += 1

    def request_finished(self) -> None:
        """A request in flight has finished (its response closed, or it failed)."""
        if self.active > 0:
            self.active -= 1

    def try_acquire(self) -> bool:
        """Take a retry slot if the budget allows; False (and counted) when it does not."""
        if self.retries < self.limit():
            self.retries += 1
            return True
        self.exhausted += 1
        return False

    def release(self) -> None:
        """A retry taken with :meth:`try_acquire` has finished."""
        if self.retries > 0:
            self.retries -= 1

    def __repr__(self) -> str:
        return f"<RetryBudget retries={self.retries}/{self.limit()} active={self.active} exhausted={self.exhausted}>"


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a request on another endpoint; see the module docstring.

    ``max_attempts`` counts the first try (1 disables retries). ``retry_statuses`` enables the
    status retry for idempotent methods: ``True`` for 502/503/504, or an explicit set of
    error statuses (400-599, e.g. ``{429, 503}``).
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_statuses: bool | Iterable[int] = False
    budget_percent: float = 0.2
    budget_min_concurrency: int = 3
    budget_not_sent: bool = False
    max_not_sent_attempts: int = DEFAULT_MAX_NOT_SENT_ATTEMPTS
    statuses: frozenset[int] = field(init=False)

    def __post_init__(self) -> None:
        check_int("RetryPolicy max_attempts", self.max_attempts, low=1)
        check_int("RetryPolicy max_not_sent_attempts", self.max_not_sent_attempts, low=1)
        check_number("RetryPolicy budget_percent", self.budget_percent, low=0.0, high=1.0)
        check_int("RetryPolicy budget_min_concurrency", self.budget_min_concurrency, low=0)
        check_bool("RetryPolicy budget_not_sent", self.budget_not_sent)
        object.__setattr__(self, "statuses", _statuses(self.retry_statuses))

    def uses_budget(self, failure: Failure) -> bool:
        """Whether a retry after ``failure`` draws on the budget (see the module docstring)."""
        return failure is not Failure.NOT_SENT or self.budget_not_sent

    def new_budget(self) -> RetryBudget:
        """A budget with this policy's parameters (one per balancer)."""
        return RetryBudget(self.budget_percent, self.budget_min_concurrency)

    def should_retry(self, failure: Failure, *, method: str, replayable: bool, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1-based) that failed with ``failure`` may be retried.

        The budget is checked separately, last, so a refused retry is counted only when it
        would otherwise have happened.
        """
        if failure is Failure.NOT_SENT:  # nothing was sent: up to the larger bound
            return self.max_attempts > 1 and attempt < max(self.max_attempts, self.max_not_sent_attempts)
        if attempt >= self.max_attempts:
            return False
        return replayable and method.upper() in IDEMPOTENT_METHODS

    def retry_status(self, status: int, *, method: str, replayable: bool, attempt: int) -> bool:
        """Whether a response with ``status`` to attempt number ``attempt`` may be retried."""
        return status in self.statuses and self.should_retry(
            Failure.STATUS, method=method, replayable=replayable, attempt=attempt
        )


def _statuses(value: object) -> frozenset[int]:
    """``retry_statuses`` as a set: True -> 502/503/504, False -> none, else error statuses 400-599."""
    if value is True:
        return DEFAULT_RETRY_STATUSES
    if value is False:
        return frozenset()
    problem = "must be True (502, 503, 504), False, or a collection of HTTP error statuses (400-599)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(f"retry_statuses={value!r}: {problem}")
    try:
        statuses = frozenset(value)
    except TypeError:  # an unhashable item
        raise ConfigurationError(f"retry_statuses={value!r}: {problem}") from None
    wrong = sorted(
        (s for s in statuses if isinstance(s, bool) or not isinstance(s, int) or not 400 <= s <= 599),
        key=repr,
    )
    if wrong:
        raise ConfigurationError(
            f"retry_statuses={value!r}: {', '.join(map(repr, wrong))} cannot be retried; {problem}"
        )
    return statuses
