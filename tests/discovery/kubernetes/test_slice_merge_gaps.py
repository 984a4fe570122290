"""Slice parsing details: reusing unchanged entries, malformed slices, family and port picking."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from kube_balance.discovery import merge_slices
from kube_balance.discovery.kubernetes._merge import (
    effective_family,
    object_name_of,
    parse_slice,
    slice_identity,
    union,
)


def slice_(
    name: str, *eps: dict[str, Any], rv: str = "1", port: int = 8080, family: str = "IPv4"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": rv, "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": family,
        "endpoints": list(eps),
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def ep(address: str, **conditions: Any) -> dict[str, Any]:
    return {"addresses": [address], "conditions": conditions}


def test_next_version_reuses_the_endpoint_of_every_unchanged_entry() -> None:
    """Parsing a slice's next version with ``previous`` keeps the same Endpoint objects for unchanged entries."""
    first = parse_slice(slice_("a", ep("10.0.0.1"), ep("10.0.0.2"), rv="1"), "http")
    changed = slice_("a", ep("10.0.0.1"), ep("10.0.0.2", ready=False), ep("10.0.0.3"), rv="2")
    second = parse_slice(copy.deepcopy(changed), "http", previous=first)
    assert second.endpoints["10.0.0.1:8080"] is first.endpoints["10.0.0.1:8080"]
    assert second.endpoints["10.0.0.2:8080"] is not first.endpoints["10.0.0.2:8080"]
    assert not second.endpoints["10.0.0.2:8080"].ready and second.endpoints["10.0.0.3:8080"].ready
    assert second.resource_version == "2" and set(second.memo) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    # Without ``previous`` every entry is parsed again: equal, but new objects.
    fresh = parse_slice(changed, "http")
    assert fresh.endpoints["10.0.0.1:8080"] == first.endpoints["10.0.0.1:8080"]
    assert fresh.endpoints["10.0.0.1:8080"] is not first.endpoints["10.0.0.1:8080"]


def test_unchanged_entry_under_a_new_port_is_parsed_again() -> None:
    """The same entry with the slice's port changed is a new Endpoint on the new port."""
    first = parse_slice(slice_("a", ep("10.0.0.1"), port=8080), "http")
    second = parse_slice(slice_("a", ep("10.0.0.1"), port=9090, rv="2"), "http", previous=first)
    assert list(second.endpoints) == ["10.0.0.1:9090"]


def test_malformed_slice_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A slice with a field of the wrong JSON type is logged by name and contributes nothing."""
    bad = slice_("broken", ep("10.0.0.1"))
    bad["metadata"]["labels"] = "not-a-mapping"
    with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
        parsed = parse_slice(bad, "http", service="web")
    assert (parsed.name, parsed.family, dict(parsed.endpoints)) == ("broken", None, {})
    records = [r for r in caplog.records if "skipping malformed EndpointSlice broken" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
        snap = merge_slices([bad, slice_("ok", ep("10.0.0.2"))], "http", service="web")
    assert [e.key for e in snap] == ["10.0.0.2:8080"]


@pytest.mark.parametrize(
    ("obj", "identity"),
    [
        ({"metadata": {"name": "a", "resourceVersion": "7"}}, ("a", "7")),
        ({"metadata": {"name": 5, "resourceVersion": 7}}, ("5", None)),
        ({"metadata": {}}, ("", None)),
        ({"metadata": "x"}, ("", None)),
        ("not a slice", ("", None)),
    ],
)
def test_slice_identity_never_raises(obj: object, identity: tuple[str, str | None]) -> None:
    """Name and resourceVersion of anything: strings when present, "" and None otherwise."""
    assert slice_identity(obj) == identity
    assert object_name_of(obj) == identity[0]


def test_unknown_address_type_and_unmatched_port_are_skipped_with_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An addressType other than IPv4/IPv6, or no TCP port matching, contributes nothing, logged."""
    with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
        odd = parse_slice(slice_("odd", ep("10.0.0.1"), family="Mystery"), "http")
        unmatched = parse_slice(slice_("np", ep("10.0.0.1")), "grpc")
        empty_unmatched = parse_slice(slice_("none"), "grpc")
    assert odd.family is None and not odd.endpoints
    assert unmatched.family == 4 and not unmatched.endpoints
    assert not empty_unmatched.endpoints
    assert "addressType 'Mystery'" in caplog.text
    odd_records = [r for r in caplog.records if "EndpointSlice odd" in r.getMessage()]
    assert len(odd_records) == 1  # skipped whole: its entries are not looked at one by one
    assert "EndpointSlice np has no TCP port matching 'grpc'" in caplog.text
    assert "EndpointSlice none" not in caplog.text  # an empty slice without the port is not news


def test_udp_ports_are_not_matched() -> None:
    """Only TCP ports count: a UDP port of the same name or number is ignored."""
    obj = slice_("a", ep("10.0.0.1"))
    obj["ports"] = [{"name": "http", "port": 53, "protocol": "UDP"}, {"name": "http", "port": 8080}]
    assert list(parse_slice(obj, "http").endpoints) == ["10.0.0.1:8080"]
    obj["ports"] = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    assert not parse_slice(obj, 53).endpoints


