"""Balancing algorithms, created by name through a small registry.

=====================  =======================================================================
name                   policy
=====================  =======================================================================
round_robin            each endpoint in turn, from a random offset
random                 uniform random
weighted_round_robin   earliest-deadline-first over ``Endpoint.weight`` (plain RR when equal)
weighted_random        random in proportion to ``Endpoint.weight``
least_request          power of two choices over in-flight counts (the default)
peak_ewma              power of two choices over peak-EWMA latency x (in-flight + 1)
ring_hash              consistent hashing on a ring, optionally with bounded loads
maglev                 Maglev lookup table, optionally with bounded loads
=====================  =======================================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .._errors import ConfigurationError
from .._validate import check_callable, check_rng, invalid
from ._base import BaseAlgorithm, Clock, Slot
from ._protocol import Algorithm

__all__ = ["KEYLESS", "Algorithm", "BaseAlgorithm", "Clock", "Slot", "available", "create", "register"]

_BUILTIN: dict[str, tuple[str, str]] = {
    "round_robin": ("._round_robin", "RoundRobin"),
    "random": ("._random", "Random"),
    "weighted_round_robin": ("._weighted", "WeightedRoundRobin"),
    "weighted_random": ("._weighted", "WeightedRandom"),
    "least_request": ("._least_request", "LeastRequest"),
    "peak_ewma": ("._peak_ewma", "PeakEwma"),
    "ring_hash": ("._ring_hash", "RingHash"),
    "maglev": ("._maglev", "Maglev"),
}
KEYLESS: tuple[str, ...] = tuple(n for n in _BUILTIN if n not in ("ring_hash", "maglev"))
"""The built-in algorithms that need no affinity key, simplest first (for tables and demos)."""

_registry: dict[str, Callable[..., Algorithm]] = {}


def register(name: str, factory: Callable[..., Algorithm]) -> None:
    """Make ``create(name, **options)`` call ``factory(**options)``."""
    _registry[name] = factory


def available() -> list[str]:
    """Names ``create()`` accepts, sorted."""
    return sorted({*_BUILTIN, *_registry})


def _factory(name: str) -> Callable[..., Algorithm]:
    if name in _registry:
        return _registry[name]
    try:
        module, attr = _BUILTIN[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown algorithm {name!r}; choose one of: {', '.join(available())}"
        ) from None
    factory: Callable[..., Algorithm] = getattr(importlib.import_module(module, __name__), attr)
    _registry[name] = factory
    return factory


def create(name: str, **options: Any) -> Algorithm:
    """Create an algorithm by name; options go to its constructor (``rng``, ``clock``, ...)."""
    if not isinstance(name, str):
        raise invalid("algorithm", name, f"expected a name: one of {', '.join(available())}")
    factory = _factory(name)
    # rng and clock are stored, not used, at construction: check them here or they fail at get().
    check_rng(f"algorithm {name!r} rng", options.get("rng"))
    if options.get("clock") is not None:
        check_callable(
            f"algorithm {name!r} clock", options["clock"], "a callable returning monotonic seconds"
        )
    # No inspect.signature() pre-check: mypyc-compiled classes do not expose their real one.
    try:
        return factory(**options)
    except TypeError as exc:  # an unknown option, or (compiled build) a value of the wrong type
        given = ", ".join(f"{k}={v!r}" for k, v in options.items() if k not in ("rng", "clock"))
        raise ConfigurationError(f"algorithm {name!r} ({given}): {exc}") from exc
