"""Builders for API objects shaped exactly like the real apiserver's (discovery.k8s.io/v1, core/v1).

They return plain ``dict`` objects with ``kind``/``apiVersion`` set, ready for
:meth:`FakeApiServer.apply`. A condition given as ``None`` is *omitted*, so tests can exercise the
nil defaults clients must apply (ready nil = true, serving nil = true, terminating nil = false).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["core_endpoints", "endpoint_slice", "node", "service", "slice_endpoint"]

#: The label the EndpointSlice controller puts on every slice it manages for a Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_MANAGED_BY = "endpointslice-controller.k8s.io"
_DEFAULT_SLICE_PORTS: tuple[dict[str, Any], ...] = ({"name": "http", "port": 8080, "protocol": "TCP"},)


def slice_endpoint(
    address: str,
    *,
    ready: bool | None = True,
    serving: bool | None = True,
    terminating: bool | None = False,
    zone: str | None = None,
    node_name: str | None = None,
    pod_name: str | None = None,
    hostname: str | None = None,
    hints: Sequence[str] = (),
    node_hints: Sequence[str] = (),
) -> dict[str, Any]:
    """One ``endpoints[]`` entry of an EndpointSlice; ``None`` conditions are left out of the dict.

    ``hints`` are zone names for ``hints.forZones``; ``node_hints`` node names for
    ``hints.forNodes`` (``trafficDistribution: PreferSameNode``); ``pod_name`` adds a Pod ``targetRef``.
    """
    conditions: dict[str, bool] = {}
    for key, value in (("ready", ready), ("serving", serving), ("terminating", terminating)):
        if value is not None:
            conditions[key] = value
    entry: dict[str, Any] = {"addresses": [address], "conditions": conditions}
    if hostname is not None:
        entry["hostname"] = hostname
    if pod_name is not None:
        entry["targetRef"] = {"kind": "Pod", "name": pod_name, "uid": f"uid-{pod_name}"}
    if node_name is not None:
        entry["nodeName"] = node_name
    if zone is not None:
        entry["zone"] = zone
    if hints or node_hints:
        entry["hints"] = {}
    if hints:
        entry["hints"]["forZones"] = [{"name": z} for z in hints]
    if node_hints:
        entry["hints"]["forNodes"] = [{"name": n} for n in node_hints]
    return entry


def endpoint_slice(
    service: str,
    namespace: str = "default",
    *,
    name: str | None = None,
    endpoints: Sequence[dict[str, Any] | str] = (),
    ports: Sequence[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An EndpointSlice of ``service`` labelled as the EndpointSlice controller labels it.

    ``endpoints`` items may be bare addresses (ready, serving, not terminating) or
    :func:`slice_endpoint` dicts; an empty sequence gives ``"endpoints": null`` as the real API
    sends for an empty slice. ``ports`` defaults to ``[{"name": "http", "port": 8080, "protocol":
    "TCP"}]`` (the pods' target port). ``name`` defaults to ``<service>-<suffix>`` derived from the
    addresses, like the controller's ``generateName``.
    """
    entries = [slice_endpoint(e) if isinstance(e, str) else dict(e) for e in endpoints]
    all_labels = {SERVICE_NAME_LABEL: service, "endpointslice.kubernetes.io/managed-by": _MANAGED_BY}
    all_labels.update(labels or {})
    if name is None:
        name = f"{service}-{address_type.lower()}"
    ports_list = [dict(p) for p in (_DEFAULT_SLICE_PORTS if ports is None else ports)]
    return {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name,
            "generateName": f"{service}-",
            "namespace": namespace,
            "labels": all_labels,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": service,
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"service/{namespace}/{service}")),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "addressType": address_type,
        "endpoints": entries or None,
        "ports": ports_list,
    }


def service(
    name: str,
    namespace: str = "default",
    *,
    ports: Sequence[dict[str, Any]] = ({"name": "http", "port": 80, "targetPort": 8080},),
    cluster_ip: str = "10.96.0.10",
    selector: Mapping[str, str] | bool | None = True,
    external_name: str | None = None,
) -> dict[str, Any]:
    """A Service as the apiserver returns it; ports get ``protocol: TCP`` when not given.

    By default a ClusterIP Service selecting ``app=<name>``. ``cluster_ip="None"`` makes it
    headless; ``selector=None`` leaves the selector out (the EndpointSlice controller then
    manages no slice for it: its owner writes them); a mapping is the selector itself.
    ``external_name`` makes an ExternalName Service: no cluster IP, no selector, a DNS CNAME.
    """
    spec: dict[str, Any] = {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip]}
    if external_name is not None:
        # The API clears clusterIP(s) for ExternalName; such a Service has no endpoints.
        spec = {"type": "ExternalName", "externalName": external_name}
        selector = None
    if selector is True:
        spec["selector"] = {"app": name}
    elif selector:
        spec["selector"] = dict(selector)
    spec["ports"] = [{"protocol": "TCP", **p} for p in ports]
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": spec,
    }


def node(name: str, *, zone: str | None = None, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A cluster-scoped Node labelled as the cloud provider labels it (``topology.kubernetes.io/zone``)."""
    all_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if zone is not None:
        all_labels["topology.kubernetes.io/zone"] = zone
        all_labels["topology.kubernetes.io/region"] = zone.rstrip("abcdefghijklmnopqrstuvwxyz") or zone
    all_labels.update(labels or {})
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def core_endpoints(
    service: str,
    namespace: str = "default",
    *,
    addresses: Sequence[str] = (),
    not_ready_addresses: Sequence[str] = (),
    ports: Sequence[dict[str, Any]] = ({"name": "http", "port": 8080, "protocol": "TCP"},),
) -> dict[str, Any]:
    """A core/v1 ``Endpoints`` object (the pre-EndpointSlice API) with one subset."""
    subset: dict[str, Any] = {"ports": [dict(p) for p in ports]}
    if addresses:
        subset["addresses"] = [{"ip": a} for a in addresses]
    if not_ready_addresses:
        subset["notReadyAddresses"] = [{"ip": a} for a in not_ready_addresses]
    obj: dict[str, Any] = {
        "kind": "Endpoints",
        "apiVersion": "v1",
        "metadata": {"name": service, "namespace": namespace, "labels": {"app": service}},
    }
    # ``subsets`` is omitempty in the Go type: an Endpoints without addresses has no key at all.
    if addresses or not_ready_addresses:
        obj["subsets"] = [subset]
    return obj
