"""The pure slice merge, from the shapes in tests/fixtures/k8s and hand-made edge cases."""

from __future__ import annotations

import copy
import json
import logging
import pathlib
import socket
from typing import Any

import pytest

from kube_balance import ConfigurationError, Endpoint
from kube_balance.discovery import merge_slices
from kube_balance.discovery.kubernetes._incremental import SliceMerger
from kube_balance.discovery.kubernetes._legacy import endpoints_to_slices
from kube_balance.discovery.kubernetes._merge import parse_slice

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "k8s"


def load(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def slice_(
    name: str, *eps: dict[str, Any], ports: Any = None, family: str = "IPv4", svc: str = "web", rv: str = "1"
):
    return {
        "metadata": {"name": name, "resourceVersion": rv, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": family,
        "endpoints": list(eps) if eps else None,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}] if ports is None else ports,
    }


def ep(address: str, **conditions: Any) -> dict[str, Any]:
    return {"addresses": [address], "conditions": conditions}


def by_key(snapshot: Any) -> dict[str, Endpoint]:
    return {e.key: e for e in snapshot}


def test_example_slice_conditions_zones_hints_and_pods() -> None:
    """The example slice gives three endpoints with their conditions, zone, node, pod and hints."""
    snap = merge_slices([load("endpointslice.json")], "http")
    eps = by_key(snap)
    assert set(eps) == {"10.244.1.17:8080", "10.244.2.9:8080", "10.244.3.4:8080"}
    ready = eps["10.244.1.17:8080"]
    assert (ready.ready, ready.serving, ready.terminating) == (True, True, False)
    assert (ready.zone, ready.node_name, ready.pod_name) == ("us-east-1a", "node-a", "web-6d5f8c7b9-abcde")
    assert ready.zone_hints == frozenset({"us-east-1a"})
    term = eps["10.244.2.9:8080"]
    assert (term.ready, term.serving, term.terminating) == (False, True, True)
    dead = eps["10.244.3.4:8080"]
    assert (dead.ready, dead.serving, dead.zone_hints) == (False, False, frozenset())
    assert snap.counts() == {"total": 3, "ready": 1, "serving_terminating": 1, "not_ready": 1}


def test_node_hints_for_prefer_same_node() -> None:
    """hints.forNodes (trafficDistribution: PreferSameNode) becomes node_hints; malformed ones are dropped."""
    hinted = {
        **ep("10.0.0.1"),
        "hints": {"forZones": [{"name": "a"}], "forNodes": [{"name": "n1"}, {"x": 1}]},
    }
    bad = {**ep("10.0.0.2"), "hints": {"forNodes": "n2"}}
    eps = by_key(merge_slices([slice_("web-1", hinted, bad)], "http"))
    assert (eps["10.0.0.1:8080"].node_hints, eps["10.0.0.1:8080"].zone_hints) == ({"n1"}, {"a"})
    assert eps["10.0.0.2:8080"].node_hints == frozenset()


def test_dual_stack_list_uses_one_family_by_default() -> None:
    """The dual-stack list merges to the IPv4 endpoints only, unless another family is asked for."""
    items = load("list.json")["items"]
    assert {e.family for e in merge_slices(items, "http")} == {4}
    v6 = merge_slices(items, "http", address_family=6)
    assert {e.key for e in v6} == {
        "[fd00:10:244:1::11]:8080",
        "[fd00:10:244:2::9]:8080",
        "[fd00:10:244:3::4]:8080",
    }
    assert len(merge_slices(items, "http", address_family=socket.AF_INET6)) == 3
    assert len(merge_slices(items, "http", address_family=0)) == 6


def test_auto_family_falls_back_to_ipv6_when_no_ipv4() -> None:
    """An IPv6-only Service gives its IPv6 endpoints under the default 'auto' family."""
    items = [s for s in load("list.json")["items"] if s["addressType"] == "IPv6"]
    assert {e.family for e in merge_slices(items, "http")} == {6}


