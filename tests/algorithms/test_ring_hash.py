"""Ring hash: the seed's tests as behaviours, collisions, incremental updates, bounded loads, spread."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_balance import AffinityKeyRequired, ConfigurationError, Endpoint, create
from kube_balance.algorithms._bounded import cap, load_ok
from kube_balance.algorithms._ring_hash import RingHash

KEYS = [f"key-{i}" for i in range(2_000)]


def digits_hash(data: bytes) -> int:
    """The seed's identity-like test hash: "27" hashes to 27; virtual node i of 10.0.0.E:80 to 10 i + E."""
    text = data.decode()
    if "-" not in text:
        return int(text)
    endpoint, replica = text.rsplit("-", 1)
    return int(replica) * 10 + int(endpoint.split(":")[0].rsplit(".", 1)[1])


def ep(last_octet: int) -> Endpoint:
    return Endpoint(f"10.0.0.{last_octet}", 80)


def test_predictable_owners_change_predictably_on_add_and_remove() -> None:
    """The seed's TestHashing: known points and owners, and exactly the expected change on add/remove."""
    ring = RingHash(replicas=3, hash_function=digits_hash)
    ring.update([ep(6), ep(4), ep(2)])
    assert ring.ring[0] == [2, 4, 6, 12, 14, 16, 22, 24, 26]
    expected = {"2": ep(2), "11": ep(2), "23": ep(4), "27": ep(2)}
    assert {k: ring.get(k) for k in expected} == expected
    ring.add(ep(8))
    assert ring.ring[0] == [2, 4, 6, 8, 12, 14, 16, 18, 22, 24, 26, 28]
    assert {k: ring.get(k) for k in expected} == {**expected, "27": ep(8)}
    ring.remove(ep(8))
    assert ring.ring[0] == [2, 4, 6, 12, 14, 16, 22, 24, 26]
    assert {k: ring.get(k) for k in expected} == expected


def test_endpoint_order_does_not_matter() -> None:
    """The seed's TestConsistency: rings built from the same endpoints in any order agree on every key."""
    pool = [Endpoint(f"10.1.{i // 200}.{i % 200 + 1}", 8080) for i in range(300)]
    shuffled = pool[:]
    random.Random(4).shuffle(shuffled)
    one, two = RingHash(replicas=64), RingHash(replicas=64)
    one.update(pool)
    two.update(shuffled)
    assert one.ring == two.ring
    assert [one.get(k) for k in KEYS] == [two.get(k) for k in KEYS]


def test_incremental_updates_equal_a_full_build() -> None:
    """Endpoints added and removed a few at a time (spliced) give the ring a fresh build gives."""
    pool = [Endpoint(f"10.2.0.{i}", 8080) for i in range(1, 101)]
    ring = RingHash(replicas=32)
    ring.update(pool[:60])
    for i in range(60, 100, 3):
        ring.add(*pool[i : i + 3])
    ring.remove(pool[5], pool[17])
    ring.update([*ring.endpoints, pool[5]])  # index reuse after removal
    fresh = RingHash(replicas=32)
    fresh.update([e for e in pool if e != pool[17]])
    assert ring.ring == fresh.ring
    assert [ring.get(k) for k in KEYS] == [fresh.get(k) for k in KEYS]


def test_small_changes_splice_instead_of_rebuilding() -> None:
    """Removing 1 of 100 endpoints leaves a hole in the slot table (a rebuild would compact it) and re-adding fills it."""
    pool = [Endpoint(f"10.2.1.{i}", 8080) for i in range(1, 101)]
    ring = RingHash(replicas=16)
    ring.update(pool)
    before = [s.endpoint for s in ring._table[3]]
    ring.remove(pool[0])
    after = [s.endpoint for s in ring._table[3]]
    assert len(after) == 100
    assert [a == b for a, b in zip(before, after, strict=True)].count(False) == 1
    assert pool[0] not in after
    ring.add(pool[0])
    assert [s.endpoint for s in ring._table[3]] == before


def collide(data: bytes) -> int:
    """Every virtual node of every endpoint lands on point 100; keys parse as integers."""
    text = data.decode()
    return 100 if "-" in text else int(text)


@pytest.mark.parametrize("splice", [True, False])
def test_colliding_points_are_all_kept_and_removal_takes_only_its_own(splice: bool) -> None:
    """Colliding virtual nodes never overwrite each other; removing one endpoint removes exactly its points."""
    ring = RingHash(replicas=4, hash_function=collide)
    pool = [ep(i) for i in range(1, 21)]
    ring.update(pool)
    assert ring.ring == ([100] * 80, [e.key for e in sorted(pool, key=lambda e: e.key) for _ in range(4)])
    if splice:
        ring.remove(pool[0])  # 1 of 20 changed: spliced into the existing arrays
    else:
        ring = RingHash(replicas=4, hash_function=collide)
        ring.update(pool[1:])  # a full build of the same set
    points, owners = ring.ring
    assert points == [100] * 76
    assert Counter(owners) == {e.key: 4 for e in pool[1:]}
    assert ring.get("50") == min(pool[1:], key=lambda e: e.key)  # ties order by endpoint key


