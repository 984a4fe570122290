"""KubernetesSource against the fake apiserver: list, pages, watch, clean end, bookmarks, 410 relists."""

from __future__ import annotations

from typing import Any

from helpers_kube_discovery import Sink, Sleeper, make_source, requests, running, until

from kube_balance.testing import Fault, endpoint_slice, slice_endpoint

SVC = "web.shop:http"


def web(*endpoints: Any, name: str = "web-a", **kw: Any) -> dict[str, Any]:
    return endpoint_slice("web", "shop", name=name, endpoints=endpoints, **kw)


async def test_list_then_watch_from_list_resource_version(api: Any, client: Any, sleeper: Sleeper) -> None:
    """One list by service-name label, then a watch from the list's RV with bookmarks and a 300-600 s timeout."""
    api.apply(web("10.0.0.1", slice_endpoint("10.0.0.2", ready=False)))
    api.apply(endpoint_slice("other", "shop", endpoints=["10.9.9.9"]))  # another Service: not ours
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await sink.wait_keys("10.0.0.1:8080", "10.0.0.2:8080")
        await until(lambda: len(requests(api, "watch")) == 1)
        listed, watch = requests(api, "list")[0], requests(api, "watch")[0]
        assert listed.path == "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices"
        assert listed.query["labelSelector"] == "kubernetes.io/service-name=web"
        assert watch.query["resourceVersion"] == sink.snapshots[0].resource_version == source.resource_version
        assert watch.query["allowWatchBookmarks"].lower() == "true"
        assert 300 <= int(watch.query["timeoutSeconds"]) <= 600
        assert {e.address: e.ready for e in sink.snapshots[0]} == {"10.0.0.1": True, "10.0.0.2": False}
        api.apply(web("10.0.0.1", "10.0.0.3"))
        await sink.wait_keys("10.0.0.1:8080", "10.0.0.3:8080")
        assert sink.snapshots[-1].resource_version == api.resource_version
    assert sink.errors == [] and sleeper.delays == []


async def test_pagination_with_limit_and_continue(api: Any, client: Any, sleeper: Sleeper) -> None:
    """With page_size 2, five slices arrive in three pages linked by continue tokens, pushed once."""
    for i in range(5):
        api.apply(web(f"10.0.1.{i}", name=f"web-{i}"))
    source, sink = make_source(SVC, sleeper, api_client=client, page_size=2), Sink()
    async with running(source, sink):
        await sink.wait_for(lambda: len(sink.snapshots) == 1)
        lists = requests(api, "list")
        assert [r.query["limit"] for r in lists] == ["2", "2", "2"]
        assert "continue" not in lists[0].query and all(r.query.get("continue") for r in lists[1:])
        assert len(sink.snapshots[0]) == 5


async def test_expired_continue_token_restarts_the_list(api: Any, client: Any, sleeper: Sleeper) -> None:
    """A 410 on a continue page restarts the list from page one; the result is still complete."""
    for i in range(3):
        api.apply(web(f"10.0.2.{i}", name=f"web-{i}"))
    api.inject(Fault.stall(1.0, on="list"))  # hold page one so the test can script page two
    source, sink = make_source(SVC, sleeper, api_client=client, page_size=2), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "list")) == 1)
        api.inject(Fault.gone(on="list"))
        await sink.wait_for(lambda: len(sink.snapshots) == 1)
        lists = requests(api, "list")
        assert [r.status for r in lists] == [200, 410, 200, 200]
        assert [bool(r.query.get("continue")) for r in lists] == [False, True, False, True]
        assert len(sink.snapshots[0]) == 3


