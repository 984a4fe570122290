"""The proxy's and watch's shared options: the Service's namespace, HOST:PORT."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kube_balance import ConfigurationError
from kube_balance.cli._common import host_port, service_ref

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: main, context: {cluster: c, user: u, namespace: shop}}
- {name: other, context: {cluster: c, user: u, namespace: billing}}
current-context: main
"""


def args(service: str, **kwargs: object) -> argparse.Namespace:
    return argparse.Namespace(
        service=service, namespace=kwargs.get("namespace"), kubeconfig=kwargs.get("kubeconfig"),
        context=kwargs.get("context"),
    )  # fmt: skip


def test_namespace_from_flag_then_the_kubeconfig_context(tmp_path: Path) -> None:
    """--namespace wins; else the --context's (or current context's) namespace of --kubeconfig."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    assert service_ref(args("web:http", kubeconfig=str(path))).namespace == "shop"
    assert service_ref(args("web:http", kubeconfig=str(path), context="other")).namespace == "billing"
    assert service_ref(args("web:http", kubeconfig=str(path), namespace="ops")).namespace == "ops"
    assert service_ref(args("web.cart:http", kubeconfig=str(path))).namespace == "cart"
    with pytest.raises(ConfigurationError, match=r"--kubeconfig .*missing: no such file"):
        service_ref(args("web:http", kubeconfig=str(tmp_path / "missing")))


def test_a_context_the_kubeconfig_lacks_fails_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--context nope used to start anyway, logging and retrying forever; now it fails, listing the
    contexts, with --namespace given too, and from $KUBECONFIG when --kubeconfig is not given."""
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    for kwargs in ({}, {"namespace": "ops"}):
        with pytest.raises(
            ConfigurationError,
            match=r"--context nope: no such context in .*kubeconfig \(its contexts: main, other\)",
        ):
            service_ref(args("web:http", kubeconfig=str(path), context="nope", **kwargs))
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(ConfigurationError, match=f"no such context in {path}"):
        service_ref(args("web.shop:http", context="nope"))
    assert service_ref(args("web:http", context="other")).namespace == "billing"


def test_host_port() -> None:
    """HOST:PORT and [v6]:PORT parse; anything else is an argparse error naming the option."""
    assert host_port("127.0.0.1:0", "--listen") == ("127.0.0.1", 0)
    assert host_port("[::1]:8080", "--listen") == ("::1", 8080)
    for bad in ("8080", "host:", ":80", "host:99999"):
        with pytest.raises(argparse.ArgumentTypeError, match="--listen"):
            host_port(bad, "--listen")


def test_no_kubeconfig_at_all_fails_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --kubeconfig, $KUBECONFIG naming a missing file (or unset, and no ~/.kube/config), not
    in a pod: the command used to log and retry forever; now it stops at start, saying what to pass."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    missing = tmp_path / "missing"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(ConfigurationError) as err:
        service_ref(args("web.shop:http"))
    assert str(err.value) == (
        f"no Kubernetes configuration: no kubeconfig at {missing} (from $KUBECONFIG), and not running "
        "in a pod. To fix: pass --kubeconfig FILE (and --context NAME), or set KUBECONFIG"
    )
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigurationError, match=r"\.kube/config \(the default; \$KUBECONFIG is not set\)"):
        service_ref(args("web.shop:http"))
    path = tmp_path / "kubeconfig"  # one good file among the paths $KUBECONFIG lists is enough
    path.write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{path}")
    assert service_ref(args("web.shop:http")).namespace == "shop"


def test_in_a_pod_no_kubeconfig_is_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pod (the service account), the missing kubeconfig is not an error."""
    from kube_balance.discovery.kubernetes import _config

    monkeypatch.setattr(_config.ClientConfig, "_pick_mode", lambda self: "in-cluster")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert service_ref(args("web.shop:http")).namespace == "shop"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("hello\n", "not a kubeconfig (expected a YAML mapping with clusters, contexts and users)"),
        ("garbage: [\n", "while parsing a flow"),
    ],
)
def test_an_unreadable_kubeconfig_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, reason: str
) -> None:
    """A file that is not a kubeconfig, given either way: its path and the reason, in words."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for given in ({"kubeconfig": str(path)}, {}):
        monkeypatch.setenv("KUBECONFIG", str(path))
        with pytest.raises(ConfigurationError) as err:
            service_ref(args("web:http", **given))
        assert str(err.value).startswith(f"cannot read kubeconfig {path}: ") and reason in str(err.value)
