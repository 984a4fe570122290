"""The resource kinds the fake serves, their discovery documents, and ``Status`` error bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["KINDS", "Resource", "api_group_list", "api_resource_list", "resource_for", "status_body"]

_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True, slots=True)
class Resource:
    """One namespaced resource: how it is addressed (group/version/plural) and named (kind)."""

    kind: str
    group: str
    version: str
    plural: str
    singular: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``endpointslices.discovery.k8s.io`` / ``services``: the name used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def discovery_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(_VERBS),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        return entry


ENDPOINT_SLICES = Resource("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", "endpointslice")
SERVICES = Resource("Service", "", "v1", "services", "service", ("svc",))
ENDPOINTS = Resource("Endpoints", "", "v1", "endpoints", "endpoints", ("ep",))
NODES = Resource("Node", "", "v1", "nodes", "node", ("no",), namespaced=False)
"""Cluster-scoped: stored without a namespace, read with ``GET /api/v1/nodes/<name>`` (zone lookup)."""
KINDS: dict[str, Resource] = {r.kind: r for r in (ENDPOINT_SLICES, SERVICES, ENDPOINTS, NODES)}


def resource_for(group: str, plural: str) -> Resource | None:
    """The served resource at ``/apis/<group>/v1/.../<plural>`` (group ``""`` for ``/api/v1``)."""
    for res in KINDS.values():
        if res.group == group and res.plural == plural:
            return res
    return None


def api_resource_list(group: str) -> dict[str, Any]:
    """``GET /api/v1`` or ``GET /apis/<group>/v1``: an ``APIResourceList``."""
    resources = [r for r in KINDS.values() if r.group == group]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": resources[0].api_version,
        "resources": [r.discovery_entry() for r in resources],
    }


def api_group(group: str) -> dict[str, Any]:
    """``GET /apis/<group>``: one ``APIGroup`` with its single served version."""
    version = {"groupVersion": f"{group}/v1", "version": "v1"}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [version],
        "preferredVersion": version,
    }


def api_group_list(serve_discovery_v1: bool) -> dict[str, Any]:
    """``GET /apis``: the named groups; ``discovery.k8s.io`` only when served."""
    groups = [api_group(ENDPOINT_SLICES.group)] if serve_discovery_v1 else []
    for g in groups:
        del g["kind"], g["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def status_body(
    code: int,
    reason: str,
    message: str,
    details: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``Status`` failure object, the body of every apiserver error (and of watch ERROR events)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata or {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body
