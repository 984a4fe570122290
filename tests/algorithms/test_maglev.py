"""Maglev: the lookup table's fill and determinism, disruption on removal, sizes, bounded loads."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_balance import AffinityKeyRequired, ConfigurationError, Endpoint, create
from kube_balance.algorithms._maglev import Maglev, populate


def pool(n: int, third: int = 0) -> list[Endpoint]:
    return [Endpoint(f"10.{third}.{i // 250}.{i % 250 + 1}", 8080) for i in range(n)]


def test_populate_fills_every_position_evenly() -> None:
    """Algorithm 1 of the paper: every position owned, each endpoint within one entry of M / n."""
    table = populate([f"backend-{i}" for i in range(7)], 101)
    counts = Counter(table)
    assert len(table) == 101
    assert set(counts) == set(range(7))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_table_does_not_depend_on_endpoint_order() -> None:
    """Two tables built from the same endpoints in different orders are identical."""
    endpoints = pool(50)
    shuffled = endpoints[:]
    random.Random(2).shuffle(shuffled)
    one, two = Maglev(), Maglev()
    one.update(endpoints)
    two.update(shuffled)
    assert one.owners() == two.owners()


def test_get_is_the_table_entry_of_the_key() -> None:
    """A key always reaches the same endpoint, str and bytes alike, and it is the owner of its entry."""
    maglev = Maglev(table_size=1_009)
    maglev.update(pool(10))
    owners = maglev.owners()
    for key in ["user-1", "tenant/é", "object-9"]:
        got = maglev.get(key)
        assert got == maglev.get(key.encode())
        assert got is not None
        assert got.key in owners


def test_spread_over_100_endpoints() -> None:
    """Each of 100 endpoints owns within 1% of M / n entries, and 100,000 keys spread within 1.2x."""
    maglev = Maglev()
    maglev.update(pool(100))
    entries = Counter(maglev.owners())
    assert max(entries.values()) <= 656 and min(entries.values()) >= 655
    keys = Counter(maglev.get(f"key-{i}") for i in range(100_000))
    assert max(keys.values()) <= 1.2 * 1_000


@settings(max_examples=8, deadline=None)
@given(removed=st.integers(0, 99), third=st.integers(0, 255))
def test_removing_one_of_100_moves_at_most_twice_the_ideal_share(removed: int, third: int) -> None:
    """Removing 1 of 100 endpoints moves at most 2% of the table (the ideal is its own 1%)."""
    endpoints = pool(100, third)
    maglev = Maglev()
    maglev.update(endpoints)
    before = maglev.owners()
    maglev.remove(endpoints[removed])
    after = maglev.owners()
    moved = sum(b != a for b, a in zip(before, after, strict=True))
    assert moved <= 2 * len(before) / 100
    assert endpoints[removed].key not in after


@pytest.mark.parametrize("size", [0, 1, 65_536, 100_000, 2.5, True])
def test_table_size_must_be_prime(size: object) -> None:
    """A table size that is not a prime int is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=r"table_size|expected"):
        create("maglev", table_size=size)


def test_table_must_be_100_times_the_endpoint_count() -> None:
    """More than M / 100 endpoints raises ConfigurationError and leaves the table as it was."""
    maglev = Maglev(table_size=1_009)
    maglev.update(pool(10))
    owners = maglev.owners()
    with pytest.raises(ConfigurationError, match="at least 100 x the endpoint count"):
        maglev.update(pool(11))
    assert maglev.owners() == owners
    assert len(maglev.endpoints) == 10


def test_default_table_grows_with_the_service() -> None:
    """Left at its default, the table grows to a prime >= 100 x the endpoints instead of refusing."""
    maglev = Maglev()
    maglev.update(pool(10))
    assert maglev.table_size == 65_537
    maglev.update(pool(700))
    assert maglev.table_size == 70_001  # the first prime >= 70,000
    assert len(set(maglev.owners())) == 700


def test_bounded_loads_walk_along_the_table() -> None:
    """With a load factor a hot key spills to other endpoints, never past the cap, and is counted."""
    maglev = Maglev(table_size=1_009, load_factor=1.25)
    endpoints = pool(8)
    maglev.update(endpoints)
    plain = Maglev(table_size=1_009)
    plain.update(endpoints)
    first = plain.get("hot")
    held = [maglev.get("hot") for _ in range(80)]
    loads = Counter(held)
    assert max(loads.values()) <= 13  # ceil(1.25 x 80 / 8)
    assert len(loads) > 1
    assert maglev.overflowed == 80 - loads[first] > 0
    for endpoint in held:
        maglev.put(endpoint)  # type: ignore[arg-type]
    assert maglev.active_inflight == 0


def test_missing_key() -> None:
    """No key raises AffinityKeyRequired; missing_key='random' spreads keyless requests with the rng."""
    maglev = create("maglev")
    maglev.update(pool(5))
    with pytest.raises(AffinityKeyRequired, match="maglev"):
        maglev.get()
    keyless = create("maglev", missing_key="random", rng=random.Random(3))
    keyless.update(pool(5))
    assert {keyless.get() for _ in range(100)} == set(pool(5))
