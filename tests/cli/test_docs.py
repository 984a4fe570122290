"""The docs match the code: every command's --help, and every exported series."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from kube_balance import algorithms
from kube_balance.cli import _common, main
from kube_balance.metrics import SERIES
from kube_balance.metrics._series import COUNTER, DURATION

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(autouse=True)
def builtin_algorithms(monkeypatch: pytest.MonkeyPatch) -> None:
    """--algorithm lists the built-in algorithms only (another test may have registered its own)."""
    monkeypatch.setattr(_common, "available", lambda: sorted(algorithms._BUILTIN))


def help_text(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([command, "--help"])
    return out.getvalue().rstrip("\n")


@pytest.mark.parametrize("command", ["demo", "simulate", "proxy", "watch"])
def test_help_is_in_the_docs_verbatim(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cli.md holds `kube-balance COMMAND --help` as printed 100 columns wide (regenerate it if not)."""
    monkeypatch.setenv("COLUMNS", "100")
    text = help_text(command)
    assert f"usage: kube-balance {command}" in text
    assert text in (DOCS / "cli.md").read_text(), f"docs/cli.md is out of date for `{command} --help`"


def test_proxy_help_names_every_flag_of_the_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy has the flags the seed's proxy and the issue ask for."""
    monkeypatch.setenv("COLUMNS", "100")
    text = help_text("proxy")
    for flag in ("--listen", "--algorithm", "--load-factor", "--affinity-header", "--kubeconfig", "--context",
                 "--namespace", "--metrics-listen", "--log-level", "--grace"):  # fmt: skip
        assert flag in text


def test_every_series_is_documented_with_its_type() -> None:
    """docs/metrics.md has a table row for every series, with its Prometheus name and type."""
    doc = (DOCS / "metrics.md").read_text()
    rows = dict(re.findall(r"^\| `(kube_balance_\w+)` \| (\w+) \|", doc, re.M))
    expected = {
        f"kube_balance_{s.name}{'_total' if s.kind == COUNTER else ''}": s.kind for s in (*SERIES, DURATION)
    }
    assert rows == expected
