"""Passive outlier ejection: endpoints that keep failing requests stop getting them for a while.

A step of the :class:`~kube_balance.EndpointPolicy`, fed by every request's
:class:`~kube_balance.Outcome` through ``LoadBalancer.add_observer`` (Envoy's outlier detection,
Linkerd's and Finagle's failure accrual). Defaults and their sources:

- ``consecutive_failures=5``: Envoy's ``consecutive_5xx``. Counted: connection failures, resets
  and timeouts (local-origin, as Envoy's default non-split mode counts them), 5xx answers
  (``count_server_errors``) and other endpoint errors. A success resets the count; a 429, a 503
  with Retry-After (the 429 penalty's business), a cancellation or a local error leave it alone.
- ``consecutive_local_origin_failures=None``: Envoy's ``consecutive_local_origin_failure``, off
  unless set: a separate, lower threshold for failures seen on the connection itself.
- ejection time ``base_ejection_time x times ejected`` (30 s, Envoy's ``base_ejection_time``),
  capped at ``max_ejection_time`` (300 s, Envoy's), plus a jitter of up to ``jitter`` (10%) of
  it so endpoints ejected together do not all return at once (our choice; Envoy's
  ``max_ejection_time_jitter`` is 0 by default). Each ``base_ejection_time`` an endpoint spends
  back without being ejected takes one off its multiplier (Envoy).
- an endpoint back from an ejection is on probation until its first success: one failure ejects
  it again, for the longer time (Finagle's failure accrual probes a revived endpoint once,
  Envoy needs the full count again; one failure is enough evidence after an ejection).
- ``max_ejection_percent=10``: at most 10% of the endpoints are ejected at once, but at least one
  (Envoy's ``max_ejection_percent`` and its "at least one host" rule).
- ``success_rate``: off by default; :class:`SuccessRate` with Envoy's defaults ejects endpoints
  whose success rate is below ``mean - 1.9 x stddev`` of the others'.
- ``suspect_load=5``: until it is ejected, succeeds, or ``suspect_time`` (1 s) passes after its
  last failure, each consecutive failure counts as 5 more requests in flight on the endpoint
  (our choice, beyond Envoy). A pod that fails fast looks idle to ``least_request`` (and cheap to
  ``peak_ewma``), so without it the two-choice pick keeps feeding it until the 5th failure comes
  back; with it, it loses the comparisons after one or two. The time limit keeps a pod that is
  barely picked any more from being starved for good: it is tried again, and either succeeds or
  reaches the ejection. Goes through the algorithm's ``penalize`` hook, like the 429 penalty.

Returns need no traffic to the ejected endpoint: every ``put()`` (of any endpoint), every run of
the policy and ``LoadBalancer.status()`` return the endpoints whose time is up. Each ejection and
each return is logged once (logger ``kube_balance``) with the endpoint and the reason.

While nothing is ejected or suspect and no failure is counted (and no success-rate window runs),
an OK outcome has nothing to do here: the step is then quiet (``LoadBalancer.add_observer(quiet=)``)
and the requests of a healthy Service do not call it.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from ._endpoint import Endpoint, EndpointSet
from ._errors import ConfigurationError
from ._health import Ejection, HealthReport, Observing, PolicyHost, check_count, check_fraction, check_seconds
from ._outcome import Outcome

__all__ = ["OutlierDetector", "SuccessRate"]

logger = logging.getLogger("kube_balance")

DEFAULT_CONSECUTIVE_FAILURES = 5
"""Envoy ``outlier_detection.consecutive_5xx``."""
DEFAULT_BASE_EJECTION_TIME = 30.0
"""Seconds; Envoy ``outlier_detection.base_ejection_time``."""
DEFAULT_MAX_EJECTION_TIME = 300.0
"""Seconds; Envoy ``outlier_detection.max_ejection_time``."""
DEFAULT_MAX_EJECTION_PERCENT = 10.0
"""Envoy ``outlier_detection.max_ejection_percent`` (at least one endpoint may always be ejected)."""
DEFAULT_JITTER = 0.1
"""Up to 10% added to each ejection time (our choice: spreads the returns of endpoints ejected together)."""
DEFAULT_SUSPECT_LOAD = 5
"""Phantom requests in flight per consecutive failure before an ejection (our choice)."""
DEFAULT_SUSPECT_TIME = 1.0
"""Seconds the phantom load lasts after the latest failure (our choice)."""

_NEUTRAL, _FAILURE, _LOCAL = 0, 1, 2


@dataclass(frozen=True)
class SuccessRate:
    """Envoy's success-rate outlier rule, evaluated every ``interval`` seconds.

    Among endpoints with at least ``request_volume`` requests in the interval, when there are at
    least ``minimum_hosts`` of them, eject those whose success rate is below
    ``mean - stdev_factor x stddev``. Defaults are Envoy's: ``interval`` 10 s,
    ``success_rate_request_volume`` 100, ``success_rate_minimum_hosts`` 5,
    ``success_rate_stdev_factor`` 1900 (1.9).
    """

    interval: float = 10.0
    request_volume: int = 100
    minimum_hosts: int = 5
    stdev_factor: float = 1.9

    def __post_init__(self) -> None:
        check_seconds("SuccessRate", "interval", self.interval)
        check_count("SuccessRate", "request_volume", self.request_volume)
        check_count("SuccessRate", "minimum_hosts", self.minimum_hosts)
        check_fraction("SuccessRate", "stdev_factor", self.stdev_factor, 0.0, 100.0)


class _State:
    """One endpoint's failure counts and ejection history (kept only once it has failed)."""

    __slots__ = ("failures", "local", "times", "returned_at", "probation")

    def __init__(self) -> None:
        self.failures = 0  # consecutive counted failures
        self.local = 0  # consecutive local-origin failures
        self.times = 0  # ejections so far (the multiplier), less the decay while healthy
        self.returned_at: float | None = None
        self.probation = False  # back from an ejection, not yet succeeded: one failure ejects


