"""Old clusters without discovery.k8s.io/v1: read the core/v1 Endpoints object as EndpointSlices.

The Endpoints object of a Service has the Service's name and one ``subsets[]`` entry per distinct
port set. Each (subset, address family) becomes one synthetic slice, the way Kubernetes'
EndpointSlice mirroring controller maps them: ``addresses`` are ready, ``notReadyAddresses`` are
not ready (serving and terminating left nil, since Endpoints cannot say), so the same merge serves
both APIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._merge import SERVICE_NAME_LABEL


def _items(value: object) -> list[Any]:
    """A JSON array as a list; anything else (null, a malformed value) as an empty one."""
    return value if isinstance(value, list) else []


def _family(ip: object) -> str:
    return "IPv6" if isinstance(ip, str) and ":" in ip else "IPv4"


def _entry(address: Mapping[str, Any], ready: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"addresses": [address.get("ip")], "conditions": {"ready": ready}}
    for src, dst in (("nodeName", "nodeName"), ("hostname", "hostname"), ("targetRef", "targetRef")):
        if address.get(src) is not None:
            entry[dst] = address[src]
    return entry


def endpoints_to_slices(obj: Mapping[str, Any], service: str) -> list[dict[str, Any]]:
    """Synthetic EndpointSlice dicts for one core/v1 Endpoints object (pure)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name, rv = meta.get("name"), meta.get("resourceVersion")
    slices: list[dict[str, Any]] = []
    for i, subset in enumerate(_items(obj.get("subsets"))):
        if not isinstance(subset, Mapping):
            continue
        by_family: dict[str, list[dict[str, Any]]] = {}
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in _items(subset.get(key)):
                if isinstance(address, Mapping):
                    by_family.setdefault(_family(address.get("ip")), []).append(_entry(address, ready))
        for family, entries in sorted(by_family.items()):
            slices.append(
                {
                    "metadata": {
                        "name": f"{name}/{i}/{family}",
                        "resourceVersion": rv,
                        "labels": {SERVICE_NAME_LABEL: service},
                    },
                    "addressType": family,
                    "endpoints": entries,
                    "ports": _items(subset.get("ports")),
                }
            )
    return slices
