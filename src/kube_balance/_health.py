"""What the health steps of an :class:`~kube_balance.EndpointPolicy` share: the balancer they bind
to, and the report they add to ``LoadBalancer.status()``.

A step that keeps state (outlier ejection, slow start, the 429 penalty) has a ``bind(host)``
method: the balancer calls it once, and the step registers an outcome observer and keeps the
host's ``refresh`` to re-run the policy when its state changes (an ejection, a return, a ramp
step). Steps take the host's clock and rng unless they were given their own.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ._endpoint import Endpoint
from ._errors import ConfigurationError
from ._outcome import Outcome

if TYPE_CHECKING:
    from .algorithms import Algorithm

__all__ = ["Ejection", "HealthReport", "Observer", "PolicyHost"]

Observer = Callable[[Endpoint, "float | None", Outcome, "int | None", "float | None"], None]


class PolicyHost(Protocol):
    """What a health step needs of the :class:`~kube_balance.LoadBalancer` it is bound to."""

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def rng(self) -> random.Random: ...

    @property
    def algorithm(self) -> Algorithm: ...

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
    """Binding bookkeeping shared by the stateful steps: one balancer per step."""

    _host: PolicyHost | None = None
    _ok_quiet = False  # what the host was last told (see _quiet_on_ok)

    def _bind(self, host: PolicyHost) -> None:
        if self._host is not None and self._host is not host:
            raise ConfigurationError(
                f"{type(self).__name__} is already bound to another LoadBalancer: "
                "give each LoadBalancer its own EndpointPolicy"
            )
        self._host = host

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