def test_removing_one_endpoint_removes_exactly_its_points() -> None:
    """With mmh3 and 100 endpoints, removal drops that endpoint's 256 points and nothing else."""
    pool = [Endpoint(f"10.3.0.{i}", 8080) for i in range(1, 101)]
    ring = RingHash()
    ring.update(pool)
    before = Counter(zip(*ring.ring, strict=True))
    ring.remove(pool[42])
    after = Counter(zip(*ring.ring, strict=True))
    assert before - after == Counter((p, pool[42].key) for p in ring.points(pool[42]))
    assert after - before == Counter()


def test_removed_endpoints_leave_the_total_and_late_puts_are_noops() -> None:
    """The seed's TestEndpointDisappearing: removal subtracts in-flight load; later put()s change nothing."""
    ring = RingHash(replicas=3, hash_function=digits_hash, load_factor=1.25)
    ring.update([ep(6), ep(4), ep(2)])
    two, four = ring.get("11"), ring.get("33")
    assert (two, four) == (ep(2), ep(4))
    assert ring.active_inflight == 2
    ring.remove(ep(2), ep(4))
    assert ring.active_inflight == 0
    ring.put(two)  # type: ignore[arg-type]
    ring.put(four)  # type: ignore[arg-type]
    assert ring.active_inflight == 0
    assert ring.total_inflight() == 0
    assert ring.get("11") == ep(6)


def test_load_factor_table() -> None:
    """The seed's TestLoadOK: total 99, 4 endpoints, factor 1.20: load 29 fits, 30 does not."""
    assert load_ok(99, 1, 99, 1.20)
    assert load_ok(99, 4, 23, 1.20)
    assert load_ok(99, 4, 29, 1.20)
    assert not load_ok(99, 4, 30, 1.20)
    assert cap(99, 4, 1.20) == 30


def preload(ring: RingHash, loads: dict[str, int]) -> None:
    """Reach the given per-endpoint loads with gets on keys that hit each endpoint's own point."""
    remaining = dict(loads)
    while any(remaining.values()):
        for key in sorted(remaining, key=lambda k: -remaining[k]):
            if remaining[key]:
                assert ring.get(key) == ep(int(key))
                remaining[key] -= 1
    assert ring.overflowed == 0


@pytest.mark.parametrize(
    ("factor", "loads", "ops"),
    [
        # "15" -> point 16 of endpoint 6, which is full -> point 17 of endpoint 7.
        (1.20, {"6": 30, "4": 22, "2": 24, "7": 23}, [("15", 7, 24, 1), ("13", 4, 23, 0)]),
        # 1.001 x 121 / 4 rounds up to 31: the first choice still fits.
        (1.001, {"6": 30, "4": 30, "2": 30, "7": 30}, [("13", 4, 31, 0)]),
    ],
)
def test_bounded_load_walks_past_full_endpoints(
    factor: float, loads: dict[str, int], ops: list[tuple[str, int, int, int]]
) -> None:
    """The seed's TestBoundedLoad: a full first choice sends the key on to the next endpoint with room."""
    ring = RingHash(replicas=3, hash_function=digits_hash, load_factor=factor)
    ring.update([ep(int(k)) for k in loads])
    preload(ring, loads)
    total = sum(loads.values())
    for key, owner, load, overflow in ops:
        overflowed = ring.overflowed
        got = ring.get(key)
        assert got == ep(owner)
        assert ring.inflight(got) == load
        assert ring.active_inflight == total + 1
        assert ring.overflowed == overflowed + overflow
        ring.put(got)  # type: ignore[arg-type]
        assert ring.active_inflight == total


def test_str_and_bytes_keys_agree() -> None:
    """A str key is hashed as its UTF-8 bytes."""
    ring = RingHash()
    ring.update([Endpoint(f"10.4.0.{i}", 80) for i in range(1, 30)])
    for key in ["user-1", "tenant/é", "对象-7"]:
        assert ring.get(key) == ring.get(key.encode())


def test_missing_key_is_a_clear_error_or_a_documented_random_pick() -> None:
    """No key raises AffinityKeyRequired naming the fixes; missing_key='random' picks with the injected rng."""
    pool = [Endpoint(f"10.5.0.{i}", 80) for i in range(1, 11)]
    ring = create("ring_hash")
    ring.update(pool)
    with pytest.raises(AffinityKeyRequired, match=r"get\(key\).*X-Affinity.*missing_key='random'"):
        ring.get()
    picks = []
    for _ in range(2):
        algo = create("ring_hash", missing_key="random", rng=random.Random(9))
        algo.update(pool)
        picks.append([algo.get() for _ in range(200)])
    assert picks[0] == picks[1]
    assert set(picks[0]) == set(pool)


