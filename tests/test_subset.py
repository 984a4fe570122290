"""Deterministic subsetting: exact spread, size, determinism, stability, and option checks."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_balance import (
    ConfigurationError,
    DiscoveryError,
    Endpoint,
    EndpointPolicy,
    EndpointSet,
    LoadBalancer,
    ServiceRef,
    Subset,
    SubsetStatus,
    ZoneAware,
    deterministic_subset,
)
from kube_balance._subset import ring_order
from kube_balance.discovery import SourceSink, StaticSource


def backends(n: int, network: int = 0) -> list[str]:
    return [f"10.{network}.{i // 250}.{i % 250}:8080" for i in range(n)]


def coverage(keys: Sequence[str], size: int, count: int) -> Counter[str]:
    """How many clients' subsets hold each key (every key listed, zeros included)."""
    seen: Counter[str] = Counter(dict.fromkeys(keys, 0))
    for client in range(count):
        seen.update(deterministic_subset(keys, size, client, count))
    return seen


# -- the function ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "size", "rounds"),
    [(1000, 20, 2), (1000, 20, 1), (1000, 20, 3), (30, 5, 1), (30, 5, 4), (12, 4, 5), (7, 7, 2), (60, 6, 7)],
)
def test_every_backend_in_the_same_number_of_subsets(n: int, size: int, rounds: int) -> None:
    """client_count = rounds x n/size: every backend is in exactly rounds subsets (100 x 1000 / 20: 2)."""
    keys = backends(n)
    count = rounds * n // size
    assert set(coverage(keys, size, count).values()) == {rounds}


TEN = [f"10.0.0.{i}:8080" for i in range(10)]


def test_the_ring_and_the_windows_are_the_same_in_every_process_and_release() -> None:
    """Clients of different processes (and versions, during a rollout) must order the ring alike:
    the hash is pinned (blake2b, 8 bytes, big-endian order, then the key), and so are the windows:
    rounded starts, the whole ring from its start when size >= the number of keys."""
    ring = ["6", "2", "4", "3", "0", "5", "1", "9", "7", "8"]
    assert ring_order(TEN) == [f"10.0.0.{i}:8080" for i in ring]
    assert ring_order(TEN) == sorted(TEN, key=lambda k: hashlib.blake2b(k.encode(), digest_size=8).digest())
    assert deterministic_subset(TEN, 3, 0, 1) == tuple(f"10.0.0.{i}:8080" for i in "624")
    assert deterministic_subset(TEN, 3, 1, 4) == tuple(f"10.0.0.{i}:8080" for i in "305")  # start 2.5 -> 3
    assert deterministic_subset(TEN, 3, 3, 4) == tuple(f"10.0.0.{i}:8080" for i in "786")  # 7.5 -> 8 (wraps)
    assert (
        deterministic_subset(TEN, 10, 3, 4) == deterministic_subset(TEN, 11, 1, 4) == tuple(ring_order(TEN))
    )
    assert deterministic_subset([], 3, 0, 1) == ()
    assert deterministic_subset(iter(TEN), 3, 1, 4) == deterministic_subset((k for k in TEN), 3, 1, 4)
    assert deterministic_subset(iter(TEN), 3, 1, 4) == deterministic_subset(TEN, 3, 1, 4)  # read once


@given(n=st.integers(1, 120), size=st.integers(1, 40), count=st.integers(1, 150))
def test_spread_within_one_of_the_mean_otherwise(n: int, size: int, count: int) -> None:
    """Any client count: each backend is in floor or ceil of count x size / n subsets."""
    keys = backends(n)
    per = min(size, n) * count / n
    values = coverage(keys, size, count).values()
    assert all(per - 1 < v < per + 1 for v in values), (per, values)
    assert max(values) - min(values) <= 1


@given(
    keys=st.lists(st.integers(0, 4000), min_size=0, max_size=80),
    size=st.integers(1, 100),
    data=st.data(),
)
def test_size_determinism_and_order(keys: list[int], size: int, data: st.DataObject) -> None:
    """min(size, distinct keys) keys, all of them given ones, whatever the input order or duplicates."""
    names = [f"10.1.{k // 250}.{k % 250}:80" for k in keys]
    count = data.draw(st.integers(1, 200))
    client = data.draw(st.integers(0, count - 1))
    chosen = deterministic_subset(names, size, client, count)
    assert len(chosen) == min(size, len(set(names))) == len(set(chosen))
    assert set(chosen) <= set(names)
    shuffled = data.draw(st.permutations(names))
    assert deterministic_subset([*shuffled, *shuffled[:3]], size, client, count) == chosen


