"""`kube-balance proxy` refuses wrong options at start: one line naming the option, exit 2.

In process (``main([...])``): each case fails before serving anything; the kubeconfig points at a
port nothing listens on, so nothing waits for an API.
"""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_balance.cli import main

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: main, context: {cluster: c, user: u, namespace: shop}}]
current-context: main
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return str(path)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something already listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def proxy(kubeconfig: str, *options: str) -> list[str]:
    return ["proxy", "web.shop:http", "--kubeconfig", kubeconfig, *options]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--timeout", "nan"], "--timeout nan: expected a finite number of seconds > 0"),
        (["--timeout", "inf"], "--timeout inf: expected a finite number of seconds > 0"),
        (["--timeout", "0"], "--timeout 0.0: expected a finite number of seconds > 0"),
        (["--grace", "nan"], "--grace nan: expected a finite number of seconds >= 0"),
        (["--grace", "-1"], "--grace -1.0: expected a finite number of seconds >= 0"),
        (
            ["--load-factor", "1.25"],
            "--load-factor 1.25: bounded loads are for --algorithm ring_hash or maglev, not least_request",
        ),
        (["--context", "nope"], "--context nope: no such context in .* \\(its contexts: main\\)"),
        # In the command's words, not the library's (fallback=..., None, NoEndpointsAvailable):
        (
            ["--fallback", "bogus"],
            "^kube-balance proxy: --fallback bogus: host:port expected; expected none \\(answer 503\\), "
            "service \\(the Service's DNS name\\) or HOST:PORT without a scheme, e.g. 10.0.0.1:8080 or "
            "\\[fd00::1\\]:8080$",
        ),
        (["--fallback", "http://x:1"], "--fallback http://x:1: a URL is not a fallback: give host:port"),
        (["--fallback", "x:0"], "--fallback x:0: port '0' is not a number in 1..65535"),
        (
            ["--algorithm", "ring_hash", "--load-factor", "-1"],
            "^kube-balance proxy: --load-factor -1: expected a finite number > 1.0, e.g. 1.25 \\(an endpoint "
            "takes at most 1.25 x the mean in-flight load\\); leave it out for no bound$",
        ),
        (["--algorithm", "maglev", "--load-factor", "1"], "--load-factor 1: expected a finite number > 1.0"),
        (["--algorithm", "maglev", "--load-factor", "nan"], "--load-factor nan: expected a finite number"),
    ],
)
def test_wrong_option_values_name_the_option(
    options: list[str], message: str, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """nan/inf durations, --load-factor with a keyless algorithm and an unknown --context used to
    start a proxy (a nan --grace, a 'LeastRequest.__init__()' message, 503 forever)."""
    assert main([*proxy(kubeconfig, "--listen", "127.0.0.1:0"), *options]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("kube-balance proxy: ")
    assert re.search(message, line), line


@pytest.mark.parametrize("option", ["--listen", "--metrics-listen"])
def test_an_address_it_cannot_listen_on_is_one_line_not_a_traceback(
    option: str, taken_port: int, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port in use (or a host name that does not resolve) exits 2 naming the option and the
    address; it used to be an OSError traceback, after the proxy had announced itself."""
    listen = f"127.0.0.1:{taken_port}" if option == "--listen" else "127.0.0.1:0"
    extra = ["--metrics-listen", f"127.0.0.1:{taken_port}"] if option == "--metrics-listen" else []
    assert main([*proxy(kubeconfig, "--listen", listen), *extra]) == 2
    out, err = capsys.readouterr()
    assert "on http://" not in out  # never announced as serving
    assert f"kube-balance proxy: {option} 127.0.0.1:{taken_port}: cannot listen there:" in err
    assert "Traceback" not in err


def test_metrics_without_prometheus_client_is_one_line_not_a_traceback(
    kubeconfig: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--metrics-listen without the [prometheus] extra: exit 2 naming the extra, before serving; it
    used to be an ImportError traceback after the balancer and the listener had started."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    assert main([*proxy(kubeconfig, "--listen", "127.0.0.1:0"), "--metrics-listen", "127.0.0.1:0"]) == 2
    out, err = capsys.readouterr()
    assert "on http://" not in out
    assert err == (
        "kube-balance proxy: --metrics-listen needs prometheus-client: pip install 'kube-balance[prometheus]'\n"
    )


def test_a_host_that_does_not_resolve(kubeconfig: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--listen on a name that does not resolve (.invalid never does, RFC 6761): one line, exit 2."""
    assert main(proxy(kubeconfig, "--listen", "nohost.invalid:8080")) == 2
    assert "--listen nohost.invalid:8080: cannot listen there:" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["none", "service", "10.0.0.1:8080", "[fd00::1]:8080", "web.shop:80"])
def test_every_kind_of_fallback_is_taken(where: str, kubeconfig: str) -> None:
    """The check in the command's words refuses only what the library would."""
    from kube_balance.cli import build_parser
    from kube_balance.cli._proxy import _check_args

    _check_args(build_parser().parse_args(proxy(kubeconfig, "--listen", "127.0.0.1:0", "--fallback", where)))
