"""Hypothesis-generated slice sets: dedupe, nil-default conditions, per-slice ports, incremental = batch."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kube_balance.discovery import merge_slices
from kube_balance.discovery.kubernetes._incremental import SliceMerger

V4 = [f"10.0.0.{i}" for i in range(1, 7)]
V6 = [f"fd00::{i}" for i in range(1, 4)]
COND = st.sampled_from([None, True, False])
PORT_NAMES = st.sampled_from(["http", "grpc", ""])


@st.composite
def endpoint_entries(draw: st.DrawFn, family: str) -> dict[str, Any]:
    address = draw(st.sampled_from(V4 if family == "IPv4" else V6))
    conditions = {k: v for k in ("ready", "serving", "terminating") if (v := draw(COND)) is not None}
    entry: dict[str, Any] = {"addresses": [address]}
    if draw(st.booleans()):
        entry["conditions"] = conditions
    return entry


@st.composite
def slices(draw: st.DrawFn) -> dict[str, Any]:
    family = draw(st.sampled_from(["IPv4", "IPv6"]))
    names = draw(st.lists(PORT_NAMES, min_size=0, max_size=2, unique=True))
    ports = [{"name": n, "port": draw(st.integers(8000, 8003)), "protocol": "TCP"} for n in names]
    eps = draw(st.lists(endpoint_entries(family), max_size=5))
    return {
        "metadata": {
            "name": draw(st.sampled_from(["s-a", "s-b", "s-c", "s-d"])),
            "resourceVersion": str(draw(st.integers(1, 10**6))),
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": family,
        "endpoints": eps or None,
        "ports": ports,
    }


def unique_by_name(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({s["metadata"]["name"]: s for s in items}.values())


def oracle(items: list[dict[str, Any]], port: str, family: int) -> dict[str, bool]:
    """Key -> ready, computed the slow, obvious way from the API semantics."""
    out: dict[str, bool] = {}
    for s in items:
        if (s["addressType"] == "IPv4") != (family == 4):
            continue
        numbers = [p["port"] for p in s["ports"] if p["name"] == port]
        if not numbers:
            continue
        for e in s["endpoints"] or ():
            ready = (e.get("conditions") or {}).get("ready")
            host = e["addresses"][0]
            key = f"[{host}]:{numbers[0]}" if ":" in host else f"{host}:{numbers[0]}"
            out[key] = out.get(key, False) or ready is not False
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(slices(), max_size=6).map(unique_by_name), PORT_NAMES, st.sampled_from([4, 6]))
def test_merge_matches_oracle(items: list[dict[str, Any]], port: str, family: int) -> None:
    """Each (address, port) appears once, ready if any copy is ready (nil = ready), per-slice port."""
    snap = merge_slices(items, port, address_family=family)
    assert len(snap.keys) == len(snap)
    assert {e.key: e.ready for e in snap} == oracle(items, port, family)
    for e in snap:
        assert e.family == family


@settings(max_examples=200, deadline=None)
@given(st.lists(slices(), max_size=6).map(unique_by_name))
def test_serving_and_terminating_take_nil_defaults(items: list[dict[str, Any]]) -> None:
    """For endpoints found in a single slice, serving nil = true and terminating nil = false."""
    counts: dict[str, int] = {}
    for s in items:
        for e in s["endpoints"] or ():
            counts[e["addresses"][0]] = counts.get(e["addresses"][0], 0) + 1
    snap = merge_slices(items, "http", address_family=0)
    for s in items:
        for e in s["endpoints"] or ():
            cond = e.get("conditions") or {}
            match = [x for x in snap if x.address == e["addresses"][0]]
            if counts[e["addresses"][0]] != 1 or not match:
                continue
            assert match[0].serving is (cond.get("serving") is not False)
            assert match[0].terminating is (cond.get("terminating") is True)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["upsert", "delete", "relist"]), slices()), max_size=14),
    st.sampled_from(["auto", 0, 4, 6]),
)
def test_incremental_updates_equal_batch_merge(ops: list[tuple[str, dict[str, Any]]], family: Any) -> None:
    """Any sequence of upserts, deletes and relists gives the batch merge's set, and flags exactly the changes."""
    merger = SliceMerger("http", address_family=family)
    state: dict[str, dict[str, Any]] = {}
    before: dict[str, Any] = {}
    for i, (op, s) in enumerate(ops):
        s["metadata"]["resourceVersion"] = str(i)  # as on the API: a new content has a new RV
        name = s["metadata"]["name"]
        if op == "delete":
            merger.remove(name)
            state.pop(name, None)
        elif op == "upsert":
            merger.upsert(s)
            state[name] = s
        else:
            merger.reset(list(state.values()))
        batch = {e.key: e for e in merge_slices(list(state.values()), "http", address_family=family)}
        assert merger.merged() == batch
        assert merger.take_changed() == (batch != before)
        before = batch


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.sampled_from(["10.0.0.1", "IPv4", "http"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def junk_slices(draw: st.DrawFn) -> Any:
    """A valid slice with one field (at any depth we model) replaced by arbitrary JSON."""
    s = draw(slices())
    where = draw(
        st.sampled_from(["root", "metadata", "labels", "endpoints", "entry", "conditions", "ports", "hints"])
    )
    junk = draw(JSON)
    if where == "root":
        return junk
    if where == "metadata":
        s["metadata"] = junk
    elif where == "labels":
        s["metadata"]["labels"] = junk
    elif where == "endpoints":
        s["endpoints"] = junk
    elif where == "ports":
        s["ports"] = junk
    elif s["endpoints"]:
        entry = s["endpoints"][0]
        if where == "entry":
            s["endpoints"][0] = junk
        elif where == "conditions":
            entry["conditions"] = junk
        else:
            entry["hints"] = {"forZones": junk}
    return s


@settings(max_examples=300, deadline=None)
@given(st.lists(junk_slices(), max_size=4))
def test_malformed_slices_never_raise(items: list[Any]) -> None:
    """Slices with fields of the wrong JSON type are skipped or partly used, never raised, in both merges."""
    merge_slices(items, "http", service="web")
    merger = SliceMerger("http", service="web")
    for obj in items:
        merger.upsert(obj)
    merger.reset(items)