@given(n=st.integers(2, 80), size=st.integers(1, 30), count=st.integers(1, 60), data=st.data())
def test_one_backend_leaving_replaces_at_most_one_other(
    n: int, size: int, count: int, data: st.DataObject
) -> None:
    """Every client keeps all of its subset but the leaving backend and at most one other."""
    keys = backends(n)
    gone = data.draw(st.sampled_from(keys))
    rest = [k for k in keys if k != gone]
    for client in range(count):
        before = set(deterministic_subset(keys, size, client, count))
        after = set(deterministic_subset(rest, size, client, count))
        assert len(before - after - {gone}) <= 1


@given(n=st.integers(1, 80), size=st.integers(1, 30), count=st.integers(1, 60), extra=st.integers(0, 249))
def test_one_backend_joining_replaces_at_most_two(n: int, size: int, count: int, extra: int) -> None:
    """A joining backend pushes at most two endpoints out of any client's subset."""
    keys = backends(n)
    for client in range(count):
        before = set(deterministic_subset(keys, size, client, count))
        after = set(deterministic_subset([*keys, f"10.9.0.{extra}:8080"], size, client, count))
        assert len(before - after) <= 2


def test_few_clients_change_when_one_backend_leaves_or_joins() -> None:
    """100 clients x 1,000 backends, subset 20: no event moves more than half of the subsets, and
    on average about a quarter (each by at most two endpoints)."""
    keys = backends(1000)
    subsets = [set(deterministic_subset(keys, 20, c, 100)) for c in range(100)]
    shares = []
    rng = random.Random(7)
    for changed in (
        *([k for k in keys if k != gone] for gone in rng.sample(keys, 3)),
        [*keys, "10.9.9.9:8080"],
    ):
        moved = sum(set(deterministic_subset(changed, 20, c, 100)) != subsets[c] for c in range(100))
        shares.append(moved / 100)
    assert max(shares) <= 0.52, shares
    assert sum(shares) / len(shares) <= 0.4, shares


@pytest.mark.parametrize(
    ("args", "option", "allowed"),
    [
        ((0, 0, 1), "size", "int >= 1"),
        ((True, 0, 1), "size", "int >= 1"),
        ((3, -1, 4), "client_id", "in [0, 3]"),
        ((3, 4, 4), "client_id", "in [0, 3]"),
        ((3, 0, 0), "client_count", "int >= 1"),
        ((3, 0, 2.0), "client_count", "int >= 1"),
    ],
)
def test_function_arguments_checked(args: tuple[object, object, object], option: str, allowed: str) -> None:
    """A bad size, id or count names the argument, the value and what is allowed."""
    with pytest.raises(ConfigurationError, match=f"deterministic_subset {option}=") as info:
        deterministic_subset(["10.0.0.1:80"], *args)  # type: ignore[arg-type]
    assert allowed in str(info.value)


@pytest.mark.parametrize("keys", ["10.0.0.1:80", b"10.0.0.1:80", 42, ["10.0.0.1:80", 7]])
def test_keys_must_be_an_iterable_of_strings(keys: object) -> None:
    """A bare string (or bytes, or a non-iterable, or a non-string key) is a ConfigurationError."""
    with pytest.raises(
        ConfigurationError, match=r"deterministic_subset keys=.* expected an iterable of endpoint keys"
    ):
        deterministic_subset(keys, 2, 0, 1)  # type: ignore[arg-type]