def test_rolling_update_stream_applied_in_order() -> None:
    """Replaying the example watch stream through the merger ends with the one surviving pod."""
    merger = SliceMerger("http", service="web")
    merger.reset(load("list.json")["items"])
    seen = []
    for line in (EXAMPLES / "watch-rolling-update.jsonl").read_text().splitlines():
        event = json.loads(line)
        obj = event["object"]
        if event["type"] in ("ADDED", "MODIFIED"):
            merger.upsert(obj)
        elif event["type"] == "DELETED":
            merger.remove(obj["metadata"]["name"])
        seen.append(sorted(merger.merged()))
    assert "10.244.4.2:8080" in seen[4]  # the ADDED slice joined
    assert seen[-1] == ["10.244.3.4:8080"]  # after the DELETED of that slice: only the survivor
    final = merger.merged()["10.244.3.4:8080"]
    assert final.ready and final.zone_hints == frozenset({"us-east-1c"})


def test_nil_conditions_take_kubernetes_defaults() -> None:
    """ready nil = true, serving nil = true, terminating nil = false; a missing conditions map too."""
    bare = {"addresses": ["10.0.0.2"]}
    snap = merge_slices([slice_("a", ep("10.0.0.1"), bare, ep("10.0.0.3", ready=False))], "http")
    eps = by_key(snap)
    for key in ("10.0.0.1:8080", "10.0.0.2:8080"):
        assert (eps[key].ready, eps[key].serving, eps[key].terminating) == (True, True, False)
    assert (eps["10.0.0.3:8080"].ready, eps["10.0.0.3:8080"].serving) == (False, True)


def test_dedupe_across_slices_prefers_ready_copy() -> None:
    """An endpoint in two slices appears once, and the ready copy wins whichever slice it is in."""
    a = slice_("a", ep("10.0.0.1", ready=False))
    b = slice_("b", ep("10.0.0.1", ready=True), ep("10.0.0.2"))
    for order in ([a, b], [b, a]):
        snap = merge_slices(order, "http")
        assert len(snap) == 2
        assert by_key(snap)["10.0.0.1:8080"].ready


def test_same_address_different_ports_are_two_endpoints() -> None:
    """Dedupe is by (address, port): a named port mapped to two numbers gives two endpoints."""
    a = slice_("a", ep("10.0.0.1"), ports=[{"name": "http", "port": 8080}])
    b = slice_("b", ep("10.0.0.1"), ports=[{"name": "http", "port": 9090}])
    assert by_key(merge_slices([a, b], "http")).keys() == {"10.0.0.1:8080", "10.0.0.1:9090"}


def test_named_port_resolved_per_slice() -> None:
    """The same port name maps to each slice's own number; other names and UDP are ignored."""
    a = slice_("a", ep("10.0.0.1"), ports=[{"name": "metrics", "port": 9100}, {"name": "http", "port": 8080}])
    b = slice_("b", ep("10.0.0.2"), ports=[{"name": "http", "port": 8443}])
    c = slice_("c", ep("10.0.0.3"), ports=[{"name": "http", "port": 53, "protocol": "UDP"}])
    assert set(by_key(merge_slices([a, b, c], "http"))) == {"10.0.0.1:8080", "10.0.0.2:8443"}
    assert set(by_key(merge_slices([a, b, c], "metrics"))) == {"10.0.0.1:9100"}


def test_numeric_port_matches_number_else_single_port() -> None:
    """A port number matches a slice port number; a slice with one port serves any number."""
    two = slice_("a", ep("10.0.0.1"), ports=[{"name": "a", "port": 8080}, {"name": "b", "port": 9090}])
    one = slice_("b", ep("10.0.0.2"), ports=[{"name": "", "port": 8080}])
    assert set(by_key(merge_slices([two, one], 9090))) == {"10.0.0.1:9090", "10.0.0.2:8080"}
    assert set(by_key(merge_slices([two], 80))) == set()  # ambiguous: two ports, none is 80


def test_unnamed_port_matches_empty_name() -> None:
    """A Service's single unnamed port has name "" in slices and matches the port name ""."""
    s = slice_("a", ep("10.0.0.1"), ports=[{"name": "", "port": 8080, "protocol": "TCP"}])
    assert [e.key for e in merge_slices([s], "")] == ["10.0.0.1:8080"]


def test_null_endpoints_and_null_ports() -> None:
    """endpoints: null is an empty slice; ports: null contributes nothing and does not raise."""
    assert len(merge_slices([slice_("a")], "http")) == 0
    assert len(merge_slices([slice_("a", ep("10.0.0.1"), ports=None) | {"ports": None}], "http")) == 0


