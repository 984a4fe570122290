"""The public surface: __all__ is sorted, complete and importable; no extra is needed to import."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

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
        "import kube_balance.discovery\n"  # the Kubernetes client loads when a source runs
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
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


def test_errors_that_reach_users_are_public() -> None:
    """Every error class the Kubernetes watch raises (hence status().last_error) is a public name."""
    from kube_balance.discovery.kubernetes import _status

    raised = {v for v in vars(_status).values() if isinstance(v, type) and issubclass(v, Exception)}
    assert raised, "the watch's error classes moved"
    for cls in raised:
        assert getattr(kube_balance, cls.__name__, None) is cls, cls
        assert cls.__name__ in kube_balance.__all__


def test_discovery_kubernetes_exports_only_what_users_need() -> None:
    """The Kubernetes discovery package exports the source, its config and the pure merge, no internals."""
    import kube_balance.discovery.kubernetes as kubernetes

    assert kubernetes.__all__ == ["ClientConfig", "KubernetesSource", "merge_slices"]


@pytest.mark.timeout(300)  # a cold mypy cache on a busy machine takes a minute or more
def test_lazy_names_have_their_real_type_for_type_checkers(tmp_path: pathlib.Path) -> None:
    """mypy sees kube_balance.BalancedTransport as the httpx transport class, not Any."""
    pytest.importorskip("mypy")
    script = tmp_path / "use.py"
    script.write_text("import kube_balance\nreveal_type(kube_balance.BalancedTransport)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", str(script)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=pathlib.Path(__file__).resolve().parent.parent,  # the project's mypy settings and cache
    )
    assert "kube_balance.integrations.httpx.BalancedTransport" in proc.stdout, proc.stdout + proc.stderr


def test_metrics_modules_all_sorted_importable_documented() -> None:
    """kube_balance.metrics and .metrics.otel: __all__ sorted, every name present and documented."""
    import kube_balance.metrics
    import kube_balance.metrics.otel

    for module in (kube_balance.metrics, kube_balance.metrics.otel):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            obj = getattr(module, name)
            assert obj is not None
            if callable(obj):
                assert obj.__doc__, name
    assert kube_balance.metrics.__all__ == [
        "ClusterRegistration",
        "DEFAULT_BUCKETS",
        "DEFAULT_ENDPOINT_LIMIT",
        "Registration",
        "SERIES",
        "Series",
        "register",
    ]
    assert kube_balance.metrics.otel.__all__ == ["Instrumentation", "instrument"]


def test_zone_names_are_public() -> None:
    """Zone-aware routing's filter and status are exported; the fake apiserver builds Nodes."""
    import kube_balance.testing

    assert {"ZoneAware", "ZoneStatus"} <= set(kube_balance.__all__)
    assert "node" in kube_balance.testing.__all__


def test_health_policy_names_are_public() -> None:
    """The health steps and their report types are importable from the package root."""
    from kube_balance import _health, _outlier, _panic, _penalty, _slow_start

    assert kube_balance.OutlierDetector is _outlier.OutlierDetector
    assert kube_balance.SuccessRate is _outlier.SuccessRate
    assert kube_balance.PanicThreshold is _panic.PanicThreshold
    assert kube_balance.OverloadPenalty is _penalty.OverloadPenalty
    assert kube_balance.SlowStart is _slow_start.SlowStart
    assert kube_balance.Ejection is _health.Ejection