# -- the constructor ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0, "client_id": 0, "client_count": 1}, "Subset size=0 is invalid: expected an int >= 1"),
        ({"size": -3, "client_id": 0, "client_count": 1}, "Subset size=-3 is invalid"),
        ({"size": "5", "client_id": 0, "client_count": 1}, "Subset size='5' is invalid"),
        (
            {"size": 5, "client_id": -1, "client_count": 3},
            "Subset client_id=-1 is invalid: expected an int in [0, 2]",
        ),
        (
            {"size": 5, "client_id": 3, "client_count": 3},
            "Subset client_id=3 is invalid: expected an int in [0, 2]",
        ),
        (
            {"size": 5, "client_id": 0, "client_count": 0},
            "Subset client_count=0 is invalid: expected an int >= 1",
        ),
        (
            {"size": 5, "client_id": 1},
            "Subset client_count=None is invalid: expected an int: give client_id and client_count together",
        ),
        (
            {"size": 5, "client_count": 4},
            "Subset client_id=None is invalid: expected an int: give client_id and client_count together",
        ),
        ({"size": 5}, "Subset peers=None is invalid: expected the client's own Service"),
        (
            {"size": 5, "client_id": 0, "client_count": 2, "peers": "client.shop"},
            "Subset peers='client.shop'",
        ),
        ({"size": 5, "peers": 42}, "Subset peers=42 is invalid: expected the client's own Service"),
        ({"size": 5, "peers": "not a service!"}, "not a service"),
        ({"size": 5, "peers": "client.shop", "pod_name": ""}, "Subset pod_name='' is invalid"),
        ({"size": 5, "peers": "client.shop", "settle": -1}, "Subset settle=-1 is invalid: expected a finite"),
        ({"size": 5, "peers": "client.shop", "settle": "5"}, "Subset settle='5' is invalid"),
        ({"size": 5, "peers": "client.shop", "settle": math.inf}, "Subset settle=inf is invalid"),
    ],
)
def test_bad_options_name_option_value_and_allowed(kwargs: dict[str, object], message: str) -> None:
    """Each bad option fails at construction with a ConfigurationError that says how to fix it."""
    with pytest.raises(ConfigurationError) as info:
        Subset(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 50),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.just([]),
)


@given(size=_values, client_id=_values, client_count=_values, peers=_values, pod_name=_values, settle=_values)
def test_constructor_fuzz(
    size: object, client_id: object, client_count: object, peers: object, pod_name: object, settle: object
) -> None:
    """Any combination either builds a Subset whose identity is in range or raises ConfigurationError."""
    try:
        subset = Subset(
            size,  # type: ignore[arg-type]
            client_id=client_id,  # type: ignore[arg-type]
            client_count=client_count,  # type: ignore[arg-type]
            peers=peers,  # type: ignore[arg-type]
            pod_name=pod_name,  # type: ignore[arg-type]
            environ={},
            **({} if settle is None else {"settle": settle}),  # type: ignore[arg-type]
        )
    except ConfigurationError:
        return
    status = subset.status()
    assert isinstance(status.size, int) and status.size >= 1
    assert isinstance(subset.settle, float) and 0 <= subset.settle < math.inf
    if status.client_id is not None:
        assert status.client_count is not None and 0 <= status.client_id < status.client_count


def test_size_is_checked_with_peers_too_and_one_is_allowed() -> None:
    """size >= 1 whichever way the identity comes; the smallest size and count are allowed."""
    with pytest.raises(ConfigurationError, match=r"Subset size=0 is invalid: expected an int >= 1"):
        Subset(0, peers="client.shop", environ={})
    assert Subset(1, peers="client.shop", environ={}).size == 1
    assert Subset(1, client_id=0, client_count=1).status().client_count == 1
    assert deterministic_subset(TEN, 1, 0, 1) == ("10.0.0.6:8080",)


def test_pod_name_from_option_env_then_hostname() -> None:
    """pod_name, else $POD_NAME, else the hostname names the client among its peers."""
    assert Subset(3, peers="client.shop", pod_name="a", environ={"POD_NAME": "b"}).pod_name == "a"
    assert Subset(3, peers="client.shop", environ={"POD_NAME": "b"}).pod_name == "b"
    assert Subset(3, peers=ServiceRef.parse("client.shop"), environ={}).pod_name  # the hostname


def candidates() -> tuple[EndpointSet, tuple[Endpoint, ...]]:
    eps = tuple(Endpoint(f"10.0.0.{i}", 8080) for i in range(10))
    return EndpointSet(list(eps)), eps


class NoPeers:
    """A peers source that never reports (the test runs the filter alone)."""

    service = "client.shop"

    async def run(self, sink: SourceSink) -> None:
        await asyncio.Event().wait()


