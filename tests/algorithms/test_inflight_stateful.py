"""Hypothesis state machine: any interleaving of updates, gets and puts keeps in-flight counts exact."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from kube_balance import Endpoint, available, create
from kube_balance.testing import FakeClock

OPTIONS = {"maglev": {"table_size": 1009}}  # >= 100 x the 8 endpoints, and 65x faster to rebuild
POOL = [Endpoint(f"10.0.0.{i + 1}", 8080, weight=i % 3 + 1) for i in range(8)]


def machine_for(name: str) -> type[RuleBasedStateMachine]:
    """A state machine driving one algorithm against a model of outstanding gets."""

    class InflightMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = FakeClock()
            self.algo = create(name, rng=random.Random(0), clock=self.clock, **OPTIONS.get(name, {}))
            self.needs_key = self.algo.requires_key
            self.outstanding: Counter[str] = Counter()
            self.objects: dict[str, Endpoint] = {}

        @rule(members=st.sets(st.integers(0, len(POOL) - 1)), flip=st.booleans())
        def update(self, members: set[int], flip: bool) -> None:
            # flip changes metadata, so a staying endpoint arrives as a new, unequal object
            self.algo.update(
                Endpoint(POOL[i].address, POOL[i].port, weight=POOL[i].weight, zone="b" if flip else None)
                for i in sorted(members)
            )

        @rule(key=st.integers(0, 50))
        def get(self, key: int) -> None:
            ep = self.algo.get(str(key)) if self.needs_key else self.algo.get()
            if ep is None:
                assert not self.algo.endpoints
                return
            assert ep.key in {e.key for e in self.algo.endpoints}
            self.outstanding[ep.key] += 1
            self.objects[ep.key] = ep

        @rule(data=st.data(), elapsed=st.none() | st.floats(0, 2), failed=st.booleans())
        def put(self, data: st.DataObject, elapsed: float | None, failed: bool) -> None:
            keys = sorted(k for k, n in self.outstanding.items() if n)
            if not keys:
                return
            key = data.draw(st.sampled_from(keys))
            self.algo.put(self.objects[key], elapsed=elapsed, failed=failed)
            self.outstanding[key] -= 1

        @rule(i=st.integers(0, len(POOL) - 1))
        def put_without_get(self, i: int) -> None:
            """A put with nothing outstanding on that endpoint is a no-op."""
            if self.outstanding[POOL[i].key] == 0:
                self.algo.put(POOL[i])

        @rule(seconds=st.floats(0, 30))
        def tick(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @invariant()
        def counts_match_outstanding_gets(self) -> None:
            for ep in POOL:
                assert self.algo.inflight(ep) == self.outstanding[ep.key] >= 0
            assert self.algo.total_inflight() == sum(self.outstanding.values())  # type: ignore[attr-defined]

        def teardown(self) -> None:
            for key, n in list(self.outstanding.items()):
                for _ in range(n):
                    self.algo.put(self.objects[key])
            assert all(self.algo.inflight(ep) == 0 for ep in POOL)
            assert self.algo.total_inflight() == 0  # type: ignore[attr-defined]

    InflightMachine.__name__ = f"InflightMachine_{name}"
    return InflightMachine


@pytest.mark.timeout(300)  # 60 x 60 steps; minutes on a loaded 2-core machine
@pytest.mark.parametrize("name", available())
def test_inflight_counts_exact(name: str) -> None:
    """In-flight never negative, equals outstanding gets, and is zero once everything is put back."""
    run_state_machine_as_test(
        machine_for(name), settings=settings(max_examples=60, stateful_step_count=60, deadline=None)
    )
