"""The release build: the mypyc-compiled wheel passes the same algorithm tests as the source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.timeout(600)
def test_compiled_wheel_passes_algorithm_tests() -> None:
    """Build the mypyc wheel (cached under build/), import it first, and rerun tests/algorithms."""
    from _compiled import compiled_site

    site = compiled_site()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = "import kube_balance.algorithms._base as b, sys; sys.exit(0 if b.__file__.endswith('.so') else 1)"
    assert subprocess.run([sys.executable, "-c", probe], env=env, timeout=60).returncode == 0, "not compiled"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "algorithms")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
