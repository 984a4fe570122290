"""parse_host: which request hosts name a Service in cluster mode (examples and a hypothesis fuzz)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_balance._cluster_options import parse_host

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
