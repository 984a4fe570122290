"""Every option of every public constructor: a wrong value is a ConfigurationError at construction."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_balance import (
    AffinityKey,
    ConfigurationError,
    EndpointPolicy,
    HedgePolicy,
    LoadBalancer,
    RetryBudget,
    RetryPolicy,
    create,
)
from kube_balance.discovery import ClientConfig, DnsSource, KubernetesSource, StaticSource
from kube_balance.integrations.httpx import BalancedTransport

SERVICE = "web.shop:http"

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=6),
    st.tuples(st.integers(-5, 700), st.integers(-5, 700)),
    st.tuples(st.floats(), st.text(max_size=3), st.none()),
    st.lists(st.one_of(st.integers(-5, 700), st.text(max_size=12), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=4)), max_size=2),
    st.builds(object),
    st.just(lambda *args: None),
    st.sampled_from([random.Random(1), httpx.Limits(), RetryPolicy(), StaticSource(), {1: 2}, int, str]),
)
"""Values of every common shape: numbers (nan, inf, huge), strings, None, containers, objects, callables."""


def _lb(**kw: Any) -> object:
    kw.setdefault("source", StaticSource())
    return LoadBalancer(kw.pop("service", SERVICE), **kw)


def _transport(**kw: Any) -> object:
    kw.setdefault("source", StaticSource())
    return BalancedTransport(kw.pop("service", SERVICE), **kw)


def _dns(**kw: Any) -> object:
    kw.setdefault("port", 80)
    return DnsSource(kw.pop("service", "web.shop"), **kw)


def _kube(**kw: Any) -> object:
    return KubernetesSource(kw.pop("service", SERVICE), **kw)


def _algorithm(name: str) -> Callable[..., object]:
    def build(**kw: Any) -> object:
        return create(kw.pop("name", name), **kw)

    return build


CONSTRUCTORS: dict[str, tuple[Callable[..., object], tuple[str, ...]]] = {
    "LoadBalancer": (
        _lb,
        (
            "service",
            "algorithm",
            "source",
            "policy",
            "fallback",
            "algorithm_options",
            "startup_timeout",
            "rng",
            "clock",
        ),
    ),
    "BalancedTransport": (
        _transport,
        (
            "service",
            "algorithm",
            "source",
            "fallback",
            "affinity",
            "retry",
            "hedge",
            "verify",
            "cert",
            "trust_env",
            "http1",
            "http2",
            "limits",
            "retries",
            "socket_options",
            "local_address",
            "algorithm_options",
            "rng",
            "clock",
        ),
    ),
    "KubernetesSource": (
        _kube,
        (
            "service",
            "api_client",
            "kubeconfig",
            "context",
            "in_cluster",
            "address_family",
            "clock",
            "rng",
            "sleep",
            "watch_timeout",
            "request_timeout",
            "page_size",
        ),
    ),
    "ClientConfig": (
        ClientConfig,
        ("api_client", "kubeconfig", "context", "in_cluster", "token_file", "ca_file", "environ"),
    ),
    "StaticSource": (StaticSource, ("endpoints",)),
    "DnsSource": (_dns, ("service", "port", "interval", "address_family", "resolver", "sleep")),
    "RetryPolicy": (
        RetryPolicy,
        ("max_attempts", "retry_statuses", "budget_percent", "budget_min_concurrency", "budget_not_sent"),
    ),
    "RetryBudget": (RetryBudget, ("percent", "min_concurrency")),
    "HedgePolicy": (
        HedgePolicy,
        (
            "delay",
            "percentile",
            "min_delay",
            "default_delay",
            "window",
            "min_samples",
            "budget_percent",
            "budget_max",
        ),
    ),
    "AffinityKey": (AffinityKey, ("header", "func")),
    "EndpointPolicy": (EndpointPolicy, ("filters",)),
    "create": (_algorithm("least_request"), ("name", "rng", "clock")),
    "least_request": (_algorithm("least_request"), ("choice_count",)),
    "peak_ewma": (_algorithm("peak_ewma"), ("decay", "default_rtt", "failure_penalty")),
    "ring_hash": (_algorithm("ring_hash"), ("replicas", "hash_function", "load_factor", "missing_key")),
    "maglev": (_algorithm("maglev"), ("table_size", "load_factor", "missing_key")),
}
NAMED_AS = {
    "endpoints": ("endpoint",),
    "service": ("service reference",),
    "name": ("algorithm",),
    "algorithm_options": ("algorithm",),
}
CASES = [(ctor, option) for ctor, (_, options) in CONSTRUCTORS.items() for option in options]


@pytest.mark.parametrize(("constructor", "option"), CASES, ids=[f"{c}-{o}" for c, o in CASES])
@settings(max_examples=40)
@given(value=ANYTHING)
def test_any_value_constructs_or_is_a_configuration_error(constructor: str, option: str, value: Any) -> None:
    """A constructor given any value for one option builds cleanly or raises ConfigurationError naming it."""
    build, _ = CONSTRUCTORS[constructor]
    try:
        build(**{option: value})
    except ConfigurationError as exc:
        message = str(exc)
    else:
        return
    # The message names the option; a service reference, an algorithm's name or its options are
    # named by what they are ("invalid service reference ...", "algorithm 'maglev' ...").
    names = {option, *NAMED_AS.get(option, ())}
    assert any(n.replace("_", " ") in message.replace("_", " ") for n in names), message


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: BalancedTransport(SERVICE, retry=3), "retry=3 is invalid: expected a RetryPolicy"),
        (lambda: _lb(startup_timeout="5"), "startup_timeout='5' is invalid: expected a finite number"),
        (lambda: _lb(startup_timeout=math.nan), "startup_timeout=nan is invalid"),
        (lambda: _lb(rng="seed"), "rng='seed' is invalid: expected a random.Random"),
        (lambda: BalancedTransport(SERVICE, limits=None), "limits=None is invalid: expected an httpx.Limits"),
        (
            lambda: LoadBalancer(SERVICE, source=SERVICE),
            "source='web.shop:http' is invalid: expected an endpoint",
        ),
        (lambda: _lb(algorithm_options="choice_count=3"), "algorithm_options='choice_count=3' is invalid"),
        (lambda: _lb(algorithm_options={"rng": 1}), "rng, clock|rng must be passed"),
        (
            lambda: KubernetesSource(SERVICE, watch_timeout=(600, 300)),
            r"watch_timeout=\(600, 300\) is invalid",
        ),
        (lambda: KubernetesSource(SERVICE, page_size=0), "page_size=0 is invalid: expected an int >= 1"),
        (lambda: KubernetesSource(SERVICE, request_timeout=-5), "request_timeout=-5 is invalid"),
        (lambda: create("maglev", table_size=7), "table_size 7 must be a prime in 101"),
        (lambda: RetryPolicy(budget_percent=1.5), r"budget_percent=1.5 is invalid: .*\[0.0, 1.0\]"),
        (lambda: StaticSource("10.0.0.1:80"), "endpoints='10.0.0.1:80' is invalid: expected a list"),
        (lambda: DnsSource("web.shop", 80, interval="5"), "interval='5' is invalid"),
        (lambda: create("random", rng="x"), "rng='x' is invalid"),
        (lambda: ClientConfig(context=5), "context=5 is invalid"),
        (lambda: EndpointPolicy(5), "filters=5 is invalid"),  # type: ignore[arg-type]
        # Used to fail each pod's connection (charged to the pods) or the first request, unnamed:
        (
            lambda: _transport(local_address="not-an-ip"),
            "local_address='not-an-ip' is invalid: expected a local IP address",
        ),
        (
            lambda: _transport(verify="/nonexistent/ca.pem"),
            "verify='/nonexistent/ca.pem' is invalid: no such file or directory",
        ),
        (lambda: _transport(verify=""), "verify='' is invalid: no such file or directory"),
        (
            lambda: _transport(cert=("/nonexistent/tls.crt", "/nonexistent/tls.key")),
            "cert=.* is invalid: no such file: '/nonexistent/tls.crt'",
        ),
    ],
)
def test_wrong_values_from_the_issue_name_option_value_and_what_is_allowed(
    build: Callable[[], object], message: str
) -> None:
    """The values that used to fail deep inside (or never) now fail at construction, clearly."""
    with pytest.raises(ConfigurationError, match=message):
        build()


@pytest.mark.parametrize(
    "option",
    [
        {"algorithm": "random"},
        {"source": StaticSource()},
        {"fallback": "none"},
        {"algorithm_options": {}},
        {"rng": random.Random(1)},
    ],
)
def test_options_beside_a_load_balancer_are_refused(option: dict[str, Any]) -> None:
    """BalancedTransport(lb, algorithm=...) used to ignore the option silently; now it says where it belongs."""
    lb = LoadBalancer(SERVICE, source=StaticSource())
    (name,) = option
    with pytest.raises(
        ConfigurationError, match=re.escape(f"LoadBalancer and {name}: these belong to the LoadBalancer")
    ):
        BalancedTransport(lb, **option)
    assert BalancedTransport(lb, clock=lambda: 0.0).balancer is lb  # the transport's own options still go


@pytest.mark.parametrize(
    ("build", "option"),
    [
        (lambda v: RetryPolicy(budget_percent=v), "RetryPolicy budget_percent"),
        (lambda v: HedgePolicy(budget_percent=v), "HedgePolicy budget_percent"),
        (lambda v: RetryBudget(v), "RetryBudget percent"),
    ],
)
@pytest.mark.parametrize(
    ("value", "hint"), [(5, "0.05 means 5%"), (1.5, "0.015 means 1.5%"), (100, "1 means 100%")]
)
def test_a_percentage_given_for_a_fraction_says_how_to_write_it(
    build: Callable[[float], object], option: str, value: float, hint: str
) -> None:
    """budget_percent=5 (meaning 5%) is refused with the fraction to write instead."""
    with pytest.raises(ConfigurationError) as refused:
        build(value)
    word = option.rsplit(" ", 1)[1]
    assert str(refused.value) == (
        f"{option}={value!r} is invalid: expected a finite number in [0.0, 1.0] ({word} is a fraction: {hint})"
    )


@pytest.mark.parametrize("value", [1, 0.5, 100.5, 150, -5, math.inf, math.nan, True])
def test_no_fraction_hint_where_the_value_is_no_percentage(value: float) -> None:
    """Values in range pass; out of range but no percentage (above 100, negative, not a finite
    number, a bool) are refused without the hint."""
    if 0 <= value <= 1 and not isinstance(value, bool):
        assert RetryPolicy(budget_percent=value).budget_percent == value
        return
    with pytest.raises(ConfigurationError) as refused:
        RetryPolicy(budget_percent=value)
    assert "fraction" not in str(refused.value)
