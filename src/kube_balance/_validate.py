"""Option checks for public constructors: a wrong value fails at construction, never deep inside.

Each check raises :class:`~kube_balance.ConfigurationError` naming the option, the value given
and what is allowed, and returns the value (normalized where that helps: ``float`` for numbers)
so a constructor reads ``self.timeout = check_number("LoadBalancer startup_timeout", timeout)``.
``bool`` is never accepted as a number: ``retries=True`` is a mistake, not 1.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, TypeVar

from ._errors import ConfigurationError

__all__ = [
    "check_bool",
    "check_callable",
    "check_choice",
    "check_instance",
    "check_int",
    "check_mapping",
    "check_number",
    "check_optional_str",
    "check_rng",
    "invalid",
]

T = TypeVar("T")


def invalid(name: str, value: object, allowed: str) -> ConfigurationError:
    """The error for option ``name`` given ``value``; ``allowed`` says what would be accepted."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigurationError(f"{name}={shown} is invalid: {allowed}")


def check_instance(name: str, value: Any, types: type[T] | tuple[type, ...], allowed: str) -> T:
    """``value`` if it is an instance of ``types``."""
    if not isinstance(value, types):
        raise invalid(name, value, allowed)
    return value  # type: ignore[return-value]


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise invalid(name, value, "expected True or False")
    return value


def check_optional_str(name: str, value: Any, what: str = "a string") -> str | None:
    """``value`` if it is ``None`` or a non-empty string."""
    if value is not None and (not isinstance(value, str) or not value):
        raise invalid(name, value, f"expected {what} or None")
    return value


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an ``int`` (not a bool) in ``low..high`` (inclusive, either side optional)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        raise invalid(name, value, f"expected an int {_range(low, high, inclusive=True)}".rstrip())
    return value


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    unit: str = "",
) -> float:
    """``float(value)`` if ``value`` is a finite int or float (not a bool) within the bounds."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        what = f"a finite number{' of ' + unit if unit else ''}"
        allowed = f"expected {what} {_range(low, high, inclusive=low_inclusive)}".rstrip()
        raise invalid(name, value, allowed + _percent_hint(name, value, low, high))
    return float(value)


def _percent_hint(name: str, value: Any, low: float | None, high: float | None) -> str:
    """For an option in [0, 1] given a percentage (``budget_percent=5``), how to write it."""
    if (low, high) != (0, 1) or isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    if not 1 < value <= 100:
        return ""
    return f" ({name.rsplit(' ', 1)[-1]} is a fraction: {value / 100:g} means {value:g}%)"


def check_callable(name: str, value: Any, what: str) -> Any:
    """``value`` if it is callable."""
    if not callable(value):
        raise invalid(name, value, f"expected {what}")
    return value


def check_rng(name: str, value: Any) -> random.Random | None:
    """``value`` if it is ``None`` or a :class:`random.Random` (seed one: ``random.Random(42)``)."""
    if value is not None and not isinstance(value, random.Random):
        raise invalid(name, value, "expected a random.Random (for a seed: random.Random(42)) or None")
    return value


def check_choice(name: str, value: Any, choices: tuple[object, ...]) -> Any:
    """``value`` if it is one of ``choices`` (compared by equality, bools kept apart from ints)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        raise invalid(name, value, f"expected one of {', '.join(map(repr, choices))}")
    return value


def check_mapping(name: str, value: Any, *, forbidden: tuple[str, ...] = ()) -> Mapping[str, Any]:
    """``value`` if it is a mapping with string keys, none of them in ``forbidden``."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise invalid(name, value, "expected a mapping of option names (str) to values, or None")
    clash = [k for k in forbidden if k in value]
    if clash:
        raise invalid(name, value, f"{', '.join(clash)} must be passed as their own argument")
    return value


def _range(low: float | None, high: float | None, *, inclusive: bool) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]" if inclusive else f"in ({low}, {high}]"
    if low is not None:
        return f">= {low}" if inclusive else f"> {low}"
    if high is not None:
        return f"<= {high}"
    return ""