@pytest.mark.parametrize(
    "options",
    [
        {"load_factor": 1.0},
        {"load_factor": 0.5},
        {"load_factor": 0},
        {"load_factor": True},
        {"load_factor": float("nan")},
        {"replicas": 0},
        {"replicas": 70_000},
        {"hash_function": 7},
        {"missing_key": "ignore"},
    ],
)
def test_bad_options_raise_configuration_error(options: dict[str, object]) -> None:
    """Invalid option values are ConfigurationErrors naming the option."""
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        create("ring_hash", **options)


@pytest.mark.parametrize("options", [{"load_factor": "1.5"}, {"replicas": 2.5}])
def test_options_of_the_wrong_type_raise_configuration_error(options: dict[str, object]) -> None:
    """Options of the wrong type are ConfigurationErrors too (worded by the compiled build's checks there)."""
    with pytest.raises(ConfigurationError, match=f"{next(iter(options))}|expected"):
        create("ring_hash", **options)


def test_spread_of_100000_keys_over_100_endpoints() -> None:
    """With 256 virtual nodes and 100 endpoints the busiest endpoint gets at most 1.2x the mean share."""
    ring = RingHash()
    ring.update([Endpoint(f"10.0.0.{i}", 8080) for i in range(1, 101)])
    counts = Counter(ring.get(f"key-{i}") for i in range(100_000))
    assert len(counts) == 100
    assert max(counts.values()) <= 1.2 * 1_000


@settings(max_examples=15, deadline=None)
@given(removed=st.integers(0, 99), prefix=st.text(min_size=1, max_size=8))
def test_removing_one_of_100_moves_only_its_keys(removed: int, prefix: str) -> None:
    """Removing 1 of 100 endpoints moves exactly the keys that endpoint owned, whatever the keys."""
    pool = [Endpoint(f"10.6.0.{i}", 8080) for i in range(1, 101)]
    ring = RingHash(replicas=64)
    ring.update(pool)
    keys = [f"{prefix}{i}" for i in range(1_000)]
    before = [ring.get(k) for k in keys]
    ring.remove(pool[removed])
    after = [ring.get(k) for k in keys]
    assert all(b == a or b == pool[removed] for b, a in zip(before, after, strict=True))
    assert pool[removed] not in after


def exact_cap(total: int, n: int, factor: float) -> int:
    """ceil(c (total + 1) / n) in exact arithmetic, c as written in decimal."""
    return math.ceil(Fraction(str(factor)) * (total + 1) / n)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("get"), st.integers(0, 10_000)),
        st.tuples(st.just("put"), st.integers(0, 1_000)),
        st.tuples(st.just("add"), st.integers(1, 12)),
        st.tuples(st.just("remove"), st.integers(1, 12)),
    ),
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(
    ops=OPS,
    factor=st.sampled_from([1.001, 1.1, 1.25, 1.5, 2.0]),
    name=st.sampled_from(["ring_hash", "maglev"]),
)
def test_bounded_load_cap_is_never_exceeded(ops: list[tuple[str, int]], factor: float, name: str) -> None:
    """Under any interleaving of gets, puts and endpoint changes no get lifts an endpoint above the cap."""
    options: dict[str, object] = {"replicas": 8} if name == "ring_hash" else {"table_size": 1_301}
    algo = create(name, load_factor=factor, **options)
    algo.update([ep(i) for i in range(1, 4)])
    held: list[Endpoint] = []
    for op, arg in ops:
        active = algo.endpoints
        if op == "get" and active:
            total = sum(algo.inflight(e) for e in active)
            got = algo.get(f"k{arg % 40}")
            assert got in active
            assert algo.inflight(got) <= exact_cap(total, len(active), factor)  # type: ignore[arg-type]
            held.append(got)  # type: ignore[arg-type]
        elif op == "put" and held:
            algo.put(held.pop(arg % len(held)))
        elif op == "add":
            algo.add(ep(arg))
        elif op == "remove":
            algo.remove(ep(arg))
        assert algo.active_inflight == sum(algo.inflight(e) for e in algo.endpoints)  # type: ignore[attr-defined]
    for endpoint in held:
        algo.put(endpoint)
    assert algo.total_inflight() == 0  # type: ignore[attr-defined]


def test_generic_sort_matches_the_packed_float_sort() -> None:
    """The fallback build (over 65,536 endpoints) orders points and owners as the fast path does."""
    from kube_balance.algorithms._ring_hash import _MAGIC, _sort_generic, _unpack

    rng = random.Random(11)
    points = [[rng.getrandbits(32) for _ in range(16)] for _ in range(50)]
    points[3][0] = points[7][0]  # a collision: ties keep rank order
    packed = sorted(h * 65536.0 + _MAGIC + rank for rank, hs in enumerate(points) for h in hs)
    ring, owners = _unpack(packed)
    generic_ring, generic_owners = _sort_generic(points)
    assert list(ring) == list(generic_ring) == sorted(h for hs in points for h in hs)
    assert list(owners) == list(generic_owners)
