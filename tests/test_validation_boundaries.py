"""Validation at its boundaries: the first value refused and the last accepted, for each option."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest

from kube_balance import ConfigurationError, ServiceRef, _service
from kube_balance._retry import DEFAULT_RETRY_STATUSES, Failure, RetryBudget, RetryPolicy
from kube_balance.discovery.kubernetes._merge import normalize_family


# -- RetryPolicy and its budget ----------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, True, False, 2.0, "3", None])
def test_budget_min_concurrency_must_be_an_int_at_least_zero(bad: object) -> None:
    """min_concurrency: a negative, bool, float, str or None is refused, naming the option."""
    with pytest.raises(ConfigurationError, match=r"min_concurrency=.* is invalid: expected an int >= 0"):
        RetryBudget(min_concurrency=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"min_concurrency"):
        RetryPolicy(budget_min_concurrency=bad).new_budget()  # type: ignore[arg-type]


def test_budget_min_concurrency_zero_allows_no_retry_when_idle() -> None:
    """min_concurrency=0 is accepted: with nothing in flight no retry is allowed."""
    budget = RetryPolicy(budget_min_concurrency=0).new_budget()
    assert budget.min_concurrency == 0 and budget.limit() == 0
    assert not budget.try_acquire() and budget.exhausted == 1


@pytest.mark.parametrize("bad", [-0.01, 1.01, 2, float("nan")])
def test_budget_percent_outside_0_to_1_is_refused(bad: float) -> None:
    """percent must lie in [0, 1]."""
    with pytest.raises(
        ConfigurationError, match=r"percent=.* is invalid: expected a finite number in \[0\.0, 1\.0\]"
    ):
        RetryBudget(percent=bad)
    with pytest.raises(ConfigurationError, match="percent"):
        RetryPolicy(budget_percent=bad).new_budget()


@pytest.mark.parametrize(("percent", "limit"), [(0.0, 3), (1.0, 40)])
def test_budget_percent_bounds_are_accepted(percent: float, limit: int) -> None:
    """0 and 1 are valid percents: with 40 requests active they allow 3 (the minimum) and 40 retries."""
    budget = RetryPolicy(budget_percent=percent).new_budget()
    for _ in range(40):
        budget.request_started()
    assert budget.limit() == limit


def test_default_budget_is_three_retries_and_a_fifth() -> None:
    """The default policy's budget: 3 retries when idle, a fifth of the active requests beyond 15."""
    budget = RetryPolicy().new_budget()
    assert (budget.percent, budget.min_concurrency) == (0.2, 3)
    assert [budget.try_acquire() for _ in range(4)] == [True, True, True, False]
    for _ in range(25):
        budget.request_started()
    assert budget.limit() == 5


@pytest.mark.parametrize("status", [400, 599])
def test_status_range_ends_are_accepted(status: int) -> None:
    """retry_statuses accepts 400 and 599, the first and last HTTP error statuses."""
    policy = RetryPolicy(retry_statuses=[status])
    assert policy.statuses == {status}


@pytest.mark.parametrize("bad", [[600], [399], [200], [503, 600], ["503"], [503.0], [True]])
def test_status_out_of_range_or_not_int_is_refused(bad: list[object]) -> None:
    """retry_statuses outside 400..599 (only an error can be retried), or not ints, is a
    ConfigurationError at construction naming the value that cannot be retried."""
    with pytest.raises(ConfigurationError, match=r"retry_statuses=.*cannot be retried"):
        RetryPolicy(retry_statuses=bad)  # type: ignore[arg-type]


def test_retry_statuses_true_and_false() -> None:
    """True means 502/503/504, False (the default) none."""
    assert RetryPolicy(retry_statuses=True).statuses == DEFAULT_RETRY_STATUSES == {502, 503, 504}
    assert RetryPolicy().statuses == frozenset()


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_max_attempts_must_be_an_int_at_least_one(bad: object) -> None:
    """max_attempts: 0, negatives, bools and floats are refused; 1 turns retries off."""
    with pytest.raises(ConfigurationError, match=r"max_attempts=.* is invalid: expected an int >= 1"):
        RetryPolicy(max_attempts=bad)  # type: ignore[arg-type]
    one = RetryPolicy(max_attempts=1)
    assert not one.should_retry(Failure.NOT_SENT, method="GET", replayable=True, attempt=1)
    assert RetryPolicy(max_attempts=2).should_retry(
        Failure.NOT_SENT, method="GET", replayable=True, attempt=1
    )


def test_retry_policy_is_immutable() -> None:
    """A RetryPolicy cannot be changed after construction (it is shared by every request)."""
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_attempts = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.statuses = frozenset({500})  # type: ignore[misc]


# -- ServiceRef ------------------------------------------------------------------------------------
def _kubeconfig(tmp_path: Path, context: str) -> Path:
    path = tmp_path / "config"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"contexts: [{{name: c, context: {{{context}}}}}]\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {}}]\n"
    )
    return path


@pytest.mark.parametrize(
    "context",
    ["cluster: k, user: u", "cluster: k, user: u, namespace: ''", "cluster: k, user: u, namespace: 7"],
)
def test_kubeconfig_context_without_a_namespace_means_default(
    context: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kubeconfig context whose namespace is missing, empty or not a string gives ``default``."""
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, context)))
    assert ServiceRef.parse("web:80").namespace == "default"


def test_empty_namespace_file_falls_through_to_the_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An in-cluster namespace file holding only whitespace is ignored; the kubeconfig decides."""
    ns_file = tmp_path / "namespace"
    ns_file.write_text(" \n")
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(ns_file))
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, "cluster: k, user: u, namespace: team-b")))
    assert ServiceRef.parse("web:80").namespace == "team-b"


