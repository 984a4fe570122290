"""Retry decisions and the Envoy-style retry budget, exactly."""

from __future__ import annotations

import pytest

from kube_balance import ConfigurationError
from kube_balance._retry import Failure, RetryBudget, RetryPolicy


@pytest.mark.parametrize(("active", "limit"), [(0, 3), (10, 3), (19, 3), (20, 4), (24, 4), (25, 5), (50, 10)])
def test_budget_limit_is_max_of_three_and_a_fifth_of_active(active: int, limit: int) -> None:
    """Retries in flight <= max(3, int(0.2 * active)), Envoy's retry_budget defaults."""
    budget = RetryBudget()
    for _ in range(active):
        budget.request_started()
    assert budget.limit() == limit


def test_budget_refuses_beyond_the_limit_and_frees_on_release() -> None:
    """The fourth concurrent retry is refused (and counted) until one finishes."""
    budget = RetryBudget()
    assert [budget.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert budget.exhausted == 1
    budget.release()
    assert budget.try_acquire()
    assert repr(budget) == "<RetryBudget retries=3/3 active=0 exhausted=1>"


def test_budget_counts_never_go_negative() -> None:
    """Extra finish/release calls are harmless."""
    budget = RetryBudget()
    budget.request_finished()
    budget.release()
    assert (budget.active, budget.retries) == (0, 0)


def test_not_sent_is_retried_for_any_method() -> None:
    """Nothing reached the server: POST and a non-replayable body are retried too."""
    policy = RetryPolicy()
    assert policy.should_retry(Failure.NOT_SENT, method="POST", replayable=False, attempt=1)
    assert policy.should_retry(Failure.NOT_SENT, method="GET", replayable=True, attempt=2)
    assert policy.should_retry(Failure.NOT_SENT, method="GET", replayable=True, attempt=7)
    assert not policy.should_retry(Failure.NOT_SENT, method="GET", replayable=True, attempt=8)


def test_not_sent_bound_is_the_larger_of_both_and_one_attempt_disables_it() -> None:
    """max_not_sent_attempts bounds refused attempts (never below max_attempts); max_attempts=1
    still means no retry at all; a bad bound is named."""
    assert RetryPolicy(max_attempts=10).should_retry(
        Failure.NOT_SENT, method="GET", replayable=True, attempt=9
    )
    two = RetryPolicy(max_not_sent_attempts=2)
    assert two.should_retry(Failure.NOT_SENT, method="GET", replayable=True, attempt=2)
    assert not two.should_retry(Failure.NOT_SENT, method="GET", replayable=True, attempt=3)
    assert not RetryPolicy(max_attempts=1).should_retry(
        Failure.NOT_SENT, method="GET", replayable=True, attempt=1
    )
    assert not RetryPolicy().should_retry(Failure.NO_RESPONSE, method="GET", replayable=True, attempt=3)
    with pytest.raises(ConfigurationError, match=r"max_not_sent_attempts=0 is invalid: expected an int >= 1"):
        RetryPolicy(max_not_sent_attempts=0)


def test_no_response_is_retried_for_idempotent_replayable_requests_only() -> None:
    """A broken connection before the response: GET/PUT/DELETE yes, POST/PATCH or a stream no."""
    policy = RetryPolicy()
    for method in ("GET", "head", "PUT", "DELETE", "OPTIONS", "TRACE"):
        assert policy.should_retry(Failure.NO_RESPONSE, method=method, replayable=True, attempt=1)
    for method in ("POST", "PATCH"):
        assert not policy.should_retry(Failure.NO_RESPONSE, method=method, replayable=True, attempt=1)
    assert not policy.should_retry(Failure.NO_RESPONSE, method="PUT", replayable=False, attempt=1)


def test_status_retries_are_off_by_default_and_limited_to_gateway_errors() -> None:
    """retry_statuses=True means 502/503/504 for idempotent methods; a custom set is honoured."""
    assert not RetryPolicy().retry_status(503, method="GET", replayable=True, attempt=1)
    on = RetryPolicy(retry_statuses=True)
    assert on.statuses == {502, 503, 504}
    assert on.retry_status(503, method="GET", replayable=True, attempt=1)
    assert not on.retry_status(500, method="GET", replayable=True, attempt=1)
    assert not on.retry_status(503, method="POST", replayable=True, attempt=1)
    assert RetryPolicy(retry_statuses=[500]).retry_status(500, method="GET", replayable=True, attempt=1)


def test_connection_failures_skip_the_budget_unless_asked() -> None:
    """NOT_SENT retries add no server work, so they draw on the budget only with budget_not_sent."""
    assert not RetryPolicy().uses_budget(Failure.NOT_SENT)
    assert RetryPolicy().uses_budget(Failure.NO_RESPONSE)
    assert RetryPolicy(budget_not_sent=True).uses_budget(Failure.NOT_SENT)


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"max_attempts": True}, {"retry_statuses": [99]}, {"budget_percent": 1.5}]
)
def test_bad_options_raise_configuration_error(kwargs: dict[str, object]) -> None:
    """Invalid attempts, statuses or budget parameters are rejected with a clear error."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs).new_budget()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([200], "200 cannot be retried"),
        ([302, 503], "302 cannot be retried"),
        (503, "must be True"),
        ("503", "must be True"),
        ([[503]], "must be True"),
        ([True], "True cannot be retried"),
    ],
)
def test_retry_statuses_that_cannot_be_retried_are_refused(value: object, fragment: str) -> None:
    """Only error statuses (400-599) can be listed; the error names the option and the value."""
    with pytest.raises(ConfigurationError, match=fragment) as info:
        RetryPolicy(retry_statuses=value)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"retry_statuses={value!r}")
