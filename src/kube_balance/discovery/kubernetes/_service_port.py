"""Resolve a ServiceRef's port (name or number) to the Service's own port, from the Service object.

EndpointSlices carry the pods' target ports; the DNS fallback talks to the Service's ClusterIP or
name, so it needs the Service port (``spec.ports[].port``) instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..._errors import ConfigurationError, DiscoveryError, DiscoveryUnavailable
from ..._redact import describe_error
from ..._service import ServiceRef
from ._status import SERVICES, client_secrets, http_error

logger = logging.getLogger("kube_balance.discovery")


class AmbiguousPort(DiscoveryError, ConfigurationError):
    """A reference without a port names a Service with several ports: name one of them."""


def ambiguous_port(ref: ServiceRef, choices: Iterable[str], where: str) -> AmbiguousPort:
    """The error for a port-less ``ref`` whose Service has several ports (``choices``: ``name=number``;
    ``where``: what carries them, e.g. ``"Service shop/web has several ports"``)."""
    choices = tuple(choices)
    listed = ", ".join(choices)
    example = next((c.partition("=")[0] for c in choices if c.partition("=")[0]), None)
    hint = f", e.g. '{ref.name}.{ref.namespace}:{example}'" if example else ""
    return AmbiguousPort(
        f"service {ref}: the reference has no port, which means the Service's only port, but "
        f"{where} ({listed}); name one in the reference{hint}"
    )


def pick_service_port(
    service: Mapping[str, Any], port: str | int | None, ref: ServiceRef | None = None
) -> int:
    """The ``spec.ports[].port`` matching ``port`` by name, or by port (or targetPort) number;
    ``None``: the Service's only TCP port (several: :class:`AmbiguousPort` listing them)."""
    ports = (service.get("spec") or {}).get("ports") or []
    if port is None:
        tcp = [p for p in ports if isinstance(p, Mapping) and p.get("protocol", "TCP") == "TCP"]
        if len(tcp) == 1:
            return int(tcp[0]["port"])
        meta = service.get("metadata") or {}
        where = f"Service {meta.get('namespace')}/{meta.get('name')}"
        if not tcp:
            raise DiscoveryError(f"{where} has no TCP port")
        where += " has several ports"
        choices = [f"{p.get('name') or ''}={p.get('port')}" for p in tcp]
        raise ambiguous_port(
            ref or ServiceRef(str(meta.get("name")), str(meta.get("namespace")), None), choices, where
        )
    for p in ports:
        if isinstance(port, str) and (p.get("name") or "") == port:
            return int(p["port"])
        if isinstance(port, int) and port in (p.get("port"), p.get("targetPort")):
            return int(p["port"])
    meta = service.get("metadata") or {}
    names = [p.get("name") or p.get("port") for p in ports]
    raise DiscoveryError(
        f"Service {meta.get('namespace')}/{meta.get('name')} has no port {port!r} (ports: {names})"
    )


async def get_service(client: Any, ref: ServiceRef, request_timeout: float | None = None) -> dict[str, Any]:
    """GET the Service object as a dict; typed errors name the RBAC rule on 403."""
    import aiohttp  # loaded with the Kubernetes client, when a source first runs
    from kubernetes_asyncio.client import CoreV1Api

    timeout = aiohttp.ClientTimeout(total=request_timeout or 30.0)
    failure: DiscoveryUnavailable | None = None
    try:
        resp: Any = await CoreV1Api(client).read_namespaced_service(
            ref.name, ref.namespace, _preload_content=False, _request_timeout=timeout
        )
        try:
            body = await resp.read()
            if not 200 <= resp.status < 300:
                raise http_error(resp.status, body, verb="get", resource=SERVICES, namespace=ref.namespace)
        finally:
            resp.release()
        obj = json.loads(body)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        # Built from safe fields and raised outside the except block: an aiohttp error (its repr,
        # or a traceback printing it as __cause__/__context__) carries our Authorization header.
        detail = describe_error(exc, client_secrets(client))
        failure = DiscoveryUnavailable(f"get Service {ref.namespace}/{ref.name} failed: {detail}")
    if failure is not None:
        raise failure
    if not isinstance(obj, dict):
        raise DiscoveryUnavailable(f"get Service {ref.namespace}/{ref.name}: the body is not a JSON object")
    return obj


async def resolve_service_port(client: Any, ref: ServiceRef, request_timeout: float | None = None) -> int:
    """The Service's own port for ``ref`` (for the DNS fallback)."""
    return pick_service_port(await get_service(client, ref, request_timeout), ref.port, ref)


async def slice_port(client: Any, ref: ServiceRef, request_timeout: float | None = None) -> str | int | None:
    """What to look for in slices: a port name as is; a Service port number becomes that port's name.

    Slices name their ports after the Service's ports but carry the target numbers, so ``web:80``
    must become ``http`` to find 8080. Best effort: without RBAC to get Services (or no such
    port) the number is kept, and the merge matches it against slice port numbers. No port
    (``None``) stays None: each slice's only port, found without an API call.
    """
    if ref.port is None or isinstance(ref.port, str):
        return ref.port
    try:
        obj = await get_service(client, ref, request_timeout)
    except Exception as exc:  # best effort: any failure keeps the number
        logger.info(
            "cannot map port %s of %s to a port name (%s); matching slice ports by number", ref.port, ref, exc
        )
        return ref.port
    for p in (obj.get("spec") or {}).get("ports") or ():
        if isinstance(p, dict) and p.get("port") == ref.port:
            return str(p.get("name") or "")
    return ref.port
