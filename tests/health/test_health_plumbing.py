"""The plumbing the health steps share (_health): option checks, the report's defaults, the
abstract observer."""

from __future__ import annotations

import pytest

from kube_balance import ConfigurationError, Endpoint, Outcome
from kube_balance._health import HealthReport, Observing, check_count, check_fraction, check_seconds


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 30.0])
def test_seconds_that_may_be_zero_take_zero_and_fractions(value: float) -> None:
    assert check_seconds("Step", "delay", value, zero_ok=True) == float(value)


@pytest.mark.parametrize("value", [0.5, 1e-9, 2])
def test_seconds_that_must_be_positive_take_fractions(value: float) -> None:
    assert check_seconds("Step", "delay", value) == float(value)


@pytest.mark.parametrize(
    ("value", "zero_ok", "bound"),
    [(0, False, "> 0"), (-0.5, True, ">= 0"), (-1e-9, True, ">= 0"), (float("inf"), True, ">= 0"),
     (True, True, ">= 0"), ("1", False, "> 0"), (None, False, "> 0")],
)  # fmt: skip
def test_seconds_out_of_bounds_are_refused_by_name(value: object, zero_ok: bool, bound: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_seconds("Step", "delay", value, zero_ok=zero_ok)
    assert str(info.value) == f"Step delay must be a finite number of seconds {bound}, not {value!r}"


def test_fractions_and_counts_are_checked_at_their_bounds() -> None:
    assert check_fraction("Step", "share", 0.0, 0.0, 1.0) == 0.0
    assert check_fraction("Step", "share", 1, 0.0, 1.0) == 1.0
    for bad in (-0.01, 1.01, True, "0.5"):
        with pytest.raises(ConfigurationError, match=r"Step share must be a number in \[0\.0, 1\.0\]"):
            check_fraction("Step", "share", bad, 0.0, 1.0)
    assert check_count("Step", "count", 1) == 1
    assert check_count("Step", "count", 0, low=0) == 0
    for bad in (0, 1.0, True):
        with pytest.raises(ConfigurationError, match="Step count must be an int >= 1"):
            check_count("Step", "count", bad)


def test_a_fresh_report_has_nothing_in_it() -> None:
    report = HealthReport()
    assert (report.ejected, report.panic, report.slow_start, report.penalized, report.ejections) == (
        {},
        False,
        {},
        {},
        0,
    )


def test_a_step_that_does_not_say_how_it_observes_refuses_to_guess() -> None:
    class Incomplete(Observing):
        pass

    with pytest.raises(NotImplementedError):
        Incomplete()._observe(Endpoint("10.0.0.1", 80), 0.01, Outcome.OK, 200, None)
