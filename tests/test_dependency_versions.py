"""tools/lowest_pins.py (what ``make test-min`` installs) reads every bound from pyproject.toml."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"


def read_pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed."""
    import tomllib  # Python >= 3.11

    return tomllib.loads(PYPROJECT.read_text())


@pytest.fixture(scope="module")
def pins() -> ModuleType:
    """tools/lowest_pins.py loaded as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("lowest_pins", ROOT / "tools" / "lowest_pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declared() -> dict[str, SpecifierSet]:
    """Every runtime requirement line of pyproject.toml, by package, read independently of the tool."""
    project = read_pyproject()["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    out: dict[str, SpecifierSet] = {}
    for line in lines:
        name, _, spec = line.partition(">=")
        name = name.split("[")[0].strip().lower().replace("_", "-")
        if name != "kube-balance":
            out[name] = out.get(name, SpecifierSet()) & SpecifierSet(f">={spec}")
    return out


def test_every_dependency_and_extra_gets_a_lower_bound(pins: ModuleType) -> None:
    """Each runtime dependency and extra package is pinned, with the merged bound; the self-reference is not."""
    got = pins.runtime_requirements(read_pyproject())
    assert got == declared()
    assert {"kubernetes-asyncio", "httpx", "aiohttp", "mmh3"} <= got.keys()


def test_lowest_is_the_first_release_that_satisfies_every_specifier(pins: ModuleType) -> None:
    """A bound that is not a release resolves to the next one; pre-releases and upper bounds are respected."""
    offered = ["29.0.0", "30.1.0rc1", "30.1.0", "30.3.0", "31.0.0", "not-a-version"]
    assert pins.lowest("k", SpecifierSet(">=30"), offered) == Version("30.1.0")
    assert pins.lowest("k", SpecifierSet(">=30.2,<31"), offered) == Version("30.3.0")
    with pytest.raises(ValueError, match="no release on the index satisfies"):
        pins.lowest("k", SpecifierSet(">=32"), offered)
    with pytest.raises(ValueError, match="no lower bound"):
        pins.lowest("k", SpecifierSet("<31"), offered)


def test_constraints_follow_a_changed_bound(pins: ModuleType, tmp_path: Path) -> None:
    """Raising a bound in pyproject.toml is all it takes for the pins to follow."""
    releases = {"httpx": ["0.27.0", "0.27.2", "0.28.1"], "sniffio": ["1.3.0", "1.3.1"]}
    project = '[project]\nname = "kube-balance"\ndependencies = []\n[project.optional-dependencies]\n'
    path = tmp_path / "pyproject.toml"
    for bound, expected in [("0.27", "httpx==0.27.0"), ("0.27.1", "httpx==0.27.2")]:
        path.write_text(
            project + f'httpx = ["httpx>={bound}", "sniffio>=1.3"]\nall = ["kube-balance[httpx]"]\n'
        )
        assert pins.constraints(path, versions_of=releases.__getitem__) == [expected, "sniffio==1.3.0"]


def test_installed_versions_satisfy_the_declared_bounds() -> None:
    """Whatever this environment is (make test: latest; make test-min: lowest), it is within the bounds."""
    for name, spec in declared().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # an extra that this environment did not install
        assert spec.contains(installed), f"{name} {installed} is outside {spec}"
