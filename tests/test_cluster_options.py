"""Cluster mode's options: one cluster_spec() builds what both cluster() methods take, and every
wrong value is a ConfigurationError naming the option (a hypothesis fuzz)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_balance import ConfigurationError
from kube_balance._cluster_options import DEFAULT_SERVICE_REFRESH, ClusterSpec, check_options, cluster_spec

DEFAULTS: dict[str, Any] = {
    "namespaces": None,
    "namespace": None,
    "cluster_domain": "cluster.local",
    "idle_timeout": 600.0,
    "max_services": 100,
    "service_refresh": DEFAULT_SERVICE_REFRESH,
    "api_client": None,
    "kubeconfig": None,
    "context": None,
    "in_cluster": None,
}

ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


def test_the_spec_carries_every_option() -> None:
    """cluster_spec() puts each option where ClusterRoutes reads it."""
    spec = cluster_spec(**{**DEFAULTS, "namespaces": ["shop"], "service_refresh": 5, "kubeconfig": "k"})
    assert spec == ClusterSpec(
        None,
        ["shop"],
        "cluster.local",
        600.0,
        100,
        {**dict.fromkeys(("api_client", "kubeconfig", "context", "in_cluster")), "kubeconfig": "k"},
        5,
    )


@pytest.mark.parametrize("option", ["idle_timeout", "service_refresh", "max_services"])
@given(value=ANY)
def test_a_number_option_is_accepted_or_refused_by_name(option: str, value: Any) -> None:
    """Any value: accepted when a positive finite number (an int >= 1 for max_services), else a
    ConfigurationError naming the option."""
    spec = cluster_spec(**{**DEFAULTS, option: value})
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and math.isfinite(value) and value > 0
    if option == "max_services":
        ok = number and isinstance(value, int) and value >= 1
    if ok:
        check_options(spec, None, {})
    else:
        with pytest.raises(ConfigurationError, match=option):
            check_options(spec, None, {})
