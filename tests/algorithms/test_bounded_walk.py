"""Bounded loads at the edges: the walk past the table's end, the factor's integer scaling, repr."""

from __future__ import annotations

import bisect
import random

import mmh3
import pytest

from kube_balance import Endpoint
from kube_balance.algorithms._bounded import cap, load_ok, scaled
from kube_balance.algorithms._maglev import Maglev
from kube_balance.algorithms._ring_hash import RingHash

SIZE = 307  # a prime >= 100 x 3 endpoints


def digits_hash(data: bytes) -> int:
    """ "27" hashes to 27; virtual node i of 10.0.0.E:80 to 10 i + E (the ring tests' hash)."""
    text = data.decode()
    if "-" not in text:
        return int(text)
    endpoint, replica = text.rsplit("-", 1)
    return int(replica) * 10 + int(endpoint.split(":")[0].rsplit(".", 1)[1])


def ep(last_octet: int) -> Endpoint:
    return Endpoint(f"10.0.0.{last_octet}", 80)


def maglev_edge() -> tuple[list[Endpoint], list[str]]:
    """Three endpoints whose table owners at positions M-1, 0 and 1 are three different endpoints."""
    for third in range(50):
        endpoints = [Endpoint(f"10.{third}.0.{i}", 80) for i in (1, 2, 3)]
        plain = Maglev(table_size=SIZE)
        plain.update(endpoints)
        owners = plain.owners()
        if len({owners[-1], owners[0], owners[1]}) == 3:
            return endpoints, owners
    raise AssertionError("no endpoint set with three distinct owners at the table's edge")


def key_at(position: int) -> bytes:
    """A key whose table position (signed MurmurHash3 mod M) is ``position``."""
    for i in range(100_000):
        key = f"hot-{i}".encode()
        if mmh3.hash(key) % SIZE == position:
            return key
    raise AssertionError(f"no key at position {position}")


def test_maglev_hot_key_on_the_last_slot_walks_round_to_position_0() -> None:
    """First choice table[M-1] full: the walk wraps to position 0's owner (no IndexError, no skip)."""
    endpoints, owners = maglev_edge()
    key = key_at(SIZE - 1)
    plain = Maglev(table_size=SIZE)
    plain.update(endpoints)
    assert plain.get(key) is not None and plain.get(key).key == owners[-1]  # type: ignore[union-attr]
    maglev = Maglev(table_size=SIZE, load_factor=1.25)
    maglev.update(endpoints)
    first = maglev.get(key)
    assert first is not None and first.key == owners[-1] and maglev.overflowed == 0
    # 1 in flight of 1 on 3 endpoints: 1 x 3 >= 1.25 x 2, so the first choice is full now.
    second = maglev.get(key)
    assert second is not None and second.key == owners[0] and maglev.overflowed == 1
    assert maglev.active_inflight == 2


def test_maglev_walk_from_the_middle_takes_the_next_position() -> None:
    """First choice table[0] full: the walk goes on to position 1's owner."""
    endpoints, owners = maglev_edge()
    maglev = Maglev(table_size=SIZE, load_factor=1.25)
    maglev.update(endpoints)
    key = key_at(0)
    assert maglev.get(key).key == owners[0]  # type: ignore[union-attr]
    assert maglev.get(key).key == owners[1]  # type: ignore[union-attr]


def test_ring_hash_hot_key_on_the_last_point_walks_round_to_the_first() -> None:
    """Points 1 2 3 11 12 13 21 22 23: key 23 (the last point, endpoint 3) full goes to point 1's endpoint 1."""
    ring = RingHash(replicas=3, hash_function=digits_hash, load_factor=1.25)
    ring.update([ep(1), ep(2), ep(3)])
    assert ring.ring[0] == [1, 2, 3, 11, 12, 13, 21, 22, 23]
    assert ring.get("23") == ep(3)
    assert ring.get("23") == ep(1)  # position 0, not position 1 (endpoint 2)
    assert ring.overflowed == 1


def test_ring_hash_key_past_the_last_point_wraps_and_walks_on() -> None:
    """Key 24 (past every point) belongs to point 1; with endpoint 1 full it walks to point 2."""
    ring = RingHash(replicas=3, hash_function=digits_hash, load_factor=1.25)
    ring.update([ep(1), ep(2), ep(3)])
    assert ring.get("24") == ep(1)
    assert ring.get("24") == ep(2)


def expected_pick(owners: list[str], first: int, loads: dict[str, int], factor: float) -> str:
    """The seed's rule, spelled out: from position ``first`` on, the first owner with room."""
    total, n = sum(loads.values()), len(loads)
    for step in range(len(owners)):
        owner = owners[(first + step) % len(owners)]
        if load_ok(total, n, loads[owner], factor):
            return owner
    raise AssertionError("nobody under the cap")


@pytest.mark.parametrize("factor", [1.25, 1.5, 2.0])
def test_ring_walk_takes_the_first_point_whose_owner_is_under_the_cap(factor: float) -> None:
    """Gets and puts at random: every pick is the first endpoint, from the key's point on, with room."""
    rng = random.Random(11)
    endpoints = [ep(i) for i in range(1, 8)]
    ring = RingHash(replicas=3, hash_function=digits_hash, load_factor=factor)
    ring.update(endpoints)
    points, owners = ring.ring
    loads = {e.key: 0 for e in endpoints}
    held: list[Endpoint] = []
    for _ in range(400):
        if held and rng.random() < 0.3:
            gone = held.pop(rng.randrange(len(held)))
            ring.put(gone)
            loads[gone.key] -= 1
            continue
        h = rng.randrange(80)
        first = bisect.bisect_left(points, h) % len(points)
        want = expected_pick(owners, first, loads, factor)
        got = ring.get(str(h))
        assert got is not None and got.key == want
        loads[want] += 1
        held.append(got)


