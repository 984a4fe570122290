"""Cluster mode's inputs: which request hosts name a Service, and the options, checked.

Kept apart from the route table (``_cluster.py``) so the parsing can be read, and fuzzed, alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._service import DEFAULT_CLUSTER_DOMAIN
from ._validate import check_callable, check_int, check_number, invalid

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_SERVICES",
    "DEFAULT_SERVICE_REFRESH",
    "ClusterSpec",
    "check_options",
    "cluster_spec",
    "parse_host",
]

DEFAULT_IDLE_TIMEOUT = 600.0
"""Seconds without a request (and none in flight) before a Service's watch stops: 10 minutes."""
DEFAULT_MAX_SERVICES = 100
"""Services watched at once: one watch (one long-lived API request) each."""
DEFAULT_SERVICE_REFRESH = 30.0
"""Seconds a read of a Service object holds: a watched Service is read again (in the background)
on its first request after that, and a host found not to be a Service is read again."""
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_NOT_SERVICES = frozenset({"localhost"})  # a pod's /etc/hosts answers these before any search path


def parse_host(
    host: str, *, namespace: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
) -> tuple[str, str] | None:
    """``(name, namespace)`` of the Service a request host names, or None when it names none.

    ``name`` (in ``namespace``, the client's own, as a pod's DNS search path resolves it),
    ``name.ns``, ``name.ns.svc`` and ``name.ns.svc.<cluster_domain>``, case-insensitive, with or
    without one trailing dot. ``localhost``, IP addresses and any other shape are not Services.
    """
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    labels = host.split(".")
    if len(labels) > 2:
        suffix = ".".join(labels[2:])
        if suffix != "svc" and suffix != f"svc.{cluster_domain}":
            return None
    name = labels[0]
    ns = labels[1] if len(labels) > 1 else namespace
    if name in _NOT_SERVICES and len(labels) == 1:
        return None
    if not _DNS1035.match(name) or not _DNS1123.match(ns):
        return None
    return name, ns


@dataclass(frozen=True)
class ClusterSpec:
    """What ``BalancedTransport.cluster()`` / ``BalancedConnector.cluster()`` were given: passed
    as the ``service`` argument, it makes the client's route table a :class:`ClusterRoutes`."""

    namespace: str | None = None
    namespaces: Any = None
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_services: int = DEFAULT_MAX_SERVICES
    source_options: Mapping[str, Any] = field(default_factory=dict)
    service_refresh: float = DEFAULT_SERVICE_REFRESH


def cluster_spec(
    *,
    namespaces: Any,
    namespace: str | None,
    cluster_domain: str,
    idle_timeout: float,
    max_services: int,
    service_refresh: float,
    api_client: Any,
    kubeconfig: str | None,
    context: str | None,
    in_cluster: bool | None,
) -> ClusterSpec:
    """The :class:`ClusterSpec` of ``BalancedTransport.cluster()`` and ``BalancedConnector.cluster()``
    (both take these options, by these names)."""
    source_options = {
        "api_client": api_client,
        "kubeconfig": kubeconfig,
        "context": context,
        "in_cluster": in_cluster,
    }
    return ClusterSpec(
        namespace, namespaces, cluster_domain, idle_timeout, max_services, source_options, service_refresh
    )


def check_options(spec: ClusterSpec, clock: object, balancer_options: Mapping[str, Any]) -> None:
    """Refuse a wrong cluster option now, with its name and what is allowed."""
    namespace, namespaces, cluster_domain = spec.namespace, spec.namespaces, spec.cluster_domain
    if namespace is not None and not (isinstance(namespace, str) and _DNS1123.match(namespace)):
        raise invalid("cluster namespace", namespace, "expected a namespace name (DNS-1123 label) or None")
    if namespaces is not None:
        if isinstance(namespaces, (str, bytes)) or not hasattr(namespaces, "__iter__"):
            raise invalid("cluster namespaces", namespaces, "expected a list of namespace names, or None")
        listed = list(namespaces)
        if not listed or not all(isinstance(n, str) and _DNS1123.match(n) for n in listed):
            raise invalid(
                "cluster namespaces", namespaces, "expected a non-empty list of namespace names, or None"
            )
    if not (
        isinstance(cluster_domain, str)
        and cluster_domain
        and all(_DNS1123.match(label) for label in cluster_domain.split("."))
    ):
        raise invalid("cluster cluster_domain", cluster_domain, "expected a DNS name such as 'cluster.local'")
    check_number("cluster idle_timeout", spec.idle_timeout, low=0, low_inclusive=False, unit="seconds")
    check_number("cluster service_refresh", spec.service_refresh, low=0, low_inclusive=False, unit="seconds")
    check_int("cluster max_services", spec.max_services, low=1)
    if clock is not None:
        check_callable("cluster clock", clock, "a callable returning monotonic seconds, or None")
    for name in ("source", "fallback"):
        value = balancer_options.get(name)
        if value is not None and not (name == "fallback" and value == "service"):
            raise invalid(
                f"cluster {name}",
                value,
                "cluster mode watches each Service's EndpointSlices and falls back to its DNS name; "
                "build a client for named Services to choose these",
            )
    algorithm = balancer_options.get("algorithm")
    if algorithm is not None and not isinstance(algorithm, str):
        raise invalid(
            "cluster algorithm", algorithm, "expected an algorithm name: each Service gets its own instance"
        )
    if isinstance(algorithm, str):
        from .algorithms import available  # here: the algorithms package is loaded with the balancer

        if algorithm not in available():  # else the first request to each Service raised it
            raise invalid("cluster algorithm", algorithm, f"expected one of {', '.join(available())}")
