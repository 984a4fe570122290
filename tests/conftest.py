"""Shared fixtures: seeded rng and a fake clock, so every test is deterministic."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import settings

from kube_balance.testing import FakeClock

# Deterministic property tests: the same examples on every run (and in CI), never a flaky red.
# Run with HYPOTHESIS_PROFILE=explore locally to search new examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=2000)
# tools/mutate.py runs the tests once per mutant: fewer examples, still the same ones every run.
settings.register_profile("mutation", derandomize=True, deadline=None, max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """conftest.py files are fixtures, not doctest modules (``--doctest-modules`` would import
    each as a module named ``conftest``, and two directories' would clash when both are given on
    one command line)."""
    return True if collection_path.name == "conftest.py" else None


@pytest.fixture
def rng() -> random.Random:
    """A seeded rng: the same picks on every run."""
    return random.Random(20261126)


@pytest.fixture
def clock() -> FakeClock:
    """A manual clock starting at t=1000 s."""
    return FakeClock(1000.0)