def test_numeric_port_with_several_ports_needs_an_exact_match() -> None:
    """A number matches a target port exactly; with two ports and no match nothing is guessed."""
    obj = slice_("a", ep("10.0.0.1"))
    obj["ports"] = [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]
    assert list(parse_slice(obj, 9090).endpoints) == ["10.0.0.1:9090"]
    assert not parse_slice(obj, 80).endpoints
    obj["ports"] = [{"name": "http", "port": "8080"}]  # a string port number is malformed
    assert not parse_slice(obj, "http").endpoints


def test_family_selection() -> None:
    """auto prefers IPv4 when any is offered, else IPv6; an explicit family is kept as given."""
    assert effective_family([6, 4], None) == 4
    assert effective_family([6, None], None) == 6
    assert effective_family([], None) == 6
    assert effective_family([4], 6) == 6
    assert effective_family([4], 0) == 0


def test_union_of_both_families_and_of_one() -> None:
    """family 0 merges IPv4 and IPv6 slices; 4 or 6 keeps only that family's slices."""
    v4 = parse_slice(slice_("a", ep("10.0.0.1")), "http")
    v6 = parse_slice(slice_("b", ep("fd00::1"), family="IPv6"), "http")
    slices = {"a": v4, "b": v6}
    assert set(union(slices, 0)) == {"10.0.0.1:8080", "[fd00::1]:8080"}
    assert set(union(slices, 4)) == {"10.0.0.1:8080"}
    assert set(union(slices, 6)) == {"[fd00::1]:8080"}


def test_overlapping_slices_keep_the_first_unless_only_the_later_is_ready() -> None:
    """A key in two slices: the slice named first wins a tie; a ready copy beats a not-ready one."""
    a = parse_slice(slice_("a", ep("10.0.0.1", ready=False), ep("10.0.0.2", serving=False)), "http")
    b = parse_slice(slice_("b", ep("10.0.0.1"), ep("10.0.0.2", serving=True), ep("10.0.0.3")), "http")
    merged = union({"b": b, "a": a}, 4)
    assert merged["10.0.0.1:8080"] is b.endpoints["10.0.0.1:8080"]  # only b's copy is ready
    assert merged["10.0.0.2:8080"] is a.endpoints["10.0.0.2:8080"]  # both ready: a, named first
    assert set(merged) == {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}


def test_null_ports_are_an_empty_slice_not_a_malformed_one(caplog: pytest.LogCaptureFixture) -> None:
    """ports: null keeps the slice's family and version, with no 'malformed' warning."""
    obj = slice_("a", ep("10.0.0.1"), rv="4")
    obj["ports"] = None
    with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
        parsed = parse_slice(obj, "http")
    assert (parsed.family, parsed.resource_version, dict(parsed.endpoints)) == (4, "4", {})
    assert "malformed" not in caplog.text


def test_junk_in_the_port_list_is_ignored() -> None:
    """A port entry that is not a mapping is skipped; the good one still matches."""
    obj = slice_("a", ep("10.0.0.1"))
    obj["ports"] = ["junk", 7, {"name": "http", "port": 8080}]
    assert list(parse_slice(obj, "http").endpoints) == ["10.0.0.1:8080"]


def test_entry_fields_may_be_absent_or_null() -> None:
    """No conditions, targetRef or hints (absent or null): the defaults, nothing skipped."""
    bare = {"addresses": ["10.0.0.1"]}
    nulls = {"addresses": ["10.0.0.2"], "conditions": None, "targetRef": None, "hints": None}
    no_zones = {"addresses": ["10.0.0.3"], "hints": {"forZones": None}}
    parsed = parse_slice(slice_("a", bare, nulls, no_zones), "http")
    assert sorted(parsed.endpoints) == ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
    for endpoint in parsed.endpoints.values():
        assert (endpoint.ready, endpoint.serving, endpoint.terminating) == (True, True, False)
        assert endpoint.pod_name is None and endpoint.zone_hints == frozenset()


def test_first_address_of_an_entry_is_the_endpoint() -> None:
    """An entry with several addresses is one endpoint on its first address (as kube-proxy uses)."""
    parsed = parse_slice(slice_("a", {"addresses": ["10.0.0.1", "10.0.0.9"]}), "http")
    assert list(parsed.endpoints) == ["10.0.0.1:8080"]


def test_zone_hints_skip_entries_without_a_name() -> None:
    """forZones entries that are not mappings or have no name are ignored."""
    entry = {"addresses": ["10.0.0.1"], "hints": {"forZones": [{"name": "zone-a"}, "zone-b", {"zone": "c"}]}}
    parsed = parse_slice(slice_("a", entry), "http")
    assert parsed.endpoints["10.0.0.1:8080"].zone_hints == frozenset({"zone-a"})


def test_address_of_the_other_family_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """An IPv6 address in an IPv4 slice is dropped and logged with the address."""
    with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
        parsed = parse_slice(slice_("a", ep("fd00::1"), ep("10.0.0.1")), "http")
    assert list(parsed.endpoints) == ["10.0.0.1:8080"]
    assert "skipping address fd00::1 of the other family" in caplog.text