class OutlierDetector(Observing):
    """An :class:`~kube_balance.EndpointPolicy` step that leaves out ejected endpoints.

    See the module docstring for each option and its default's source. ``clock`` (monotonic
    seconds) and ``rng`` (the jitter) default to the balancer's.
    """

    def __init__(
        self,
        *,
        consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES,
        consecutive_local_origin_failures: int | None = None,
        count_server_errors: bool = True,
        base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME,
        max_ejection_time: float = DEFAULT_MAX_EJECTION_TIME,
        jitter: float = DEFAULT_JITTER,
        max_ejection_percent: float = DEFAULT_MAX_EJECTION_PERCENT,
        success_rate: SuccessRate | None = None,
        suspect_load: int = DEFAULT_SUSPECT_LOAD,
        suspect_time: float = DEFAULT_SUSPECT_TIME,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        name = "OutlierDetector"
        self.consecutive_failures = check_count(name, "consecutive_failures", consecutive_failures)
        self.consecutive_local_origin_failures = (
            None
            if consecutive_local_origin_failures is None
            else check_count(name, "consecutive_local_origin_failures", consecutive_local_origin_failures)
        )
        self.count_server_errors = bool(count_server_errors)
        self.base_ejection_time = check_seconds(name, "base_ejection_time", base_ejection_time)
        self.max_ejection_time = check_seconds(name, "max_ejection_time", max_ejection_time)
        if self.max_ejection_time < self.base_ejection_time:
            raise ConfigurationError(
                f"OutlierDetector max_ejection_time ({max_ejection_time!r}) must be >= "
                f"base_ejection_time ({base_ejection_time!r})"
            )
        self.jitter = check_fraction(name, "jitter", jitter, 0.0, 1.0)
        self.max_ejection_percent = check_fraction(name, "max_ejection_percent", max_ejection_percent, 0, 100)
        if success_rate is not None and not isinstance(success_rate, SuccessRate):
            raise ConfigurationError(
                f"OutlierDetector success_rate must be a SuccessRate or None, not {success_rate!r}"
            )
        self.success_rate = success_rate
        self.suspect_load = check_count(name, "suspect_load", suspect_load, 0)
        self.suspect_time = check_seconds(name, "suspect_time", suspect_time)
        self._suspect: dict[str, int] = {}  # phantom load added per endpoint (taken back on success)
        self._suspect_until: dict[str, float] = {}
        self._next_unsuspect = math.inf
        self._penalize: Callable[[str, int], None] | None = None
        self._clock = clock
        self._rng = rng
        self._states: dict[str, _State] = {}
        self._unsettled: set[str] = set()  # keys an OK outcome would reset (and the ejected ones)
        self._ejected: dict[str, Ejection] = {}
        self.ejections = 0  # every ejection so far, for metrics
        self._next_return = math.inf  # the earliest ``until`` of the ejected endpoints
        self._total = 0  # endpoints the step saw last time (the base of max_ejection_percent)
        self._snapshot: EndpointSet | None = None
        self._window: dict[str, list[int]] = {}  # success-rate counts: key -> [successes, requests]
        self._window_end = math.inf
        self._service = ""

    # -- binding --------------------------------------------------------------------------
    def _bound(self, host: PolicyHost) -> None:
        """Observe ``host``'s outcomes (its policy re-runs on each ejection and return), with its
        rng for the jitter and its algorithm's ``penalize`` hook for the suspect load."""
        if self._rng is None:
            self._rng = host.rng
        self._service = str(getattr(host, "service", ""))
        self._penalize = getattr(host.algorithm, "penalize", None) if self.suspect_load else None
        if self.success_rate is not None:
            self._window_end = self._now() + self.success_rate.interval
        super()._bound(host)  # quiet from the first run of the policy on

    def _update_quiet(self) -> None:
        """Quiet (not called for an OK outcome) while an OK has nothing to do: nothing ejected
        or suspect, no failure counted, no success-rate window. Most requests then skip the step."""
        busy = self._ejected or self._suspect or self._unsettled or self.success_rate is not None
        self._quiet_on_ok(self._observe, not busy)

    # -- the filter -----------------------------------------------------------------------
    def __call__(self, snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        """``candidates`` less the ejected endpoints (returning those whose time is up)."""
        if snapshot is not self._snapshot:
            self._forget_gone(snapshot)
        self._total = len(candidates)
        if self._ejected:
            self._return_due(self._now())
        self._update_quiet()
        if not self._ejected:
            return candidates
        ejected = self._ejected
        return tuple(ep for ep in candidates if ep.key not in ejected)

    def _forget_gone(self, snapshot: EndpointSet) -> None:
        """Drop the state of endpoints no longer in the Service (an ejected one leaves silently)."""
        self._snapshot = snapshot
        keys = snapshot.keys
        for key in [k for k in self._states if k not in keys]:
            del self._states[key]
            self._unsettled.discard(key)
            self._ejected.pop(key, None)
            self._unsuspect(key)
        self._next_return = min((e.until for e in self._ejected.values()), default=math.inf)

    # -- outcomes -------------------------------------------------------------------------
    def _observe(
        self,
        endpoint: Endpoint,
        elapsed: float | None,
        outcome: Outcome,
        status: int | None,
        retry_after: float | None,
    ) -> None:
        # Called for an OK outcome only while the step is not quiet (see _update_quiet).
        if self._ejected:
            now = self._now()
            if now >= self._next_return and self._return_due(now):
                self._refresh()
        if self._suspect and self._now() >= self._next_unsuspect:
            self._unsuspect_due(self._now())
        key = endpoint.key
        kind = _NEUTRAL
        if outcome is Outcome.OK:
            if self._states:
                state = self._states.get(key)
                if state is not None and (state.failures or state.local or state.probation):
                    state.failures = state.local = 0
                    state.probation = False
                    self._unsettled.discard(key)
                    self._unsuspect(key)
            if self.success_rate is None:
                self._update_quiet()
                return
        elif outcome.local_origin:
            kind = _LOCAL
        elif outcome is Outcome.SERVER_ERROR:
            if self.count_server_errors and retry_after is None:
                kind = _FAILURE
            state = self._states.get(key)
            if state is not None:
                state.local = 0  # the connection worked
                if not self.count_server_errors:
                    state.failures = 0  # an answer, and answers are not judged: a success here
                    self._unsuspect(key)
                if not (state.failures or state.probation):
                    self._unsettled.discard(key)  # nothing left for an OK to reset
        elif outcome is Outcome.ERROR:
            kind = _FAILURE
        if self.success_rate is not None:
            self._count(key, outcome, kind, self._now())
        if kind != _NEUTRAL and key not in self._ejected:
            self._failed(key, outcome, kind == _LOCAL, self._now())
        self._update_quiet()

    def _failed(self, key: str, outcome: Outcome, local: bool, now: float) -> None:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State()
        state.failures += 1
        if local:
            state.local += 1
        self._unsettled.add(key)
        local_limit = self.consecutive_local_origin_failures
        if state.probation:
            reason = f"failed on return from an ejection ({outcome.label})"
        elif state.failures >= self.consecutive_failures:
            reason = f"{state.failures} consecutive failures (last: {outcome.label})"
        elif local and local_limit is not None and state.local >= local_limit:
            reason = f"{state.local} consecutive local-origin failures (last: {outcome.label})"
        else:
            if self._penalize is not None:
                self._suspect[key] = self._suspect.get(key, 0) + self.suspect_load
                self._suspect_until[key] = until = now + self.suspect_time
                self._next_unsuspect = min(self._next_unsuspect, until)
                self._penalize(key, self.suspect_load)
            return
        if self._eject(key, state, reason, now):
            self._refresh()

    def _count(self, key: str, outcome: Outcome, kind: int, now: float) -> None:
        sr = self.success_rate
        assert sr is not None
        if now >= self._window_end:
            self._evaluate_success_rate(sr, now)
        if outcome is Outcome.OK or kind != _NEUTRAL:
            counts = self._window.get(key)
            if counts is None:
                counts = self._window[key] = [0, 0]
            counts[0] += outcome is Outcome.OK
            counts[1] += 1

    def _evaluate_success_rate(self, sr: SuccessRate, now: float) -> None:
        window, self._window = self._window, {}
        self._window_end = now + sr.interval
        # Only the endpoints in the Service now: one that left may still have counts (its last
        # requests), and must neither be judged nor weigh in the mean.
        present = self._snapshot.keys if self._snapshot is not None else frozenset()
        rates = {
            k: ok / n
            for k, (ok, n) in window.items()
            if n >= sr.request_volume and k not in self._ejected and k in present
        }
        if len(rates) < sr.minimum_hosts:
            return
        mean = sum(rates.values()) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for r in rates.values()) / len(rates))
        threshold = mean - sr.stdev_factor * stdev
        changed = False
        for key, rate in sorted(rates.items(), key=lambda kv: kv[1]):  # the worst first, under the cap
            if rate < threshold:
                state = self._states.get(key)
                if state is None:
                    state = self._states[key] = _State()
                reason = f"success rate {rate:.3f} below {threshold:.3f} (mean {mean:.3f} of {len(rates)})"
                changed |= self._eject(key, state, reason, now)
        if changed:
            self._refresh()

    # -- ejections and returns ------------------------------------------------------------
    def max_ejected(self) -> int:
        """How many endpoints may be ejected at once: the share of the last count, at least one."""
        return max(1, int(self._total * self.max_ejection_percent / 100.0))

    def _eject(self, key: str, state: _State, reason: str, now: float) -> bool:
        if len(self._ejected) >= self.max_ejected():
            return False  # the counts stay: the next failure tries again once there is room
        base = self.base_ejection_time
        if state.returned_at is not None:  # one off the multiplier per base time spent healthy
            state.times = max(0, state.times - int((now - state.returned_at) // base))
        state.times += 1
        duration = min(base * state.times, self.max_ejection_time)
        rng = self._rng if self._rng is not None else random
        duration *= 1.0 + self.jitter * rng.random()
        ejection = Ejection(key, reason, now, now + duration, state.times)
        self.ejections += 1
        self._ejected[key] = ejection
        self._unsuspect(key)
        state.failures = state.local = 0
        state.probation = False  # (still unsettled: ejected, then on probation)
        self._next_return = min(self._next_return, ejection.until)
        logger.warning(
            "%s: ejected endpoint %s for %.1f s (ejection %d): %s",
            self._service, key, duration, state.times, reason,
        )  # fmt: skip
        return True

    def _unsuspect(self, key: str) -> None:
        """Take back the phantom load added for ``key``'s failures."""
        load = self._suspect.pop(key, 0)
        self._suspect_until.pop(key, None)
        if load and self._penalize is not None:
            self._penalize(key, -load)

    def _unsuspect_due(self, now: float) -> None:
        for key in [k for k, until in self._suspect_until.items() if until <= now]:
            self._unsuspect(key)
        self._next_unsuspect = min(self._suspect_until.values(), default=math.inf)

    def _return_due(self, now: float) -> bool:
        """Return every endpoint whose ejection is over; whether any did."""
        due = [e for e in self._ejected.values() if e.until <= now]
        for ejection in due:
            del self._ejected[ejection.endpoint]
            state = self._states.get(ejection.endpoint)
            if state is not None:
                state.returned_at = now
                state.probation = True
                self._unsettled.add(ejection.endpoint)
            logger.info(
                "%s: endpoint %s returned after %.1f s (was ejected: %s)",
                self._service, ejection.endpoint, now - ejection.since, ejection.reason,
            )  # fmt: skip
        self._next_return = min((e.until for e in self._ejected.values()), default=math.inf)
        return bool(due)

    # -- introspection --------------------------------------------------------------------
    @property
    def ejected(self) -> dict[str, Ejection]:
        """The endpoints ejected right now, by key (a copy)."""
        return dict(self._ejected)

    def report(self, health: HealthReport) -> None:
        """Return the endpoints whose time is up, then add the ejected ones to ``health``."""
        if self._ejected and self._return_due(self._now()):
            self._refresh()
        health.ejected.update(self._ejected)
        health.ejections += self.ejections

    def __repr__(self) -> str:
        return (
            f"OutlierDetector(consecutive_failures={self.consecutive_failures}, "
            f"base_ejection_time={self.base_ejection_time}, ejected={len(self._ejected)})"
        )
