"""The ``proxy`` and ``watch`` options (no HTTP client imported: `kube-balance demo` needs none)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .._affinity import DEFAULT_HEADER
from .._errors import ConfigurationError
from .._service import ServiceRef
from ..algorithms import available as available  # re-exported: the CLI reads it here (tests patch it)

LOG_LEVELS = ("debug", "info", "warning", "error")
OUTPUTS = ("table", "plain", "jsonl")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """SERVICE, --kubeconfig, --context, --namespace and --log-level."""
    parser.add_argument(
        "service", metavar="SERVICE", help="the Service: name[.namespace]:port, port a name or a number"
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current context)")
    parser.add_argument(
        "--namespace",
        metavar="NS",
        help="namespace of a SERVICE given without one (default: the context's namespace, else default)",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="warning", help="log level on stderr (default: warning)"
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def service_ref(args: argparse.Namespace) -> ServiceRef:
    """The Service reference, its namespace from --namespace, else the kubeconfig's context.

    A --kubeconfig that does not exist or a --context the kubeconfig lacks is a
    :class:`ConfigurationError` here, at start (the source would only log it, and retry forever).
    """
    context_namespace = _context_namespace(args.kubeconfig, args.context)
    return ServiceRef.parse(args.service, default_namespace=args.namespace or context_namespace)


def _context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    from kubernetes_asyncio.config import kube_config

    from ..discovery.kubernetes._config import ClientConfig, default_kubeconfig, kubeconfig_exists

    if kubeconfig is None and context is None and ClientConfig().mode == "in-cluster":
        return None  # in a pod: its service account, its namespace (ServiceRef's default)
    if kubeconfig is not None and not all(os.path.exists(p) for p in kubeconfig.split(os.pathsep) if p):
        raise ConfigurationError(f"--kubeconfig {kubeconfig}: no such file")
    # $KUBECONFIG read now: kubernetes_asyncio's own default is the value it had at import.
    where = kubeconfig or default_kubeconfig()
    if not kubeconfig_exists(where):
        # The library's source would log this and retry forever: a command cannot fix it by waiting.
        origin = "from $KUBECONFIG" if os.environ.get("KUBECONFIG") else "the default; $KUBECONFIG is not set"
        raise ConfigurationError(
            f"no Kubernetes configuration: no kubeconfig at {where} ({origin}), and not running in "
            "a pod. To fix: pass --kubeconfig FILE (and --context NAME), or set KUBECONFIG"
        )
    try:
        contexts, active = kube_config.list_kube_config_contexts(where)
    except Exception as exc:
        raise ConfigurationError(f"cannot read kubeconfig {where}: {_unreadable(exc)}") from exc
    if kubeconfig is None and context is None:
        return None  # ServiceRef's own default: $KUBECONFIG's current context, else "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    if context and chosen is None:
        names = ", ".join(str(c.get("name")) for c in contexts) or "none"
        raise ConfigurationError(f"--context {context}: no such context in {where} (its contexts: {names})")
    ns = (chosen or {}).get("context", {}).get("namespace")
    return ns if isinstance(ns, str) and ns else None


def _unreadable(exc: Exception) -> str:
    """Why a kubeconfig could not be read, in words (the Kubernetes client's TypeError for a file
    that is YAML but not a mapping says "'str' object does not support item assignment")."""
    if isinstance(exc, (TypeError, AttributeError, KeyError)):
        return "not a kubeconfig (expected a YAML mapping with clusters, contexts and users)"
    return str(exc) or type(exc).__name__


def host_port(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) for ``option``; an argparse error otherwise."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"{option} must be HOST:PORT (port 0..65535, 0 for any), not {text!r}"
        )
    return host, int(port)


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    """The proxy's options (also read by the docs test)."""
    add_cluster_arguments(parser)
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        required=True,
        type=lambda t: host_port(t, "--listen"),
        help="address to accept requests on (port 0: any free port, printed at start)",
    )
    parser.add_argument(
        "--algorithm",
        choices=available(),
        default="least_request",
        help="balancing algorithm (default: least_request)",
    )
    parser.add_argument(
        "--load-factor",
        type=float,
        metavar="F",
        help="bounded load for ring_hash and maglev: an endpoint takes at most F x the mean in-flight load",
    )
    parser.add_argument(
        "--affinity-header",
        default=DEFAULT_HEADER,
        metavar="NAME",
        help=f"request header holding the affinity key for ring_hash and maglev (default: {DEFAULT_HEADER})",
    )
    parser.add_argument(
        "--fallback",
        default="none",
        metavar="WHERE",
        help="with no usable endpoint: none (answer 503), service (the Service's DNS name) or HOST:PORT "
        "(default: none)",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        type=lambda t: host_port(t, "--metrics-listen"),
        help="serve Prometheus metrics on http://HOST:PORT/metrics (needs kube-balance[prometheus])",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait at most this long for a pod's response headers, or between two body reads (default: 60); "
        "then 504",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, let in-flight requests finish for this long, then exit 0 (default: 30, as "
        "Kubernetes' terminationGracePeriodSeconds)",
    )


def add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    """The watch's options (also read by the docs test)."""
    add_cluster_arguments(parser)
    parser.add_argument(
        "--output",
        choices=OUTPUTS,
        help="table: a live table redrawn on every change; plain: one line per endpoint change; "
        "jsonl: one JSON object per endpoint change (default: table on a terminal, else plain)",
    )