@pytest.mark.parametrize("pod", ["client-a", "client-b", "client-c", "web-7d9f-x2k4q"])
def test_until_the_peers_are_known_the_window_is_at_the_pod_names_hash(pod: str) -> None:
    """Pending: the window starting at the pod name's point of the ring, a 2**32-th of a turn
    per step (blake2b of the name, 8 bytes big-endian, modulo 2**32): the same in every process,
    outside a running loop too (the watch starts once a loop runs the filter)."""
    subset = Subset(3, peers=NoPeers(), pod_name=pod, environ={})
    snapshot, eps = candidates()
    point = int.from_bytes(hashlib.blake2b(pod.encode(), digest_size=8).digest(), "big") % 2**32
    chosen = subset(snapshot, eps)
    assert {e.key for e in chosen} == set(deterministic_subset(TEN, 3, point, 2**32))
    assert [e.key for e in chosen] == sorted(e.key for e in chosen)  # the candidates' order kept
    if pod == "client-b":  # 4107209254 / 2**32 of the way round: start 9.56 -> 10, the ring's start
        assert [e.key for e in chosen] == ["10.0.0.2:8080", "10.0.0.4:8080", "10.0.0.6:8080"]
    assert subset._task is None  # no loop: no watch yet, and no error


def test_no_candidates_at_first_then_some() -> None:
    """A Service with no ready endpoint yet: an empty subset, then the window once there are some."""
    subset = Subset(3, client_id=0, client_count=1)
    assert subset(EndpointSet([]), ()) == ()
    assert (subset.status().candidates, subset.status().selected) == (0, 0)
    assert len(subset(*candidates())) == 3


def test_a_new_subset_reports_no_run_and_where_its_identity_comes_from() -> None:
    """status() before any run: nothing offered, nothing selected, no change; repr says pending."""
    pending = Subset(3, peers=NoPeers(), pod_name="client-b", environ={})
    assert pending.status() == SubsetStatus(
        size=3,
        client_id=None,
        client_count=None,
        source="pending (pod client-b at its hash on the ring)",
        candidates=0,
        selected=0,
        changes=0,
    )
    assert repr(pending) == (
        "Subset(size=3, client=pending, source='pending (pod client-b at its hash on the ring)', selected=0/0)"
    )
    explicit = Subset(2, client_id=1, client_count=4)
    assert explicit.status() == SubsetStatus(2, 1, 4, "option", 0, 0, 0, None)
    assert repr(explicit) == "Subset(size=2, client=1 of 4, source='option', selected=0/0)"
    explicit(*candidates())
    assert (explicit.status().candidates, explicit.status().selected) == (10, 2)


async def test_a_subset_run_alone_follows_its_peers_logs_its_rank_and_keeps_the_last_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A filter not bound to a balancer starts its watch on the first run in a loop and follows
    the peers all the same; each new rank is logged once; a watch error is kept for status()
    until the next snapshot; a source's ``service`` names the peers; aclose() stops the watch."""
    feed = PeerFeed()
    feed.service = "client.shop"  # type: ignore[attr-defined]
    subset = Subset(3, peers=feed, pod_name="client-b", environ={}, settle=0)
    snapshot, eps = candidates()
    caplog.set_level(logging.INFO, logger="kube_balance")
    async with asyncio.timeout(5):
        subset(snapshot, eps)
        subset(snapshot, eps)  # a second run while the watch runs starts no other
        for names, identity in ((("client-a", "client-b", "client-c"), (1, 3)), (("client-c",), (0, 2))):
            for _ in range(2):  # the same peers twice: one change, one log line
                feed.queue.put_nowait(peers(*names))
                while feed.queue.qsize():  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.001)
            assert (subset.status().client_id, subset.status().client_count) == identity
            assert {e.key for e in subset(snapshot, eps)} == set(deterministic_subset(TEN, 3, *identity))
        assert feed.runs == 1
        status = subset.status()
        assert (status.source, status.changes, status.last_error) == ("peers client.shop", 2, None)
        [task] = [t for t in asyncio.all_tasks() if t.get_name() == "kube-balance peers client.shop"]
        assert task is subset._task
        await subset.aclose()
        await subset.aclose()  # twice: nothing left to stop
        assert feed.cancelled.is_set() and task.done()
    ranks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("subset:")]
    assert ranks == [
        "subset: client client-b is 1 of 3 peers (client.shop)",
        "subset: client client-b is 0 of 2 peers (client.shop)",
    ]


