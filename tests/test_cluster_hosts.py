"""Cluster mode's inputs: parse_host (which request hosts name a Service: examples and a
hypothesis fuzz), check_options (each option's limits, both sides) and ClusterSpec's defaults."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_balance import ConfigurationError
from kube_balance._cluster_options import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_SERVICES,
    DEFAULT_SERVICE_REFRESH,
    ClusterSpec,
    check_options,
    parse_host,
)

LABEL = st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
NS = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
DOMAIN = st.lists(NS, min_size=1, max_size=3).map(".".join)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("web", ("web", "mine")),
        ("web.", ("web", "mine")),
        ("web.shop", ("web", "shop")),
        ("web.shop.svc", ("web", "shop")),
        ("web.shop.svc.cluster.local", ("web", "shop")),
        ("WEB.Shop.SVC.Cluster.Local.", ("web", "shop")),
        ("web.shop.svc.other.domain", None),
        ("web.shop.pod", None),
        ("example.com", ("example", "com")),  # a Service named example in namespace com, if any
        ("www.example.com", None),
        ("localhost", None),
        ("localhost.shop", ("localhost", "shop")),
        ("10.0.0.1", None),
        ("::1", None),
        ("1web.shop", None),  # Service names are DNS-1035: a letter first
        ("web..shop", None),
        ("", None),
        (".", None),
        ("web.shop.svc.cluster.local..", None),
        ("-web", None),
        ("w" * 64, None),
    ],
)
def test_examples(host: str, expected: tuple[str, str] | None) -> None:
    """Every documented name form, and hosts that are not Services."""
    assert parse_host(host, namespace="mine") == expected


@given(name=LABEL, ns=NS, domain=DOMAIN, upper=st.booleans(), dot=st.booleans())
def test_every_form_of_a_service_name_parses_to_it(
    name: str, ns: str, domain: str, upper: bool, dot: bool
) -> None:
    """name.ns, name.ns.svc, name.ns.svc.<domain> (any case, trailing dot or not) name (name, ns);
    a bare name is in the client's namespace; another domain is not a Service."""
    forms = [f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{domain}"]
    for form in forms:
        host = (form.upper() if upper else form) + ("." if dot else "")
        assert parse_host(host, namespace="mine", cluster_domain=domain) == (name, ns)
    if name != "localhost":
        assert parse_host(name, namespace=ns) == (name, ns)
    assert parse_host(f"{name}.{ns}.svc.{domain}.x", namespace="mine", cluster_domain=domain) is None


@given(st.text(max_size=80))
def test_any_text_gives_a_valid_pair_or_none(host: str) -> None:
    """No input raises; an answer is always a DNS-1035 name and a DNS-1123 namespace."""
    result = parse_host(host, namespace="mine")
    if result is not None:
        name, ns = result
        assert parse_host(f"{name}.{ns}", namespace="other") == (name, ns)
        assert name[0].isalpha() and len(name) <= 63 and len(ns) <= 63
        assert all(c.isascii() and (c.isalnum() or c == "-") for c in name + ns)


@given(st.ip_addresses())
def test_ip_addresses_are_not_services(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """An IP address host is never a Service (IPv6 as httpx and yarl give it, without brackets)."""
    assert parse_host(str(address), namespace="mine") is None


# -- the options ----------------------------------------------------------------------------------
GOOD: dict[str, Any] = {
    "namespace": None,
    "namespaces": None,
    "cluster_domain": "cluster.local",
    "idle_timeout": 600.0,
    "max_services": 100,
    "clock": None,
    "balancer_options": {},
}


def check(**changes: Any) -> None:
    options = {**GOOD, **changes}
    clock, balancer_options = options.pop("clock"), options.pop("balancer_options")
    check_options(ClusterSpec(**options), clock, balancer_options)


def test_cluster_spec_defaults() -> None:
    """10 minutes idle, 100 Services, the cluster.local domain, the client's own namespace."""
    assert (DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SERVICES, DEFAULT_SERVICE_REFRESH) == (600.0, 100, 30.0)
    spec = ClusterSpec()
    assert spec.service_refresh == 30.0
    assert (spec.namespace, spec.namespaces, spec.cluster_domain, spec.idle_timeout, spec.max_services) == (
        None,
        None,
        "cluster.local",
        600.0,
        100,
    )
    assert spec.source_options == {} and spec.source_options is not ClusterSpec().source_options
    given_ = ClusterSpec("shop", ["a"], "corp.example", 5.0, 3, {"api_client": None})
    assert (given_.namespace, given_.namespaces, given_.cluster_domain) == ("shop", ["a"], "corp.example")
    assert (given_.idle_timeout, given_.max_services, given_.source_options) == (5.0, 3, {"api_client": None})


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"namespace": "shop"},
        {"namespace": "0-shop"},  # DNS-1123: a digit may come first
        {"namespaces": ["shop"]},
        {"namespaces": ("shop", "other")},
        {"namespaces": {"shop"}},
        {"namespaces": iter(["shop"])},
        {"cluster_domain": "local"},
        {"cluster_domain": "corp.example"},
        {"idle_timeout": 0.001},
        {"idle_timeout": 0.5},
        {"idle_timeout": 1},
        {"max_services": 1},
        {"clock": lambda: 0.0},
        {"balancer_options": {"algorithm": "least_request"}},
        {"balancer_options": {"algorithm": None}},
        {"service_refresh": 0.001},
        {"balancer_options": {"fallback": "service"}},  # what cluster mode does anyway
        {"balancer_options": {"source": None, "fallback": None}},
    ],
)
def test_allowed_options_pass(changes: dict[str, Any]) -> None:
    """The smallest allowed values and every allowed shape pass (None where None means 'default')."""
    check(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"namespace": "Shop"}, "cluster namespace='Shop' is invalid: expected a namespace name"),
        ({"namespace": ""}, "cluster namespace='' is invalid"),
        ({"namespace": 5}, "cluster namespace=5 is invalid"),
        ({"namespaces": "shop"}, "cluster namespaces='shop' is invalid: expected a list of namespace names"),
        ({"namespaces": b"shop"}, "cluster namespaces=b'shop' is invalid"),
        ({"namespaces": 5}, "cluster namespaces=5 is invalid: expected a list"),
        ({"namespaces": []}, r"cluster namespaces=\[\] is invalid: expected a non-empty list"),
        ({"namespaces": ["Shop"]}, r"cluster namespaces=\['Shop'\] is invalid: expected a non-empty list"),
        ({"namespaces": ["shop", 5]}, r"cluster namespaces=\['shop', 5\] is invalid"),
        ({"cluster_domain": ""}, "cluster cluster_domain='' is invalid: expected a DNS name"),
        ({"cluster_domain": "bad domain"}, "cluster cluster_domain='bad domain' is invalid"),
        ({"cluster_domain": "cluster..local"}, "cluster cluster_domain='cluster..local' is invalid"),
        ({"cluster_domain": None}, "cluster cluster_domain=None is invalid"),
        ({"idle_timeout": 0}, "cluster idle_timeout=0 is invalid: expected a finite number of seconds > 0"),
        ({"idle_timeout": -1.0}, "cluster idle_timeout=-1.0 is invalid"),
        ({"idle_timeout": "10"}, "cluster idle_timeout='10' is invalid"),
        ({"max_services": 0}, r"cluster max_services=0 is invalid: expected an int >= 1"),
        ({"max_services": 1.0}, r"cluster max_services=1.0 is invalid"),
        ({"clock": "monotonic"}, "cluster clock='monotonic' is invalid"),
        ({"balancer_options": {"algorithm": object}}, "cluster algorithm=<class 'object'> is invalid"),
        (
            {"service_refresh": 0},
            "cluster service_refresh=0 is invalid: expected a finite number of seconds > 0",
        ),
        ({"service_refresh": -0.5}, r"cluster service_refresh=-0.5 is invalid"),
        (
            {"balancer_options": {"source": "service"}},
            "cluster source='service' is invalid: cluster mode watches",
        ),
        (
            {"balancer_options": {"fallback": "none"}},
            "cluster fallback='none' is invalid: cluster mode watches",
        ),
        ({"balancer_options": {"fallback": "10.0.0.1:80"}}, "cluster fallback='10.0.0.1:80' is invalid"),
        (
            {"balancer_options": {"algorithm": "round_robbin"}},
            "cluster algorithm='round_robbin' is invalid: expected one of least_request, maglev, ",
        ),
    ],
)
def test_each_wrong_option_is_named_with_its_value(changes: dict[str, Any], message: str) -> None:
    """A wrong cluster option is a ConfigurationError naming the option, the value and what is allowed."""
    with pytest.raises(ConfigurationError, match=f"^{message}"):
        check(**changes)


OPTION_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.text(max_size=8) | st.integers(), max_size=3),
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "namespace": OPTION_VALUES,
            "namespaces": OPTION_VALUES,
            "cluster_domain": OPTION_VALUES,
            "idle_timeout": OPTION_VALUES,
            "max_services": OPTION_VALUES,
        },
    )
)
def test_any_options_pass_or_raise_configuration_error_naming_one(changes: dict[str, Any]) -> None:
    """Fuzzed options: accepted, or a ConfigurationError naming one of the options changed."""
    try:
        check(**changes)
    except ConfigurationError as exc:
        message = str(exc)
    else:
        return
    named = re.match(r"cluster (\w+)=", message)
    assert named is not None and named.group(1) in changes, message
