"""Shared fixtures: seeded rng and a fake clock, so every test is deterministic."""

from __future__ import annotations

import random

import pytest

from kube_balance.testing import FakeClock


@pytest.fixture
def rng() -> random.Random:
    """A seeded rng: the same picks on every run."""
    return random.Random(20261126)


@pytest.fixture
def clock() -> FakeClock:
    """A manual clock starting at t=1000 s."""
    return FakeClock(1000.0)