def test_unreadable_kubeconfig_means_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kubeconfig that is not valid YAML falls back to ``default`` instead of raising."""
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(tmp_path / "missing"))
    bad = tmp_path / "config"
    bad.write_text("{: not yaml ::: [")
    monkeypatch.setenv("KUBECONFIG", str(bad))
    assert ServiceRef.parse("web:80").namespace == "default"


@pytest.mark.parametrize(("port", "ok"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_port_number_range_is_1_to_65535(port: int, ok: bool) -> None:
    """Port numbers 1 and 65535 are accepted, 0 and 65536 refused with the allowed range."""
    text = f"web.shop:{port}"
    if ok:
        assert ServiceRef.parse(text).port == port
    else:
        with pytest.raises(ConfigurationError, match=f"port {port} is not in 1..65535"):
            ServiceRef.parse(text)


@pytest.mark.parametrize("name", ["h", "a1", "h2c", "abcdefghijklmno"])
def test_short_and_15_character_port_names_are_accepted(name: str) -> None:
    """IANA_SVC_NAME: one to fifteen characters with at least one letter."""
    assert ServiceRef.parse(f"web.shop:{name}").port == name


@pytest.mark.parametrize("name", ["abcdefghijklmnop", "-ab", "80-", "١٢"])
def test_bad_port_names_are_refused(name: str) -> None:
    """Sixteen characters, a leading or trailing '-', or non-ASCII digits are not port names."""
    with pytest.raises(ConfigurationError, match="port"):
        ServiceRef.parse(f"web.shop:{name}")


# -- address families ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [False, True, 4.0, 6.0, 0.0, "4", None, 5, socket.AF_UNIX])
def test_normalize_family_refuses_bools_floats_and_unknown_values(bad: object) -> None:
    """Only 'auto', 4, 6, AF_INET, AF_INET6 and 0 are families: False (== 0) and 4.0 (== 4) are not."""
    with pytest.raises(ConfigurationError, match="address_family"):
        normalize_family(bad)


@pytest.mark.parametrize(
    ("value", "family"),
    [("auto", None), (4, 4), (socket.AF_INET, 4), (6, 6), (socket.AF_INET6, 6), (0, 0)],
)
def test_normalize_family_accepts_the_documented_values(value: object, family: int | None) -> None:
    """The accepted spellings and what they mean (None: chosen per Service)."""
    assert normalize_family(value) == family


def test_retry_policy_repr_shows_the_effective_statuses() -> None:
    """The repr lists the statuses the policy retries, as derived from retry_statuses."""
    assert f"statuses={DEFAULT_RETRY_STATUSES!r}" in repr(RetryPolicy(retry_statuses=True))
    assert "statuses=frozenset()" in repr(RetryPolicy())


def test_should_retry_answers_a_bool() -> None:
    """should_retry is True or False (never a falsy stand-in) on each path."""
    policy = RetryPolicy(max_attempts=2, max_not_sent_attempts=2)
    assert policy.should_retry(Failure.NOT_SENT, method="GET", replayable=True, attempt=2) is False
    assert policy.should_retry(Failure.NOT_SENT, method="POST", replayable=False, attempt=1) is True
    assert policy.should_retry(Failure.NO_RESPONSE, method="POST", replayable=True, attempt=1) is False
    assert policy.should_retry(Failure.NO_RESPONSE, method="get", replayable=True, attempt=1) is True


def test_first_kubeconfig_of_a_list_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KUBECONFIG with several paths: the namespace comes from the first file, as kubectl merges."""
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(tmp_path / "missing"))
    first = tmp_path / "first"
    first.mkdir()
    second = tmp_path / "second"
    second.mkdir()
    one = _kubeconfig(first, "cluster: k, user: u, namespace: from-first")
    two = _kubeconfig(second, "cluster: k, user: u, namespace: from-second")
    monkeypatch.setenv("KUBECONFIG", f"{one}{os.pathsep}{two}")
    assert ServiceRef.parse("web:80").namespace == "from-first"


def test_without_kubeconfig_variable_the_home_config_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KUBECONFIG unset: ~/.kube/config gives the namespace."""
    monkeypatch.setattr(_service, "NAMESPACE_FILE", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    _kubeconfig(tmp_path / ".kube", "cluster: k, user: u, namespace: from-home")
    assert ServiceRef.parse("web:80").namespace == "from-home"


@pytest.mark.parametrize(
    ("option", "bad"),
    [
        ("budget_percent", 1.5),
        ("budget_percent", -0.5),
        ("budget_min_concurrency", -1),
        ("budget_not_sent", "yes"),
    ],
)
def test_retry_policy_checks_its_budget_options_at_construction(option: str, bad: object) -> None:
    """A wrong budget option is refused when the RetryPolicy is built, not later by new_budget()."""
    with pytest.raises(ConfigurationError, match=rf"RetryPolicy {option}="):
        RetryPolicy(**{option: bad})  # type: ignore[arg-type]
    RetryPolicy(budget_percent=0.0, budget_min_concurrency=0)
    RetryPolicy(budget_percent=1.0, budget_not_sent=True)


def test_a_string_of_statuses_is_refused_as_a_whole() -> None:
    """retry_statuses='503' is one string, not the characters 5, 0, 3: the message says what is allowed."""
    with pytest.raises(ConfigurationError, match=r"retry_statuses='503': must be True"):
        RetryPolicy(retry_statuses="503")  # type: ignore[arg-type]


def test_should_retry_past_max_attempts_is_false_not_none() -> None:
    """A lost response on the last allowed attempt: exactly False (a bool, not a falsy None)."""
    policy = RetryPolicy(max_attempts=2)
    assert policy.should_retry(Failure.NO_RESPONSE, method="GET", replayable=True, attempt=2) is False
