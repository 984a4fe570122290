"""What cluster mode makes of a Service object: its read, the port mapping, what passes through.

The URL's port is the Service port; the EndpointSlices name their ports after the Service's, so
the Service object maps one to the other, as kube-proxy does (:func:`port_name`). A re-read that
shows a port renamed or removed, or the Service deleted or made ExternalName, makes the routes
it no longer backs stale (:func:`stale_ports`). Errors a caller must see (a 403 reading the
Service or watching its EndpointSlices) get the cluster-mode hint (:func:`with_hint`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._balancer import LoadBalancer
from ._errors import DiscoveryAuthError, DiscoveryError, DiscoveryUnauthorized, UnknownServicePort
from ._service import ServiceRef

__all__ = ["passes_through", "port_name", "read_service", "stale_ports", "watch_refused", "with_hint"]

READS = "reads the Service of every host it balances"
WATCHES = "watches the EndpointSlices of every Service it balances"


async def read_service(
    config: Any, name: str, ns: str
) -> tuple[Mapping[str, Any] | None, DiscoveryError | None]:
    """``(obj, None)``: the Service; ``(None, None)``: no such Service; ``(None, error)``: the
    read failed (``config`` is the :class:`ClientConfig` the reads go through)."""
    from .discovery.kubernetes._service_port import get_service
    from .discovery.kubernetes._status import NotFound

    try:
        return await get_service(await config.client(), ServiceRef(name, ns, None)), None
    except NotFound:
        return None, None
    except DiscoveryError as exc:
        return None, exc


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def passes_through(obj: Mapping[str, Any] | None) -> bool:
    """No Service, or an ExternalName one (DNS answers it with a CNAME): not balanced."""
    return obj is None or _spec(obj).get("type") == "ExternalName"


def port_name(obj: Mapping[str, Any], name: str, ns: str, port: int) -> str | None:
    """The name of the Service port numbered ``port`` (None: the Service's only, unnamed port)."""
    ports = [p for p in _spec(obj).get("ports") or () if isinstance(p, Mapping)]
    for p in ports:
        if p.get("port") == port and p.get("protocol", "TCP") == "TCP":
            return str(p.get("name") or "") or None
    listed = ", ".join(
        f"{p.get('name')}={p.get('port')}" if p.get("name") else str(p.get("port")) for p in ports
    )
    raise UnknownServicePort(
        f"Service {ns}/{name} has no port {port} (its ports: {listed or 'none'}); the URL's port is "
        "the Service port (80 for http and 443 for https when the URL has none), as for kube-proxy"
    )


def stale_ports(obj: Mapping[str, Any] | None, balancers: Iterable[tuple[int, LoadBalancer]]) -> list[int]:
    """The Service ports whose balancer a re-read Service ``obj`` no longer backs: the Service is
    gone or ExternalName, or the port is gone or now has another name than the one watched."""
    if obj is None or passes_through(obj):
        return [port for port, _ in balancers]
    stale = []
    for port, balancer in balancers:
        ref = balancer.service
        try:
            if port_name(obj, ref.name, ref.namespace, port) == ref.port:
                continue
        except UnknownServicePort:
            pass
        stale.append(port)
    return stale


def watch_refused(balancer: LoadBalancer) -> DiscoveryAuthError | None:
    """The 401/403 the balancer's EndpointSlice watch is failing with now, if it is."""
    error = getattr(balancer.source, "last_error", None)
    return error if isinstance(error, DiscoveryAuthError) else None


def with_hint(exc: DiscoveryAuthError, ns: str, does: str) -> DiscoveryAuthError:
    """A 403, with how to grant it or keep the client out of that namespace (a 401, rejected
    credentials, is kept as it is: RBAC is not the fix); ``does`` is what needs the rule. A new
    exception each time: one raised twice grows its traceback."""
    if isinstance(exc, DiscoveryUnauthorized):
        return type(exc)(str(exc))
    error = type(exc)(
        f"{exc}; cluster mode {does} (see integrations/kubernetes/rbac-cluster.yaml), or restrict "
        f"it with namespaces=[...] to the namespaces it may read ({ns!r} is not one)"
    )
    error.__cause__ = exc
    return error
