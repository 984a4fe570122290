"""KubernetesSource under scripted faults: each keeps the last good set and the watcher alive."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from helpers_kube_discovery import Sink, Sleeper, make_source, requests, running, until

from helpers_aiohttp import DROPS_TO_FAIL
from kube_balance import DiscoveryAuthError, DiscoveryError, DiscoveryUnavailable
from kube_balance.testing import FakeClock, Fault, Permissions, endpoint_slice

SVC = "web.shop:http"


def web(*endpoints: str, name: str = "web-a") -> dict[str, Any]:
    return endpoint_slice("web", "shop", name=name, endpoints=endpoints)


def assert_backoff_spacing(delays: list[float]) -> None:
    """Delay n within client-go's jittered [0.8 * 2^n, 1.6 * 2^n], capped at 30 s."""
    for n, delay in enumerate(delays):
        base = min(30.0, 0.8 * 2**n)
        assert base <= delay <= min(30.0, 2 * base), (n, delays)


async def recovers(api: Any, sink: Sink, *keys: str) -> None:
    """The watcher is alive: a new change reaches the sink; no empty set was ever pushed."""
    api.apply(web(*keys))
    await sink.wait_keys(*(f"{k}:8080" for k in keys))
    assert all(len(s) for s in sink.snapshots), "an outage emptied the endpoint set"


@pytest.mark.parametrize(
    ("fault", "drops"),
    # aiohttp >= 3.10 itself retries a request once when the connection closes before the
    # headers, so the source sees (and must handle) the drop that comes after that retry.
    [
        (Fault.drop_before_headers(on="watch", count=DROPS_TO_FAIL), DROPS_TO_FAIL),
        (Fault.drop_mid_stream(after_events=0), 1),
    ],
    ids=["drop-before-headers", "drop-mid-stream"],
)
async def test_dropped_watch_rewatches_same_rv_after_backoff(
    api: Any, client: Any, sleeper: Sleeper, fault: Fault, drops: int
) -> None:
    """A dropped watch is reported as DiscoveryUnavailable, backed off once, re-watched from the same RV."""
    api.apply(web("10.0.0.1"))
    api.inject(fault)
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == drops + 1)
        watches = requests(api, "watch")
        assert len({r.query["resourceVersion"] for r in watches}) == 1
        assert watches[-1].status == 200 and all(r.fault for r in watches[:-1])
        assert len(requests(api, "list")) == 1
        assert isinstance(sink.errors[0], DiscoveryUnavailable) and len(sink.errors) == 1
        assert_backoff_spacing(sleeper.delays) and len(sleeper.delays) == 1
        assert sink.keys == ["10.0.0.1:8080"]
        await recovers(api, sink, "10.0.0.2")
        assert source.last_error is None