async def test_a_watch_error_is_kept_until_the_next_snapshot() -> None:
    """on_error keeps the message (a 403 names the missing rule); the identity stays."""
    errors: list[DiscoveryError] = [DiscoveryError("403: endpointslices list forbidden")]

    class Failing(PeerFeed):
        async def run(self, sink: SourceSink) -> None:
            sink.on_endpoints(peers("client-a", "client-b"))
            sink.on_error(errors[0])
            await super().run(sink)

    feed = Failing()
    subset = Subset(2, peers=feed, pod_name="client-b", environ={})
    async with asyncio.timeout(5):
        subset(*candidates())
        while subset.status().last_error is None:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        status = subset.status()
        assert (status.client_id, status.client_count, status.source) == (1, 2, "peers Failing")
        assert status.last_error == "403: endpointslices list forbidden"
        feed.queue.put_nowait(peers("client-a", "client-b"))
        while subset.status().last_error is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        assert subset.status().changes == 1
        await subset.aclose()


# -- in the balancer ------------------------------------------------------------------------------
def ep(i: int, **conditions: bool) -> Endpoint:
    return Endpoint(f"10.2.0.{i}", 8080, **conditions)  # type: ignore[arg-type]


async def test_balancer_eligible_is_the_subset_of_ready_endpoints(rng: random.Random) -> None:
    """The policy takes the subset from the ready endpoints; health steps run inside it."""
    subset = Subset(4, client_id=2, client_count=5)
    endpoints = [ep(i) for i in range(20)] + [ep(i, ready=False) for i in range(20, 25)]
    balancer = LoadBalancer("web.shop:80", source=StaticSource(endpoints), policy=subset.policy(), rng=rng)
    async with balancer:
        await balancer.wait_ready(5)
        expected = deterministic_subset([e.key for e in endpoints[:20]], 4, 2, 5)
        assert {e.key for e in balancer.eligible} == set(expected)
        picks = {balancer.get() for _ in range(50)}
        assert {e.key for e in picks if e is not None} <= set(expected)
        for e in picks:
            if e is not None:
                balancer.unget(e)
    assert subset.status().selected == 4 and subset.status().candidates == 20
    # The balancer's status carries the subset's, as it carries the zone filter's.
    assert balancer.status().subset == subset.status() == balancer.status_subset()
    assert balancer.status().subset.client_id == 2 and balancer.status().subset.source == "option"  # type: ignore[union-attr]
    plain = LoadBalancer("web.shop:80", source=StaticSource(endpoints), rng=rng)
    assert plain.status().subset is None and plain.status_subset() is None
    assert [type(f).__name__ for f in subset.policy().filters][:2] == ["function", "Subset"]
    assert "client=2 of 5" in repr(subset)
    zones = ZoneAware("a", environ={})
    assert Subset(4, client_id=0, client_count=1).policy(zones).filters[-1] is zones


def test_one_subset_filter_per_balancer(rng: random.Random) -> None:
    """Binding the same filter to a second balancer is a ConfigurationError (binding it to its
    own balancer again is not)."""
    subset = Subset(2, client_id=0, client_count=1)
    policy = EndpointPolicy([subset])
    first = LoadBalancer("web.shop:80", source=StaticSource(["10.0.0.1:80"]), policy=policy, rng=rng)
    subset.bind(first)
    with pytest.raises(ConfigurationError, match="one LoadBalancer"):
        LoadBalancer(
            "web.shop:80", source=StaticSource(["10.0.0.1:80"]), policy=EndpointPolicy([subset]), rng=rng
        )


