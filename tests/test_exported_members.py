"""The public surface: __all__ is sorted, complete and importable; no extra is needed to import."""

from __future__ import annotations

import subprocess
import sys

import kube_balance


def test_all_sorted_and_importable() -> None:
    """Every name in __all__ exists, and __all__ is sorted."""
    assert kube_balance.__all__ == sorted(kube_balance.__all__)
    for name in kube_balance.__all__:
        assert getattr(kube_balance, name) is not None


def test_public_names_are_documented() -> None:
    """Every public class and function has a docstring."""
    for name in kube_balance.__all__:
        obj = getattr(kube_balance, name)
        if callable(obj):
            assert obj.__doc__, name


def test_import_without_optional_extras() -> None:
    """`import kube_balance` loads no HTTP client nor the Kubernetes client; discovery loads no extra."""
    code = (
        "import sys\n"
        "import kube_balance, kube_balance.algorithms, kube_balance.testing\n"
        "heavy = {'httpx', 'aiohttp', 'fastapi', 'prometheus_client', 'kubernetes_asyncio'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        "import kube_balance.discovery\n"
        "extras = {'httpx', 'fastapi', 'prometheus_client'}\n"  # aiohttp comes with kubernetes_asyncio
        "assert not extras & set(sys.modules), extras & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_error_tree() -> None:
    """Every library error derives from KubeBalanceError; configuration errors are ValueErrors."""
    for name in kube_balance.__all__:
        obj = getattr(kube_balance, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, kube_balance.KubeBalanceError)
    assert issubclass(kube_balance.ConfigurationError, ValueError)
    assert issubclass(kube_balance.AffinityKeyRequired, kube_balance.ConfigurationError)


def test_health_policy_names_are_public() -> None:
    """The health steps and their report types are importable from the package root."""
    from kube_balance import _health, _outlier, _panic, _penalty, _slow_start

    assert kube_balance.OutlierDetector is _outlier.OutlierDetector
    assert kube_balance.SuccessRate is _outlier.SuccessRate
    assert kube_balance.PanicThreshold is _panic.PanicThreshold
    assert kube_balance.OverloadPenalty is _penalty.OverloadPenalty
    assert kube_balance.SlowStart is _slow_start.SlowStart
    assert kube_balance.Ejection is _health.Ejection