@pytest.mark.parametrize("factor", [1.25, 1.5])
def test_maglev_walk_takes_the_first_position_whose_owner_is_under_the_cap(factor: float) -> None:
    """As for the ring: every Maglev pick is the first owner, from the key's entry on, with room."""
    rng = random.Random(12)
    endpoints, owners = maglev_edge()
    maglev = Maglev(table_size=SIZE, load_factor=factor)
    maglev.update(endpoints)
    keys = [f"k{i}".encode() for i in range(50)] + [key_at(SIZE - 1), key_at(SIZE - 2)]
    loads = {e.key: 0 for e in endpoints}
    held: list[Endpoint] = []
    for _ in range(300):
        if held and rng.random() < 0.3:
            gone = held.pop(rng.randrange(len(held)))
            maglev.put(gone)
            loads[gone.key] -= 1
            continue
        key = rng.choice(keys)
        want = expected_pick(owners, mmh3.hash(key) % SIZE, loads, factor)
        got = maglev.get(key)
        assert got is not None and got.key == want
        loads[want] += 1
        held.append(got)


def test_minimum_load_factor_scales_to_1001_thousandths() -> None:
    """The factor is taken in thousandths, never below 1.001: 1.0001 and 1.0004 both act as 1.001."""
    assert scaled(1.0001) == scaled(1.0004) == scaled(1.001) == 1001
    assert scaled(1.0016) == 1002 and scaled(1.25) == 1250
    # load x n x 1000 < C x (total + 1): load 1 of total 1 on 2 endpoints fits at 1.001 (2000 < 2002).
    assert load_ok(1, 2, 1, 1.0001)
    assert cap(1, 2, 1.0001) == 2
    ring = RingHash(replicas=3, hash_function=digits_hash, load_factor=1.0001)
    ring.update([ep(1), ep(2)])
    assert [ring.get("1"), ring.get("1")] == [ep(1), ep(1)] and ring.overflowed == 0
    assert ring.get("1") == ep(2)  # 2 x 2 x 1000 >= 1001 x 3: full


@pytest.mark.parametrize("cls", [RingHash, Maglev])
def test_repr_shows_the_endpoints_the_load_and_the_bounded_state(cls: type[RingHash] | type[Maglev]) -> None:
    """repr names the class, endpoint and in-flight counts, the load factor when on, and overflows."""
    plain = cls()
    plain.update([ep(1), ep(2)])
    held = plain.get("k")
    assert repr(plain) == f"<{cls.__name__} endpoints=2 inflight=1 overflowed=0>"
    assert plain.active_inflight == 1  # summed on demand with bounded loads off
    plain.put(held)  # type: ignore[arg-type]
    assert plain.active_inflight == 0
    bounded = cls(load_factor=1.25)
    bounded.update([ep(1), ep(2)])
    for _ in range(3):  # the third: 2 of 2 in flight on one of 2 endpoints, 2 x 2 >= 1.25 x 3: full
        bounded.get("k")
    assert repr(bounded) == f"<{cls.__name__} endpoints=2 inflight=3 load_factor=1.25 overflowed=1>"


@pytest.mark.parametrize("cls", [RingHash, Maglev])
def test_put_of_an_idle_endpoint_does_not_go_below_zero(cls: type[RingHash] | type[Maglev]) -> None:
    """An extra put() (nothing in flight) leaves the counts and the bounded total at zero."""
    algo = cls(load_factor=1.25)
    algo.update([ep(1), ep(2)])
    got = algo.get("k")
    assert got is not None
    algo.put(got)
    algo.put(got)
    assert algo.inflight(got) == 0 and algo.active_inflight == 0
    assert algo.get("k") == got  # the cap is computed from a total of 0 again: no walk
    assert algo.overflowed == 0


def test_keyless_requests_land_uniformly_on_the_32_bit_ring() -> None:
    """missing_key='random' draws a point over the whole 32-bit ring: two half-rings split about evenly."""

    def halves(data: bytes) -> int:  # one point each: 10.0.0.1 at 2**31, 10.0.0.2 at 2**32 - 1
        return 2**31 if data.decode().startswith("10.0.0.1:") else 2**32 - 1

    ring = RingHash(replicas=1, hash_function=halves, missing_key="random", rng=random.Random(4))
    ring.update([ep(1), ep(2)])
    counts = {ep(1): 0, ep(2): 0}
    for _ in range(2000):
        got = ring.get()
        assert got is not None
        counts[got] += 1
        ring.put(got)
    # Points above 2**31 go to endpoint 2: half of 32 random bits, none of 31.
    assert 900 < counts[ep(2)] < 1100


@pytest.mark.parametrize("cls", [RingHash, Maglev])
def test_hash_algorithms_need_a_key_and_report_their_load_factor(cls: type[RingHash] | type[Maglev]) -> None:
    """Both hash algorithms declare that they need a key, and expose the load factor they were given."""
    assert cls.requires_key is True and cls().requires_key is True
    assert cls(load_factor=1.25).load_factor == 1.25 and cls().load_factor is None
    assert isinstance(cls(load_factor=2).load_factor, float)