class PeerFeed:
    """An endpoint source fed by the test: each snapshot put in the queue is pushed to the sink."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[EndpointSet] = asyncio.Queue()
        self.runs = 0
        self.cancelled = asyncio.Event()

    async def run(self, sink: SourceSink) -> None:
        self.runs += 1
        try:
            while True:
                sink.on_endpoints(await self.queue.get())
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


def peers(*names: str, unready: Sequence[str] = ()) -> EndpointSet:
    eps = [Endpoint(f"10.3.0.{i}", 80, pod_name=n) for i, n in enumerate(names)]
    eps += [Endpoint(f"10.3.1.{i}", 80, pod_name=n, ready=False) for i, n in enumerate(unready)]
    return EndpointSet(eps)


async def test_identity_follows_the_peers_and_aclose_stops_their_watch(rng: random.Random) -> None:
    """Rank among ready peers by name (self counted even when not listed); the subset follows."""
    feed = PeerFeed()
    subset = Subset(3, peers=feed, pod_name="client-b", environ={}, settle=0)
    keys = backends(12)
    balancer = LoadBalancer("web.shop:8080", source=StaticSource(keys), policy=subset.policy(), rng=rng)
    assert subset.status().client_id is None and subset.status().source.startswith("pending")
    async with asyncio.timeout(5):
        async with balancer:
            await balancer.wait_ready(5)
            assert len(balancer.eligible) == 3  # before the peers are known: a window all the same
            for snapshot, identity in (
                (peers("client-a", "client-b", "client-c"), (1, 3)),
                (peers("client-a", "client-c", unready=["client-0"]), (1, 3)),  # not listed, unready ignored
                (peers("client-0", "client-a", "client-b", "client-c"), (2, 4)),
                (peers("client-c"), (0, 2)),
            ):
                feed.queue.put_nowait(snapshot)
                while (subset.status().client_id, subset.status().client_count) != identity:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                assert {e.key for e in balancer.eligible} == set(deterministic_subset(keys, 3, *identity))
            assert subset.status().source == "peers PeerFeed" and subset.status().changes == 3
        await feed.cancelled.wait()
    assert feed.runs == 1


async def feed_and_wait(feed: PeerFeed, snapshot: EndpointSet) -> None:
    """Push one peers snapshot and wait until the filter has taken it."""
    feed.queue.put_nowait(snapshot)
    while feed.queue.qsize():  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.001)


async def test_a_new_identity_is_followed_once_it_has_held_for_settle_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first identity is taken at once; a later one waits ``settle`` seconds (status shows it
    settling, the subset stays); one that goes back within the window moves nothing (a rollout's
    burst); one repeated keeps its first timer; once it has held, it is taken and logged once."""
    feed = PeerFeed()
    subset = Subset(3, peers=feed, pod_name="client-b", environ={}, settle=0.3)
    snapshot, eps = candidates()
    caplog.set_level(logging.INFO, logger="kube_balance")
    async with asyncio.timeout(5):
        subset(snapshot, eps)
        await feed_and_wait(feed, peers("client-a", "client-b", "client-c"))
        assert (subset.status().client_id, subset.status().client_count, subset.status().changes) == (1, 3, 1)
        await feed_and_wait(feed, peers("client-b", "client-c"))  # client-a left: 0 of 2, settling
        status = subset.status()
        assert (status.client_id, status.client_count, status.settling) == (1, 3, (0, 2))
        assert {e.key for e in subset(snapshot, eps)} == set(deterministic_subset(TEN, 3, 1, 3))
        first_wait = subset._timer
        await feed_and_wait(feed, peers("client-a", "client-b", "client-c"))  # back: nothing moves
        assert subset.status().settling is None and subset._timer is None
        assert first_wait is not None and first_wait.cancelled()  # it can apply nothing later
        await feed_and_wait(feed, peers("client-b", "client-c"))
        timer = subset._timer
        await feed_and_wait(feed, peers("client-b", "client-c", unready=["client-d"]))  # the same
        assert subset._timer is timer is not None  # the wait started at its first sight
        while subset.status().settling is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        status = subset.status()
        assert (status.client_id, status.client_count, status.changes) == (0, 2, 2)
        assert {e.key for e in subset(snapshot, eps)} == set(deterministic_subset(TEN, 3, 0, 2))
        await feed_and_wait(feed, peers("client-c"))  # 0 of 2 still (client-b counts itself)
        assert subset.status().settling is None
        await feed_and_wait(feed, peers("client-a", "client-b"))  # settling, then closed
        assert subset.status().settling == (1, 2)
        await subset.aclose()
        assert subset.status().settling is None
        await asyncio.sleep(0.4)  # past the window: the cancelled wait applied nothing
        assert (subset.status().client_id, subset.status().changes) == (0, 2)
    ranks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("subset:")]
    assert ranks == [
        "subset: client client-b is 1 of 3 peers (PeerFeed)",
        "subset: client client-b is 0 of 2 peers (PeerFeed)",
    ]