async def test_clean_end_rewatches_from_last_rv_without_relist(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """A stream that ends cleanly after an event is re-watched from that event's RV; no relist, no backoff."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.end_stream(after_events=1))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 1)
        api.apply(web("10.0.0.1", "10.0.0.2"))
        event_rv = api.resource_version
        await until(lambda: len(requests(api, "watch")) == 2)
        first, second = requests(api, "watch")
        assert second.query["resourceVersion"] == event_rv
        assert first.query["timeoutSeconds"] != second.query["timeoutSeconds"]  # drawn afresh each time
        assert len(requests(api, "list")) == 1
        api.apply(web("10.0.0.2"))
        await sink.wait_keys("10.0.0.2:8080")
    assert sink.errors == [] and sleeper.delays == []


async def test_bookmark_advances_rv_without_a_push(api: Any, client: Any, sleeper: Sleeper) -> None:
    """A BOOKMARK moves the RV the next watch starts from, and pushes no snapshot."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.end_stream(after_events=1))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 1)
        api.apply(endpoint_slice("other", "shop", endpoints=["10.9.9.9"]))  # moves the global RV only
        api.send_bookmark()
        await until(lambda: len(requests(api, "watch")) == 2)
        assert requests(api, "watch")[1].query["resourceVersion"] == api.resource_version
        assert source.resource_version == api.resource_version
        assert len(sink.snapshots) == 1 and len(requests(api, "list")) == 1


async def test_http_410_on_watch_relists(api: Any, client: Any, sleeper: Sleeper) -> None:
    """HTTP 410 on the watch relists at once (no backoff) and watches from the new list's RV."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.gone(on="watch"))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 2)
        assert [r.verb for r in requests(api)] == ["list", "watch", "list", "watch"]
        assert requests(api, "watch")[0].status == 410
        api.apply(web("10.0.0.5"))
        await sink.wait_keys("10.0.0.5:8080")
    assert len(sink.snapshots) == 2  # the relist changed nothing: no second push of the same set
    assert sleeper.delays == []


async def test_compacted_history_gives_in_stream_410_then_relist_applies_difference(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """Changes missed during an outage, with history compacted, arrive by relist with no flap of the rest."""
    api.apply(web("10.0.0.1", name="web-a"))
    api.apply(web("10.0.0.2", name="web-b"))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 1)
        sleeper.hold()  # the watcher will park in its backoff after the restart
        await api.restart()
        await until(lambda: len(sleeper.delays) == 1)
        assert sink.keys == ["10.0.0.1:8080", "10.0.0.2:8080"]  # the last good set still serves
        api.apply(web("10.0.0.3", name="web-b"))
        api.compact()
        sleeper.release()
        await sink.wait_keys("10.0.0.1:8080", "10.0.0.3:8080")
        await until(lambda: len(requests(api, "watch")) == 3)
        watches = requests(api, "watch")
        assert watches[1].query["resourceVersion"] == watches[0].query["resourceVersion"]
        assert [r.verb for r in requests(api)] == ["list", "watch", "watch", "list", "watch"]
    before, after = sink.snapshots[0], sink.snapshots[-1]
    assert len(sink.snapshots) == 2  # initial, then the difference: nothing in between
    kept = next(e for e in after if e.address == "10.0.0.1")
    assert kept is next(e for e in before if e.address == "10.0.0.1")  # unchanged slice not re-parsed


async def test_in_stream_410_relist_without_changes_pushes_nothing(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """An in-stream ERROR 410 relists; when nothing changed, no snapshot is pushed (no flap)."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.gone_in_stream(after_events=0))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 2)
        assert [r.verb for r in requests(api)] == ["list", "watch", "list", "watch"]
        api.apply(web("10.0.0.1", "10.0.0.4"))
        await sink.wait_keys("10.0.0.1:8080", "10.0.0.4:8080")
    assert len(sink.snapshots) == 2 and sink.errors == []


async def test_added_deleted_and_label_moves(api: Any, client: Any, sleeper: Sleeper) -> None:
    """ADDED joins, DELETED (with last state) leaves, a slice relabelled to another Service leaves."""
    api.apply(web("10.0.0.1", name="web-a"))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await sink.wait_keys("10.0.0.1:8080")
        api.apply(web("10.0.0.2", name="web-b"))
        await sink.wait_keys("10.0.0.1:8080", "10.0.0.2:8080")
        api.delete("EndpointSlice", "shop", "web-a")
        await sink.wait_keys("10.0.0.2:8080")
        api.apply(web("10.0.0.2", name="web-b", labels={"kubernetes.io/service-name": "other"}))
        await sink.wait_for(lambda: sink.keys == [])
        api.apply(web("10.0.0.7", name="web-c"))
        await sink.wait_keys("10.0.0.7:8080")


async def test_terminating_endpoints_are_kept_with_conditions(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """A terminating-but-serving pod stays in the set with its conditions (policy is the balancer's)."""
    api.apply(web(slice_endpoint("10.0.0.1", ready=False, serving=True, terminating=True), "10.0.0.2"))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await sink.wait_keys("10.0.0.1:8080", "10.0.0.2:8080")
    assert sink.snapshots[-1].counts()["serving_terminating"] == 1


async def test_repeated_410_backs_off_instead_of_spinning(api: Any, client: Any, sleeper: Sleeper) -> None:
    """A watch that expires again right after each relist is backed off from the second time on."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.gone_in_stream(after_events=0, count=3))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 4)
        assert [r.verb for r in requests(api)] == ["list", "watch"] * 4
        assert len(sleeper.delays) == 2 and sleeper.delays[1] > sleeper.delays[0]
        await sink.wait_keys("10.0.0.1:8080")
        api.apply(web("10.0.0.9"))
        await sink.wait_keys("10.0.0.9:8080")
    assert len(sink.snapshots) == 2
