"""What the health steps of an :class:`~kube_balance.EndpointPolicy` share: the balancer they bind
to, and the report they add to ``LoadBalancer.status()``.

A step that keeps state (outlier ejection, slow start, the 429 penalty, zones, subsets) has a
``bind(host)`` method: the balancer calls it once, and the step keeps the host to re-run the
policy when its state changes (an ejection, a return, a ramp step). The plumbing is here, in
:class:`Bound` and :class:`Observing` (which also registers the step's outcome observer), so
each step's module states only its policy. Steps take the host's clock and rng unless they were
given their own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ._endpoint import Endpoint
from ._errors import ConfigurationError
from ._outcome import Outcome

if TYPE_CHECKING:
    from .algorithms import Algorithm
    from .discovery import EndpointSource

__all__ = ["Bound", "Ejection", "HealthReport", "Observer", "Observing", "PolicyHost"]

Observer = Callable[[Endpoint, "float | None", Outcome, "int | None", "float | None"], None]


class PolicyHost(Protocol):
    """What a health step needs of the :class:`~kube_balance.LoadBalancer` it is bound to."""

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def rng(self) -> random.Random: ...

    @property
    def algorithm(self) -> Algorithm: ...

    @property
    def source(self) -> EndpointSource: ...

    def refresh(self) -> None: ...

    def add_observer(self, observer: Observer, *, quiet: bool = False) -> Callable[[], None]: ...

    def set_quiet(self, observer: Observer, quiet: bool) -> None: ...


@dataclass(frozen=True)
class Ejection:
    """One ejected endpoint, as ``LoadBalancer.status().ejected`` shows it."""

    endpoint: str
    """The endpoint's key (``10.0.0.1:8080``)."""
    reason: str
    """Why: ``"5 consecutive failures (connect_failed)"``, ``"success rate 0.62 below 0.91"``..."""
    since: float
    """When it was ejected, on the balancer's monotonic clock."""
    until: float
    """When it returns, on the balancer's monotonic clock."""
    times: int
    """How many times it has been ejected (the ejection time's multiplier)."""


@dataclass
class HealthReport:
    """What the health steps add to ``LoadBalancer.status()``; each step fills its part."""

    ejected: dict[str, Ejection] = field(default_factory=dict)
    panic: bool = False
    slow_start: dict[str, float] = field(default_factory=dict)
    penalized: dict[str, float] = field(default_factory=dict)
    ejections: int = 0
    """Ejections since the balancer started (every one, returns not subtracted)."""


class Bound:
    """What the steps with state share: one balancer per step, its clock, a policy re-run.

    ``bind(host)`` keeps ``host`` (a second, different host is refused), takes its clock unless
    the step was given one, then calls ``_bound(host)`` for whatever else the step needs of it.
    A subclass of :class:`Observing` also hears every request's outcome.
    """

    _host: PolicyHost | None = None
    _ok_quiet = False  # what the host was last told (see _quiet_on_ok)
    _clock: Callable[[], float] | None = None

    def bind(self, host: PolicyHost) -> None:
        """Called once by the :class:`~kube_balance.LoadBalancer` that runs this step."""
        if self._host is host:
            return
        if self._host is not None:
            name = type(self).__name__
            raise ConfigurationError(
                f"{name} is already bound to another LoadBalancer: a {name} serves one LoadBalancer; "
                "give each LoadBalancer its own EndpointPolicy (and its own steps)"
            )
        self._host = host
        if self._clock is None:
            self._clock = host.clock
        self._bound(host)

    def _bound(self, host: PolicyHost) -> None:
        """What the step takes from ``host`` beyond its clock (nothing here)."""

    def _now(self) -> float:
        """The clock's time; an unbound step (a plain filter) runs on ``time.monotonic``."""
        if self._clock is None:
            self._clock = time.monotonic
        return self._clock()

    def _refresh(self) -> None:
        """Re-run the host's policy (its state changed); nothing while unbound."""
        if self._host is not None:
            self._host.refresh()


class Observing(Bound):
    """A step with state that hears every request's outcome through ``_observe``."""

    def _bound(self, host: PolicyHost) -> None:
        host.add_observer(self._observe)

    def _observe(
        self,
        endpoint: Endpoint,
        elapsed: float | None,
        outcome: Outcome,
        status: int | None,
        retry_after: float | None,
    ) -> None:
        """One request's outcome on ``endpoint`` (an :data:`Observer`)."""
        raise NotImplementedError

    def _quiet_on_ok(self, observer: Observer, quiet: bool) -> None:
        """Tell the host whether ``observer`` has anything to do for an OK outcome (a change only)."""
        if quiet != self._ok_quiet and self._host is not None:
            self._ok_quiet = quiet
            self._host.set_quiet(observer, quiet)


def check_seconds(owner: str, name: str, value: object, *, zero_ok: bool = False) -> float:
    """``value`` as float seconds, or a :class:`ConfigurationError` naming the option."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and (value >= 0 if zero_ok else value > 0) and value != float("inf"):  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    bound = ">= 0" if zero_ok else "> 0"
    raise ConfigurationError(f"{owner} {name} must be a finite number of seconds {bound}, not {value!r}")


def check_fraction(owner: str, name: str, value: object, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``, or a :class:`ConfigurationError` naming the option."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high:
        return float(value)
    raise ConfigurationError(f"{owner} {name} must be a number in [{low}, {high}], not {value!r}")


def check_count(owner: str, name: str, value: object, low: int = 1) -> int:
    """``value`` as an int >= ``low``, or a :class:`ConfigurationError` naming the option."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= low:
        return value
    raise ConfigurationError(f"{owner} {name} must be an int >= {low}, not {value!r}")
