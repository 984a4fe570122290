"""Panic threshold: when too few endpoints are healthy, balance across all of them.

Ejecting endpoints protects callers from a few bad pods; when most pods look bad, the few left
would take the whole load and fall over too, so the step gives up filtering (Envoy's
``healthy_panic_threshold``, 50% by default; Finagle's ``PanicMode.MajorityUnhealthy``).
:class:`PanicThreshold` wraps the step that judges health (the :class:`OutlierDetector`): when
that step keeps fewer than ``threshold`` of its candidates, all of them get traffic. Entering
and leaving panic are each logged once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._endpoint import Endpoint, EndpointSet
from ._errors import ConfigurationError
from ._health import HealthReport, PolicyHost, check_fraction

if TYPE_CHECKING:
    from ._policy import EndpointFilter

__all__ = ["PanicThreshold"]

logger = logging.getLogger("kube_balance")

DEFAULT_PANIC_THRESHOLD = 0.5
"""Envoy ``common_lb_config.healthy_panic_threshold`` (50%); Finagle ``PanicMode.MajorityUnhealthy``."""


class PanicThreshold:
    """Runs ``step``; if it keeps fewer than ``threshold`` (0..1) of the candidates, keeps them all.

    ``threshold=0`` never panics. ``panic`` says whether the last run panicked.
    """

    def __init__(self, step: EndpointFilter, threshold: float = DEFAULT_PANIC_THRESHOLD) -> None:
        if not callable(step):  # else every update fails, blamed on the endpoint source
            raise ConfigurationError(
                "PanicThreshold step must be an endpoint filter (a callable (snapshot, candidates) -> "
                f"endpoints, such as an OutlierDetector), not {step!r}"
            )
        self.step = step
        self.threshold = check_fraction("PanicThreshold", "threshold", threshold, 0.0, 1.0)
        self.panic = False
        self._service = ""

    def __call__(self, snapshot: EndpointSet, candidates: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
        """The step's choice, or every candidate when it kept fewer than the threshold."""
        kept = self.step(snapshot, candidates)
        panic = len(kept) < self.threshold * len(candidates)
        if panic != self.panic:
            self.panic = panic
            if panic:
                logger.warning(
                    "%s: panic: only %d of %d endpoints healthy (threshold %.0f%%): balancing across all",
                    self._service, len(kept), len(candidates), self.threshold * 100,
                )  # fmt: skip
            else:
                logger.info(
                    "%s: panic over: %d of %d endpoints healthy", self._service, len(kept), len(candidates)
                )
        return candidates if panic else kept

    def bind(self, host: PolicyHost) -> None:
        """Bind the wrapped step too, if it keeps state."""
        self._service = str(getattr(host, "service", ""))
        bind = getattr(self.step, "bind", None)
        if bind is not None:
            bind(host)

    def report(self, health: HealthReport) -> None:
        """The wrapped step's report, then whether the policy is in panic."""
        report = getattr(self.step, "report", None)
        if report is not None:
            report(health)
        health.panic = health.panic or self.panic

    def __repr__(self) -> str:
        return f"PanicThreshold({self.step!r}, threshold={self.threshold})"