async def test_drop_mid_stream_after_an_event_resumes_from_it(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """Events read before a drop are kept; the re-watch starts from the last one's RV."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.drop_mid_stream(after_events=1))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 1)
        api.apply(web("10.0.0.2"))
        rv = api.resource_version
        await until(lambda: len(requests(api, "watch")) == 2)
        assert requests(api, "watch")[1].query["resourceVersion"] == rv
        assert sink.keys == ["10.0.0.2:8080"]
        await recovers(api, sink, "10.0.0.3")


async def test_drop_mid_line_discards_the_half_event(api: Any, client: Any, sleeper: Sleeper) -> None:
    """Half a line is not applied; the re-watch from the previous RV delivers the whole event."""
    api.apply(web("10.0.0.1"))
    list_rv = api.resource_version
    api.inject(Fault.drop_mid_line(after_events=0))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 1)
        api.apply(web("10.0.0.2"))
        await sink.wait_keys("10.0.0.2:8080")
        assert [r.query["resourceVersion"] for r in requests(api, "watch")] == [list_rv, list_rv]
        assert len(sink.snapshots) == 2 and len(sink.errors) == 1
        await recovers(api, sink, "10.0.0.3")


async def test_stalled_watch_is_noticed_by_the_request_timeout(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """A watch that sends headers and then nothing times out, is reported as a stall and re-watched."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.stall(None, on="watch"))
    source, sink = make_source(SVC, sleeper, api_client=client, request_timeout=0.3), Sink()
    async with running(source, sink):
        await sink.wait_for(lambda: bool(sink.errors))
        assert "stalled" in str(sink.errors[0]) and isinstance(sink.errors[0], DiscoveryUnavailable)
        await until(lambda: len(requests(api, "watch")) >= 2)
        assert sink.keys == ["10.0.0.1:8080"]
        await recovers(api, sink, "10.0.0.2")


async def test_a_list_without_answer_is_reported_as_such(api: Any, client: Any, sleeper: Sleeper) -> None:
    """An API server that takes the list and never finishes its answer: the error says the list got
    no answer within the request timeout (it said "stalled (no end of stream)", a watch's words),
    then the list is tried again and recovers."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.stall(None, on="list"))
    source, sink = make_source(SVC, sleeper, api_client=client, request_timeout=0.3), Sink()
    async with running(source, sink):
        await sink.wait_for(lambda: bool(sink.errors))
        message = str(sink.errors[0])
        assert "list/watch endpointslices" in message and isinstance(sink.errors[0], DiscoveryUnavailable)
        assert "timed out: no answer to the list within 0.3 s" in message and "stalled" not in message
        await sink.wait_for(lambda: sink.keys == ["10.0.0.1:8080"])


@pytest.mark.parametrize("status", [500, 503, 504])
async def test_server_errors_back_off_exponentially(
    api: Any, client: Any, sleeper: Sleeper, status: int
) -> None:
    """Three 5xx answers on the watch: three typed errors, spacing 0.8/1.6/3.2 s jittered, then recovery."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.http_error(status, on="watch", count=3))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 4)
        assert [r.status for r in requests(api, "watch")][:3] == [status] * 3
        assert len(sleeper.delays) == 3
        assert_backoff_spacing(sleeper.delays)
        assert all(isinstance(e, DiscoveryUnavailable) and str(status) in str(e) for e in sink.errors)
        assert len(requests(api, "list")) == 1  # the RV stayed valid: no relist
        await recovers(api, sink, "10.0.0.2")


async def test_429_retry_after_is_honoured(api: Any, client: Any, sleeper: Sleeper) -> None:
    """429 with Retry-After: 7 waits 7 s (longer than the 0.8-1.6 s backoff) before retrying."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.too_many_requests(retry_after=7, on="list"))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await sink.wait_keys("10.0.0.1:8080")
        assert sleeper.delays == [7.0]
        assert "429" in str(sink.errors[0])
        await recovers(api, sink, "10.0.0.2")


async def test_non_json_bodies_are_errors_not_crashes(api: Any, client: Any, sleeper: Sleeper) -> None:
    """A proxy's HTML 502 and a 200 with a non-JSON body both become typed errors, then the list succeeds."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.raw_response(on="list"))
    api.inject(Fault.raw_response(200, "<html>hello</html>", on="list"))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await sink.wait_keys("10.0.0.1:8080")
        assert len(sink.errors) == 2
        assert "502" in str(sink.errors[0]) and "not a JSON object" in str(sink.errors[1])
        assert_backoff_spacing(sleeper.delays)
        await recovers(api, sink, "10.0.0.2")


async def test_broken_list_body_is_an_error(api: Any, client: Any, sleeper: Sleeper) -> None:
    """A list whose body is cut in half is retried after backoff; nothing is pushed until it succeeds."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.drop_mid_stream(on="list"))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await sink.wait_keys("10.0.0.1:8080")
        assert len(sink.snapshots) == 1 and len(sink.errors) == 1
        assert len(requests(api, "list")) == 2


@pytest.mark.parametrize(
    "line", ["this is not json", '{"object": {}}', '{"type": "ADDED", "object": []}', "[1, 2]"]
)
async def test_malformed_event_is_logged_and_skipped(
    api: Any, client: Any, sleeper: Sleeper, line: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed watch line is logged and skipped; the same stream goes on delivering events."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.malformed_line(line, after_events=0))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    with caplog.at_level(logging.WARNING, logger="kube_balance.discovery"):
        async with running(source, sink):
            await until(lambda: len(requests(api, "watch")) == 1)
            await recovers(api, sink, "10.0.0.2")
            assert len(requests(api, "watch")) == 1  # same stream, not a reconnect
    assert "malformed watch event" in caplog.text
    assert sink.errors == []


async def test_rotated_token_is_reread_after_401(api: Any, sleeper: Sleeper, tmp_path: Any) -> None:
    """After the token file rotates, the 401 makes the source re-read its kubeconfig and go on, with no error."""
    token_file = tmp_path / "token"
    token_file.write_text("old-token")
    api.set_tokens({"old-token": None})
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", token_file=str(token_file))
    api.apply(web("10.0.0.1"))
    source, sink = make_source(SVC, sleeper, kubeconfig=kubeconfig), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 1)
        token_file.write_text("new-token")
        api.set_tokens({"new-token": None})
        api.inject(Fault.end_stream(after_events=1))  # the next watch ends after one event ...
        await api.restart()  # ... and this one is dropped now, so the source must reconnect
        await until(lambda: any(r.status == 401 for r in requests(api)))
        await recovers(api, sink, "10.0.0.2")
        statuses = [(r.token, r.status) for r in requests(api) if r.status in (200, 401)]
        assert ("old-token", 401) in statuses and statuses[-1] == ("new-token", 200)
    assert not any(isinstance(e, DiscoveryAuthError) for e in sink.errors)


async def test_persistent_401_surfaces_auth_error_and_keeps_serving(
    api: Any, client: Any, sleeper: Sleeper
) -> None:
    """A 401 that re-reading cannot fix becomes DiscoveryAuthError; the last set serves; fixing auth recovers."""
    api.apply(web("10.0.0.1"))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 1)
        api.set_tokens({"someone-else": None})
        await api.restart()
        await sink.wait_for(lambda: any(isinstance(e, DiscoveryAuthError) for e in sink.errors))
        assert "401" in str(source.last_error)
        assert sink.keys == ["10.0.0.1:8080"]
        statuses = [r.status for r in requests(api, "watch")]
        assert statuses[1:3] == [401, 401]  # re-read and retried at once, then surfaced
        api.set_tokens({"test-token": None})
        await recovers(api, sink, "10.0.0.2")


async def test_403_names_the_missing_rbac_rule(api: Any, client: Any, sleeper: Sleeper) -> None:
    """RBAC allowing list but not watch: DiscoveryAuthError naming endpointslices list/watch; grant recovers."""
    api.apply(web("10.0.0.1"))
    api.set_tokens({"test-token": Permissions.allow("endpointslices:list")})
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await sink.wait_for(lambda: bool(sink.errors))
        error = sink.errors[0]
        assert isinstance(error, DiscoveryAuthError) and "403" in str(error)
        assert 'resources ["endpointslices"], verbs ["list", "watch"]' in str(error)
        assert sink.keys == ["10.0.0.1:8080"]
        api.set_tokens({"test-token": Permissions.endpoint_slice_reader()})
        await recovers(api, sink, "10.0.0.2")


async def test_unreachable_server_reports_and_retries(api: Any, sleeper: Sleeper, tmp_path: Any) -> None:
    """With the API server down from the start: errors with backoff, and the first list once it is back."""
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    api.apply(web("10.0.0.1"))
    await api.stop()
    source, sink = make_source(SVC, sleeper, kubeconfig=kubeconfig), Sink()
    async with running(source, sink):
        await sink.wait_for(lambda: len(sink.errors) >= 2)
        assert all(isinstance(e, DiscoveryError) for e in sink.errors) and sink.snapshots == []
        assert_backoff_spacing(sleeper.delays[:4])
        await api.start()
        await sink.wait_keys("10.0.0.1:8080")


async def test_future_resource_version_504_is_retried(api: Any, client: Any, sleeper: Sleeper) -> None:
    """A 504 'Too large resource version' on the watch is retried after backoff, then recovers."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.http_error(504, on="watch"))
    source, sink = make_source(SVC, sleeper, api_client=client), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 2)
        await recovers(api, sink, "10.0.0.2")
    assert len(sink.errors) == 1


async def test_backoff_resets_after_a_healthy_period(api: Any, client: Any, sleeper: Sleeper) -> None:
    """Failures back off 0.8, 1.6 s...; after 2 healthy minutes on the source's clock it starts at 0.8 s again."""
    api.apply(web("10.0.0.1"))
    api.inject(Fault.http_error(503, on="watch", count=3))
    clock = FakeClock(1000.0)
    source, sink = make_source(SVC, sleeper, api_client=client, clock=clock), Sink()
    async with running(source, sink):
        await until(lambda: len(requests(api, "watch")) == 4)
        assert_backoff_spacing(sleeper.delays)
        assert sleeper.delays[2] >= 3.2
        clock.advance(121.0)
        await api.restart()  # the next failure, after two quiet minutes
        await until(lambda: len(sleeper.delays) == 4)
        assert 0.8 <= sleeper.delays[3] <= 1.6
        await recovers(api, sink, "10.0.0.2")
