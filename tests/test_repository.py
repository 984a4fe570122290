"""The repository stands on its own: no file refers to a path outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("src", "tests", "benchmarks", "integrations", "scripts", "docs")
TOP_FILES = ("README.md", "CHANGELOG.md", "Makefile", "pyproject.toml")
# Built from parts so this file does not match itself: a team workspace path, the shared fixture
# folder, and an absolute path into one machine's home or work directories.
OUTSIDE = re.compile("|".join(["/" + "work/", "shared/" + "k8s-examples", r"/(?:root|home/\w+)/"]))


def test_no_file_refers_to_paths_outside_the_repository() -> None:
    """Code, tests, docs and fixtures name no absolute path of one machine nor a folder beside the clone."""
    files = [ROOT / name for name in TOP_FILES]
    for folder in CHECKED:
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    offenders = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (compiled modules) carry no paths we wrote
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert offenders == []


def test_kubernetes_fixtures_live_in_the_repository() -> None:
    """The example objects the discovery tests replay are under tests/fixtures/k8s."""
    names = {p.name for p in (ROOT / "tests" / "fixtures" / "k8s").iterdir()}
    assert {"endpointslice.json", "list.json", "status-410.json", "watch-rolling-update.jsonl"} <= names


def test_install_hints_are_quoted_for_every_shell() -> None:
    """``pip install kube-balance[x]`` unquoted fails in zsh ("no matches found"): every hint the
    library prints (or documents in a docstring) quotes the requirement."""
    unquoted = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"pip install kube-balance\[", line)
    ]
    assert not unquoted, unquoted
