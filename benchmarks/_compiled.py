"""Build the release (mypyc-compiled) wheel once and make it importable for a benchmark run.

Release wheels compile the algorithm modules with mypyc (see pyproject.toml); development
installs are pure Python. Benchmarks report both: the compiled figures are what users of the
published wheel get.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "compiled"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "kube_balance").rglob("*.py")):
        digest.update(path.read_bytes())
    digest.update((ROOT / "pyproject.toml").read_bytes())
    digest.update(sys.version.encode())  # compiled modules are per interpreter (ABI tag)
    return digest.hexdigest()[:16]


def compiled_site() -> Path:
    """A directory holding the compiled ``kube_balance`` package, built if missing or stale."""
    site = BUILD / _fingerprint()
    if (site / "kube_balance").is_dir():
        return site
    wheels = BUILD / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("*.whl"):
        old.unlink()
    print("building the mypyc-compiled wheel (about 30-60 s) ...", file=sys.stderr, flush=True)
    # Build from a copy: the mypyc hook compiles next to the sources, and a test run or an editor
    # importing from src/ meanwhile must never pick up a half-built extension module.
    tree = BUILD / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    env = {**os.environ, "HATCH_BUILD_HOOKS_ENABLE": "true"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        env=env,
    )
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    return site


def run_compiled(script: Path, *args: str) -> int:
    """Run ``script`` in a subprocess importing the compiled package first."""
    site = compiled_site()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(script), *args], env=env, check=False).returncode