def test_fqdn_slice_skipped_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    """An FQDN slice is skipped and logged; the IP slices still merge."""
    fqdn = slice_("f", {"addresses": ["pod.example.com"]}, family="FQDN")
    with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
        snap = merge_slices([fqdn, slice_("a", ep("10.0.0.1"))], "http")
    assert [e.key for e in snap] == ["10.0.0.1:8080"]
    assert "FQDN" in caplog.text


def test_malformed_entries_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """Bad addresses, missing addresses and wrong-family addresses are skipped, the rest kept."""
    s = slice_("a", ep("not-an-ip"), {"conditions": {}}, ep("fd00::1"), ep("10.0.0.1"), {"addresses": []})
    with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
        snap = merge_slices([s], "http")
    assert [e.key for e in snap] == ["10.0.0.1:8080"]
    assert "not-an-ip" in caplog.text


def test_service_label_change_leaves_the_set() -> None:
    """A slice whose service-name label points elsewhere is left out when the service is given."""
    moved = slice_("a", ep("10.0.0.1"), svc="other")
    assert len(merge_slices([moved, slice_("b", ep("10.0.0.2"))], "http", service="web")) == 1
    merger = SliceMerger("http", service="web")
    merger.upsert(slice_("a", ep("10.0.0.1")))
    assert len(merger.merged()) == 1
    merger.upsert(slice_("a", ep("10.0.0.1"), svc="other", rv="2"))
    assert merger.merged() == {}


def test_merger_reparses_only_changed_slices() -> None:
    """A reset with an unchanged (name, resourceVersion) reuses the parsed endpoints, same objects."""
    merger = SliceMerger("http")
    a, b = slice_("a", ep("10.0.0.1"), rv="5"), slice_("b", ep("10.0.0.2"), rv="6")
    merger.reset([a, b])
    before = merger.merged()
    b2 = slice_("b", ep("10.0.0.2", ready=False), rv="9")
    merger.reset([copy.deepcopy(a), b2])
    after = merger.merged()
    assert after["10.0.0.1:8080"] is before["10.0.0.1:8080"]
    assert not after["10.0.0.2:8080"].ready


def test_remove_and_resource_version_passthrough() -> None:
    """DELETED removes a slice by name; merge_slices passes the resourceVersion to the snapshot."""
    merger = SliceMerger("http")
    merger.upsert(slice_("a", ep("10.0.0.1")))
    merger.remove("a")
    merger.remove("never-seen")
    assert merger.merged() == {}
    assert merge_slices([], "http", resource_version="42").resource_version == "42"


@pytest.mark.parametrize("bad", ["ipv4", 5, True, None])
def test_bad_address_family_is_a_configuration_error(bad: Any) -> None:
    """An address family other than auto/4/6/0 raises ConfigurationError naming the value."""
    with pytest.raises(ConfigurationError, match="address_family"):
        merge_slices([], "http", address_family=bad)


def test_parse_slice_ipv6_keys_and_targetref_kinds() -> None:
    """IPv6 keys are bracketed and normalised; a non-Pod targetRef gives no pod name."""
    s = slice_("v6", {"addresses": ["FD00::0:1"], "targetRef": {"kind": "Node", "name": "n"}}, family="IPv6")
    parsed = parse_slice(s, "http")
    assert list(parsed.endpoints) == ["[fd00::1]:8080"]
    assert parsed.endpoints["[fd00::1]:8080"].pod_name is None


def test_legacy_endpoints_become_slices() -> None:
    """A core/v1 Endpoints object maps to per-family slices: addresses ready, notReady not ready."""
    obj = {
        "metadata": {"name": "web", "resourceVersion": "7"},
        "subsets": [
            {
                "addresses": [
                    {"ip": "10.0.0.1", "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "p1"}}
                ],
                "notReadyAddresses": [{"ip": "10.0.0.2"}, {"ip": "fd00::2"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            },
            {"addresses": [{"ip": "10.0.0.3"}], "ports": [{"name": "http", "port": 9090}]},
        ],
    }
    slices = endpoints_to_slices(obj, "web")
    assert sorted(s["metadata"]["name"] for s in slices) == ["web/0/IPv4", "web/0/IPv6", "web/1/IPv4"]
    eps = by_key(merge_slices(slices, "http", service="web"))
    assert set(eps) == {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:9090"}
    assert eps["10.0.0.1:8080"].ready and eps["10.0.0.1:8080"].pod_name == "p1"
    assert not eps["10.0.0.2:8080"].ready
    assert endpoints_to_slices({"metadata": {"name": "web"}, "subsets": None}, "web") == []
