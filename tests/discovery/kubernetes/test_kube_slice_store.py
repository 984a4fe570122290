"""SliceStore: the watch's pure state, fed the example list and watch stream line by line."""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_balance import DiscoveryUnavailable
from kube_balance.discovery.kubernetes._slicestore import SliceStore
from kube_balance.discovery.kubernetes._status import ENDPOINT_SLICES, ENDPOINTS, Expired

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "k8s"


def listed() -> SliceStore:
    store = SliceStore("shop", "web", ENDPOINT_SLICES)
    body = json.loads((EXAMPLES / "list.json").read_text())
    store.replace(body["items"], body["metadata"]["resourceVersion"])
    return store


def test_replay_rolling_update_stream() -> None:
    """Events touch their slice, bookmarks only move the RV, DELETED removes the slice."""
    store = listed()
    assert set(store.slices) == {"web-7vzhx", "web-jcv8s"} and store.resource_version == "4711050"
    touched = [store.apply_line(line.encode()) for line in (EXAMPLES / "watch-rolling-update.jsonl").open()]
    assert touched[0] == {"web-7vzhx"} and touched[4] == {"web-2qv8m"}
    assert touched[5] is None and touched[-1] is None  # bookmarks: nothing to push
    assert touched[6] == {"web-2qv8m"} and "web-2qv8m" not in store.slices
    assert store.resource_version == "4712555"


def test_error_410_event_raises_expired() -> None:
    """The example in-stream ERROR 410 raises Expired (relist) and leaves the state alone."""
    store = listed()
    status = json.loads((EXAMPLES / "status-410.json").read_text())
    with pytest.raises(Expired, match="410"):
        store.apply_line(json.dumps({"type": "ERROR", "object": status}).encode())
    assert store.resource_version == "4711050"


def test_other_error_events_are_retryable() -> None:
    """An ERROR event with another code is a DiscoveryUnavailable (retried after backoff)."""
    with pytest.raises(DiscoveryUnavailable, match="500"):
        listed().apply_line(b'{"type": "ERROR", "object": {"code": 500, "message": "etcd timeout"}}')


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[]",
        b'{"type": "ADDED"}',
        b'{"type": "ADDED", "object": {"metadata": {"name": "x", "resourceVersion": 5}}}',
        b'{"type": "ADDED", "object": {"metadata": {"resourceVersion": "9"}}}',
        b'{"type": "WEIRD", "object": {"metadata": {"name": "x", "resourceVersion": "9"}}}',
    ],
)
def test_malformed_lines_are_skipped(line: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """A malformed or unknown event is logged, changes nothing and does not move the RV."""
    store = listed()
    with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
        assert store.apply_line(line) is None
    assert store.resource_version == "4711050" and len(store.slices) == 2
    assert "skipping" in caplog.text


def test_legacy_endpoints_object_replaces_its_derived_slices() -> None:
    """In legacy mode one Endpoints object maps to several slices, all replaced on each event."""
    store = SliceStore("shop", "web", ENDPOINTS, legacy=True)
    ep = {
        "metadata": {"name": "web", "resourceVersion": "1"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}],
    }
    store.replace([ep], "1")
    assert set(store.slices) == {"web/0/IPv4", "web/0/IPv6"}
    ep2 = {
        "metadata": {"name": "web", "resourceVersion": "2"},
        "subsets": [{"addresses": [{"ip": "10.0.0.2"}]}],
    }
    touched = store.apply_line(json.dumps({"type": "MODIFIED", "object": ep2}).encode())
    assert touched == {"web/0/IPv4", "web/0/IPv6"} and set(store.slices) == {"web/0/IPv4"}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "OTHER", None]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=4),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["metadata", "name", "resourceVersion", "labels", "x"]), inner, max_size=4
            )
        ),
        max_leaves=10,
    ),
)
def test_arbitrary_events_never_raise(kind: Any, obj: Any) -> None:
    """Any non-ERROR event, however malformed, is applied or skipped, never raised."""
    store = listed()
    store.apply_line(json.dumps({"type": kind, "object": obj}).encode())
    assert isinstance(store.resource_version, str)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=4) | st.sampled_from(["10.0.0.1", "fd00::1"]),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["subsets", "addresses", "notReadyAddresses", "ip", "ports", "metadata"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_arbitrary_legacy_events_never_raise(obj: Any) -> None:
    """In legacy mode, any Endpoints-shaped junk is applied or skipped, never raised."""
    store = SliceStore("shop", "web", ENDPOINTS, legacy=True)
    store.replace([], "1")
    if isinstance(obj, dict):
        obj["metadata"] = {"name": "web", "resourceVersion": "2"}
    store.apply_line(json.dumps({"type": "MODIFIED", "object": obj}).encode())
