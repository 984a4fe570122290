"""The algorithm registry and the shared contract every algorithm meets."""

from __future__ import annotations

import random
import re

import pytest

from kube_balance import AffinityKeyRequired, ConfigurationError, Endpoint, algorithms, available, create
from kube_balance.algorithms import Algorithm, BaseAlgorithm, Slot, register

ISSUE_NAMES = {
    "round_robin",
    "random",
    "weighted_round_robin",
    "weighted_random",
    "least_request",
    "peak_ewma",
}


def test_builtin_names() -> None:
    """Every documented algorithm is available by name."""
    assert set(available()) >= ISSUE_NAMES


def test_unknown_name_lists_choices() -> None:
    """An unknown name raises ConfigurationError listing the valid ones."""
    with pytest.raises(ConfigurationError, match="round_robin") as info:
        create("fastest")
    assert "'fastest'" in str(info.value)


def test_unknown_option_is_configuration_error() -> None:
    """A misspelt option is a ConfigurationError naming the algorithm."""
    with pytest.raises(ConfigurationError, match="least_request"):
        create("least_request", choices=3)


@pytest.mark.parametrize("name", available())
def test_every_algorithm_meets_the_protocol(name: str) -> None:
    """Each algorithm is an Algorithm, returns None when empty, and picks only known endpoints."""
    algo = create(name, rng=random.Random(1))
    assert isinstance(algo, Algorithm)
    assert algo.name == name
    key = "user-1" if algo.requires_key else None
    assert algo.get(key) is None
    pool = [Endpoint(f"10.0.0.{i}", 80) for i in range(1, 5)]
    algo.update(pool)
    for _ in range(20):
        ep = algo.get(key)
        assert ep in pool
        algo.put(ep)  # type: ignore[arg-type]
    assert all(algo.inflight(e) == 0 for e in pool)


@pytest.mark.parametrize("name", [n for n in available() if create(n).requires_key])
def test_affinity_algorithms_require_a_key(name: str) -> None:
    """Hash algorithms called without a key raise AffinityKeyRequired (a ConfigurationError),
    naming the option a client takes to send keyless requests anyway."""
    algo = create(name)
    algo.update([Endpoint("10.0.0.1", 80)])
    with pytest.raises(AffinityKeyRequired, match=re.escape("algorithm_options={'missing_key': 'random'}")):
        algo.get()


def test_register_custom_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user algorithm subclassing BaseAlgorithm plugs into the registry (a copy of it, restored
    afterwards: later tests list the algorithms in their messages)."""
    monkeypatch.setattr(algorithms, "_registry", dict(algorithms._registry))

    class First(BaseAlgorithm):
        name = "first"

        def get(self, key: str | bytes | None = None) -> Endpoint | None:
            if not self._pool:
                return None
            slot = self._pool[0]
            slot.inflight += 1
            return slot.endpoint

        def _rebuild(self, active: tuple[Slot, ...], added: list[Slot], removed: list[Slot]) -> None:
            self._pool = active

    register("first", First)
    algo = create("first")
    algo.update([Endpoint("10.0.0.2", 80), Endpoint("10.0.0.3", 80)])
    assert algo.get() == Endpoint("10.0.0.2", 80)
    assert algo.inflight("10.0.0.2:80") == 1
    assert "first" in available()


def test_removed_endpoint_put_is_noop_and_counts_stay_right() -> None:
    """The seed's TestEndpointDisappearing: put() after removal leaves every count correct."""
    algo = create("least_request", rng=random.Random(3))
    a, b = Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)
    algo.update([a, b])
    held = [algo.get() for _ in range(4)]
    algo.update([b])
    assert algo.endpoints == (b,)
    for ep in held:
        algo.put(ep)  # type: ignore[arg-type]
    algo.put(a)  # a put too many for a removed endpoint: still a no-op
    assert algo.inflight(a) == 0 and algo.inflight(b) == 0
    assert algo.total_inflight() == 0  # type: ignore[attr-defined]
